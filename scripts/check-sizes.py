#!/usr/bin/env python3
"""Check that no Rust source file of the repository is over 600 lines.

A file that long holds more than one concern; split it by concern into a
folder of modules (docs/architecture.md). Every `.rs` file git knows or
would add counts, tests included; vendored dependencies (node_modules)
and build output are not the repository's.

Usage: scripts/check-sizes.py
Exit status 1 when a file is over the limit, with every such file listed.
"""

import subprocess
import sys

MAX_LINES = 600


def main():
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.rs"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    over = []
    for path in files:
        if "node_modules/" in path:
            continue
        try:
            with open(path, encoding="utf-8") as f:
                count = sum(1 for _ in f)
        except FileNotFoundError:
            continue  # deleted in the work tree, not yet in the index
        if count > MAX_LINES:
            over.append((count, path))
    for count, path in sorted(over, reverse=True):
        print(f"{path}: {count} lines, over {MAX_LINES}")
    if over:
        print(f"{len(over)} file(s) over {MAX_LINES} lines")
        return 1
    print(f"sizes hold: {len(files)} Rust files, none over {MAX_LINES} lines")
    return 0


if __name__ == "__main__":
    sys.exit(main())
