#!/usr/bin/env python3
"""Embeds OpenCL C sources into a C file as a table of (name, text) pairs.

Usage: embed.py OUTPUT.c SOURCE.cl...
The table is what lib/program.c compiles; installed libraries never look for
.cl files on disk.
"""
import pathlib
import sys


def c_string(text):
    out = []
    for line in text.splitlines(keepends=True):
        esc = line.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        out.append('    "%s"' % esc)
    return "\n".join(out) if out else '    ""'


def main():
    output = pathlib.Path(sys.argv[1])
    sources = [pathlib.Path(p) for p in sys.argv[2:]]
    parts = ['#include "program.h"', ""]
    for src in sources:
        parts.append("static const char src_%s[] =" % src.stem)
        parts.append(c_string(src.read_text()) + ";")
        parts.append("")
    parts.append("const clattn_source clattn_sources[] = {")
    for src in sources:
        parts.append('    { "%s", src_%s },' % (src.stem, src.stem))
    parts.append("    { 0, 0 },")
    parts.append("};")
    output.write_text("\n".join(parts) + "\n")


if __name__ == "__main__":
    main()
