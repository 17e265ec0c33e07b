#!/usr/bin/env python3
"""Keeps the docs honest.

  check_docs.py reference ROOT   every public concur_* function, type and CONCUR_*
                                 macro declared in concur.h appears in docs/reference.md
  check_docs.py snippets ROOT CC every ```c block in README.md and docs/*.md that has a
                                 main() compiles with -std=c99 -Wall -Wextra -Werror and
                                 runs with exit status 0
"""
import glob
import os
import re
import subprocess
import sys
import tempfile


def public_api(header):
    text = open(header).read()
    api = text.split("#endif /* CONCUR_H */")[0]
    names = set(re.findall(r"CONCUR_API\s+[^;{]*?\b(concur_[a-z0-9_]+)\s*\(", api))
    names |= set(re.findall(r"typedef\s+[^;]*?\b(concur_[a-z0-9_]+)\s*;", api))
    names |= set(re.findall(r"typedef\s+struct\s+(concur_[a-z0-9_]+)\b", api))
    names |= set(re.findall(r"#define\s+(CONCUR_[A-Z0-9_]+)", api))
    # internal guards and the declaration prefix machinery are not API
    names -= {"CONCUR_H"}
    return {n for n in names if not n.startswith(("concur__", "CONCUR__"))}


def check_reference(root):
    ref = open(os.path.join(root, "docs", "reference.md")).read()
    names = public_api(os.path.join(root, "concur.h"))
    missing = sorted(n for n in names if not re.search(r"\b%s\b" % re.escape(n), ref))
    for n in missing:
        print("not in docs/reference.md:", n)
    print(f"{len(names) - len(missing)} of {len(names)} public names documented")
    return 1 if missing else 0


def check_snippets(root, cc):
    files = [os.path.join(root, "README.md")] + sorted(glob.glob(os.path.join(root, "docs", "*.md")))
    failures = count = 0
    with tempfile.TemporaryDirectory() as tmp:
        header_copy = os.path.join(tmp, "concur.h")
        with open(header_copy, "w") as out:
            out.write(open(os.path.join(root, "concur.h")).read())
        for path in files:
            for i, block in enumerate(re.findall(r"```c\n(.*?)```", open(path).read(), re.S)):
                if "main(" not in block:
                    continue
                count += 1
                src = os.path.join(tmp, f"snippet{count}.c")
                exe = os.path.join(tmp, f"snippet{count}")
                open(src, "w").write(block)
                where = f"{os.path.relpath(path, root)} block {i + 1}"
                cmd = [cc, "-std=c99", "-Wall", "-Wextra", "-Werror", "-pthread", src, "-o", exe]
                r = subprocess.run(cmd, capture_output=True, text=True)
                if r.returncode != 0:
                    print(f"{where}: does not compile\n{r.stderr}")
                    failures += 1
                    continue
                r = subprocess.run([exe], capture_output=True, text=True, timeout=60)
                if r.returncode != 0:
                    print(f"{where}: exited {r.returncode}\n{r.stdout}{r.stderr}")
                    failures += 1
    print(f"{count - failures} of {count} doc snippets compile and run")
    return 1 if failures or count == 0 else 0


if __name__ == "__main__":
    mode, root = sys.argv[1], sys.argv[2]
    if mode == "reference":
        sys.exit(check_reference(root))
    sys.exit(check_snippets(root, sys.argv[3]))
