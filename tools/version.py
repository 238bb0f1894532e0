#!/usr/bin/env python3
"""Prints the version that include/clattn.h declares, for meson."""
import pathlib
import re

header = pathlib.Path(__file__).resolve().parent.parent / "include" / "clattn.h"
text = header.read_text()
parts = [re.search(r"#define CLATTN_VERSION_%s (\d+)" % p, text).group(1)
         for p in ("MAJOR", "MINOR", "PATCH")]
print(".".join(parts))
