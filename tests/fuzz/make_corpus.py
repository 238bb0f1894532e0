#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets into corpus/<target>/: small
valid files of each format and a few that break one rule each."""
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CACHE_KEY = b"clattn fuzz\noptions -D X=1\n"  # the key fuzz_cache.c reads with
CACHE_MAGIC = b"clattn-binary-1\n"


def fnv1a(data):
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def npy(header, data=b"", version=1, pad=True):
    text = header.encode()
    width = 2 if version == 1 else 4
    if pad:
        text += b" " * ((-(6 + 2 + width + len(text) + 1)) % 64) + b"\n"
    length = struct.pack("<H" if width == 2 else "<I", len(text))
    return b"\x93NUMPY" + bytes([version, 0]) + length + text + data


def npy_seeds():
    f4 = "{'descr': '<f4', 'fortran_order': False, 'shape': %s, }"
    f2 = "{'descr': '<f2', 'fortran_order': False, 'shape': %s, }"
    return {
        "f4_2x3.npy": npy(f4 % "(2, 3)", struct.pack("<6f", *range(6))),
        "f2_4.npy": npy(f2 % "(4,)", b"\x00\x3c" * 4),
        "f4_rank0.npy": npy(f4 % "()", struct.pack("<f", 1.5)),
        "f4_empty.npy": npy(f4 % "(0, 4)"),
        "f4_rank4.npy": npy(f4 % "(1, 2, 1, 2)", bytes(16)),
        "v2.npy": npy(f4 % "(1,)", bytes(4), version=2),
        "v3_quotes.npy": npy('{"descr": "<f4", "fortran_order": False, '
                             '"shape": (1,)}', bytes(4), version=3),
        "fortran.npy": npy(f4.replace("False", "True") % "(1,)", bytes(4)),
        "f8.npy": npy(f4.replace("<f4", "<f8") % "(1,)", bytes(8)),
        "truncated.npy": npy(f4 % "(2, 2)", bytes(12)),
        "trailing.npy": npy(f4 % "(1,)", bytes(8)),
        "huge_shape.npy": npy(f4 % "(4294967296, 4294967296)"),
        "no_comma.npy": npy(f4 % "(3)", bytes(12)),
        "unpadded.npy": npy(f4 % "(1,)", bytes(4), pad=False),
        "header.txt": (f4 % "(2, 3)").encode(),
    }


def tuning_seeds():
    src = "0123456789abcdef"
    row = ["Portable Computing Language", "cpu-x86-64", "3.1", src, "tiled",
           "f32", "64", "64", "cpu", "16", "32", "140.5"]
    gpu = row[:8] + ["gpu", "64", "32", "900.0"]

    def line(fields):
        return ("\t".join(fields) + "\n").encode()

    xgemm = ("Xgemm:GEMMK=0,KREG=1,KWG=16,KWI=2,MDIMA=8,MDIMC=8,MWG=64,NDIMB=8,"
             "NDIMC=8,NWG=64,SA=0,SB=0,STRM=0,STRN=0,VWM=8,VWN=8")
    naive = row[:3] + ["clblast-1.5.3", "naive",
                       xgemm + ";GemmRoutine:XGEMM_MIN_INDIRECT_SIZE=128", "15.4"]
    direct = ("XgemmDirect:KWID=2,MDIMAD=8,MDIMCD=8,NDIMBD=8,NDIMCD=8,PADA=1,"
              "PADB=1,VWMD=8,VWND=8,WGD=64")
    return {
        "naive.txt": line(naive),
        "naive_direct.txt": line(naive[:5] + [direct, "3.0"]),
        "naive_illegal.txt": line(naive[:5] + [xgemm.replace("MWG=64", "MWG=48"),
                                               "1"]),
        "naive_missing.txt": line(naive[:5] + ["Xgemm:MWG=64", "1"]),
        "entry.txt": line(row),
        "gpu.txt": line(gpu),
        "file.txt": b"# clattn tuning database\n" + line(row) + line(gpu),
        "eleven.txt": line(row[:11]),
        "thirteen.txt": line(row + ["x"]),
        "bad_hex.txt": line(row[:3] + ["0123456789abcdeg"] + row[4:]),
        "big_tile.txt": line(row[:9] + ["4097", "32", "1"]),
        "crlf.txt": line(row).replace(b"\n", b"\r\n"),
        "empty_field.txt": line(row[:1] + [""] + row[2:]),
    }


def cache_file(key, binary, checksum=None, extra=b""):
    sum_ = fnv1a(binary) if checksum is None else checksum
    return (CACHE_MAGIC + struct.pack("<Q", len(key)) + key +
            struct.pack("<QQ", len(binary), sum_) + binary + extra)


def cache_seeds():
    binary = b"\x7fELF binary of a program"
    good = cache_file(CACHE_KEY, binary)
    return {
        "valid.bin": good,
        "one_byte.bin": cache_file(CACHE_KEY, b"x"),
        "bad_sum.bin": cache_file(CACHE_KEY, binary, checksum=1),
        "trailing.bin": cache_file(CACHE_KEY, binary, extra=b"\0"),
        "truncated.bin": good[:-3],
        "other_key.bin": cache_file(CACHE_KEY[:-1] + b"2", binary),
        "empty_binary.bin": cache_file(CACHE_KEY, b""),
        "bad_magic.bin": b"clattn-binary-2\n" + good[len(CACHE_MAGIC):],
        # Claims 128 MiB in a file of 75 bytes: once allocated before the
        # length was checked against the file.
        "long_claim.bin": (CACHE_MAGIC + struct.pack("<Q", len(CACHE_KEY)) +
                           CACHE_KEY + struct.pack("<QQ", 0x08000003, 0) +
                           b"J\n\x14.\xcf; \x7f"),
    }


def main():
    for target, seeds in (("npy", npy_seeds()), ("tuning", tuning_seeds()),
                          ("cache", cache_seeds())):
        folder = os.path.join(HERE, "corpus", target)
        os.makedirs(folder, exist_ok=True)
        for name, data in seeds.items():
            with open(os.path.join(folder, name), "wb") as f:
                f.write(data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
