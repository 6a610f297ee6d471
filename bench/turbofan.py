#!/usr/bin/env python3
"""What compiling the module costs V8's TurboFan, function by function.

Used by `make size` (issue 23). Envoy's V8 compiles every function of the module with
TurboFan when it loads it (proxy-wasm-cpp-host runs V8 with `--no-liftoff`), and Envoy's
tcmalloc keeps the pages the compile used: the RSS an Envoy process pays for the module follows
the machine code and the largest compile zones more than the module's bytes. node's V8 compiles
the module the same way here (eagerly, TurboFan only) and prints, per function, the zone memory
the compile needed (`--trace-wasm-compilation-times`); the names come from the named build's
name section (the same code, so the same function indices).

    python3 bench/turbofan.py NAMED.wasm [TOP]
"""
import re
import subprocess
import sys

LINE = re.compile(r"#(\d+) using TurboFan, took (\d+) ms and (\d+) / (\d+) max/total bytes; bodysize (\d+) codesize (\d+)")


def leb(buf, i):
    value = shift = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return value, i


def names(path):
    """Function index -> name, from the `name` custom section (subsection 1)."""
    buf = open(path, "rb").read()
    i, out = 8, {}
    while i < len(buf):
        sid = buf[i]
        size, i = leb(buf, i + 1)
        end = i + size
        if sid == 0:
            n, j = leb(buf, i)
            if buf[j:j + n] == b"name":
                j += n
                while j < end:
                    sub = buf[j]
                    sub_size, j = leb(buf, j + 1)
                    if sub == 1:
                        count, k = leb(buf, j)
                        for _ in range(count):
                            idx, k = leb(buf, k)
                            ln, k = leb(buf, k)
                            out[idx] = buf[k:k + ln].decode("utf-8", "replace")
                            k += ln
                    j += sub_size
        i = end
    return out


ESCAPES = {"$LT$": "<", "$GT$": ">", "$RF$": "&", "$BP$": "*", "$C$": ",", "$u20$": " ", "$u27$": "'", "$u5b$": "[", "$u5d$": "]", "$u7b$": "{", "$u7d$": "}", "$u3b$": ";", "$u2b$": "+", "$u22$": '"', "..": "::"}


def demangle(name):
    """Rust's symbol names, readably enough for a table (legacy `_ZN...E`; of v0 `_R...`, the
    identifiers of the path)."""
    parts = []
    if name.startswith("_ZN") and name.endswith("E"):
        i, body = 0, name[3:-1]
        while i < len(body) and body[i].isdigit():
            j = i
            while body[j].isdigit():
                j += 1
            n = int(body[i:j])
            parts.append(body[j:j + n])
            i = j + n
        if parts and re.fullmatch(r"h[0-9a-f]{16}", parts[-1]):
            parts.pop()
        text = "::".join(parts)
        for k, v in ESCAPES.items():
            text = text.replace(k, v)
        return text.replace("::_<", "<").lstrip("_")
    if name.startswith("_R"):
        # After the crate's disambiguator (`Cs..._`), each identifier is its length and itself.
        i = name.find("_", name.find("Cs")) + 1
        while i < len(name):
            m = re.match(r"(\d+)_?", name[i:])
            if not m:
                i += 1
                continue
            n = int(m.group(1))
            i += m.end()
            parts.append(name[i:i + n])
            i += n
        return "::".join(parts) or name
    return name


def main():
    path = sys.argv[1]
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 12
    script = 'new WebAssembly.Module(require("fs").readFileSync(process.argv[1]))'
    flags = ["--no-liftoff", "--no-wasm-lazy-compilation", "--no-wasm-dynamic-tiering", "--trace-wasm-compilation-times"]
    run = subprocess.run(["node", *flags, "-e", script, path], capture_output=True, text=True, check=True)
    rows = [tuple(int(g) for g in m.groups()) for m in map(LINE.search, run.stdout.splitlines() + run.stderr.splitlines()) if m]
    if not rows:
        sys.exit("turbofan.py: node printed no TurboFan compile times (flags not known to this node's V8?)")
    by_name = names(path)
    body = sum(r[4] for r in rows)
    code = sum(r[5] for r in rows)
    print(f"TurboFan in node {subprocess.run(['node', '--version'], capture_output=True, text=True).stdout.strip()}: "
          f"{len(rows)} functions, {body:,} bytes of wasm code -> {code:,} bytes of machine code; "
          f"zone memory per function: largest {max(r[2] for r in rows) / 1e6:.1f} MB, all together {sum(r[3] for r in rows) / 1e6:.0f} MB")
    print(f"\n{'largest compile zone':>20} {'wasm bytes':>10} {'machine code':>12}  function")
    for idx, _ms, peak, _total, size, out in sorted(rows, key=lambda r: -r[2])[:top]:
        name = demangle(by_name.get(idx, f"#{idx}"))
        print(f"{peak / 1e6:>17.1f} MB {size:>10,} {out:>12,}  {name[:110]}")


if __name__ == "__main__":
    main()
