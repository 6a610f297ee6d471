#!/usr/bin/env python3
"""What the filter's module holds, by crate (and by module of the filter's own code).

Used by `make size`: reads `twiggy top --format csv` of a build that keeps its names (the same
release profile, not stripped) and prints the code and data by owner, beside the size of the
module Envoy loads (the stripped release build). Custom sections (debug info, names) are not in the shipped module
and are left out.

    python3 bench/size.py TOP.csv SHIPPED.wasm
"""
import csv
import os
import re
import sys
from collections import defaultdict

# A Rust path at the start of an item's name, after any `<` of a trait impl: its crate and,
# for the filter's own code, its module.
PATH = re.compile(r"^[<&\s]*(?:dyn\s+|mut\s+)*([A-Za-z_][A-Za-z0-9_]*)(?:::([A-Za-z_][A-Za-z0-9_]*))?")
OWN = "api_auth_filter"


def owner(name):
    if name.startswith("data segment"):
        return "(data)"
    if name.startswith(("type[", "elem[", "table[", "memory[", "global[", "import ", "export ", "start", "wasm magic", "code section", "\"")):
        return "(wasm structure)"
    m = PATH.match(name)
    if not m:
        return "(unnamed)"
    crate, module = m.group(1), m.group(2)
    if len(crate) == 1 and crate.isupper():
        return "(generic impls, `<T as ...>`)"
    if crate in ("f32", "f64", "str", "char", "u8", "u16", "u32", "u64", "usize", "i64", "bool"):
        return "std (core)"
    if crate in ("dlfree", "dlmalloc", "dispose_chunk", "malloc", "free", "realloc", "calloc", "memcpy", "memset", "memmove", "memcmp"):
        return "std (dlmalloc, libc)"
    if crate == OWN:
        return f"{OWN}::{module}" if module else OWN
    if crate in ("core", "alloc", "std", "compiler_builtins", "dlmalloc"):
        return f"std ({crate})"
    if crate.startswith("proxy_on_") or crate.startswith("proxy_"):
        return f"{OWN}::glue (exports)"
    return crate


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    top, shipped = sys.argv[1], sys.argv[2]
    sizes = defaultdict(int)
    total = 0
    with open(top, newline="") as f:
        for row in csv.DictReader(f):
            name, size = row["Name"], int(row["ShallowSize"] or 0)
            if name.startswith("custom section") or "names\" subsection" in name or name.startswith("\"function names\""):
                continue
            sizes[owner(name)] += size
            total += size
    own = sum(v for k, v in sizes.items() if k.startswith(OWN))
    print(f"shipped module: {os.path.getsize(shipped):,} bytes ({shipped})")
    print(f"code and data (named build, custom sections left out): {total:,} bytes; the filter's own code {own:,}")
    print()
    print(f"{'owner':<44} {'bytes':>10} {'%':>6}")
    for k, v in sorted(sizes.items(), key=lambda kv: -kv[1]):
        if v * 1000 < total:  # below 0.1 %
            continue
        print(f"{k:<44} {v:>10,} {100 * v / total:>6.1f}")
    rest = sum(v for v in sizes.values() if v * 1000 < total)
    print(f"{'(each below 0.1 %)':<44} {rest:>10,} {100 * rest / total:>6.1f}")


if __name__ == "__main__":
    main()
