"""List functions in ``exoarmur_cli/`` longer than a limit (default 60 lines), longest first.

Usage: python tools/long_functions.py [LIMIT] [--top N]
A function's length is its last line minus its first (decorators excluded) plus one; nested
functions are listed on their own and also count inside the function that holds them.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def lengths(package: str = "exoarmur_cli") -> list[tuple[int, str]]:
    out = []
    for path in sorted((ROOT / package).rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                out.append((node.end_lineno - node.lineno + 1, f"{path.relative_to(ROOT)}:{node.lineno} {node.name}"))
    return sorted(out, reverse=True)


def main() -> int:
    argv = sys.argv[1:]
    top = 0
    if "--top" in argv:
        at = argv.index("--top")
        top, argv = int(argv[at + 1]), argv[:at] + argv[at + 2:]
    limit = int(argv[0]) if argv else 60
    found = lengths()
    for n, where in (found[:top] if top else [f for f in found if f[0] > limit]):
        print(f"{n:4d}  {where}")
    over = [f for f in found if f[0] > limit]
    print(f"{len(over)} function(s) over {limit} lines; {len(found)} functions; modules over 400 lines:",
          [str(p.relative_to(ROOT)) for p in sorted((ROOT / 'exoarmur_cli').rglob('*.py'))
           if len(p.read_text().splitlines()) > 400] or "none")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
