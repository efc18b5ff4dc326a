"""The README's generated tables: the worker's settings (coordination/runtime/settings.py) and the
exit codes (coordination/exceptions.py). Each sits between two marker lines in README.md:

    <!-- generated: settings (python scripts/doc_tables.py --write) -->
    | flag | ... |
    <!-- end: settings -->

`python scripts/doc_tables.py` says whether README.md is up to date (exit 1 if not);
`--write` rewrites the tables in place. tests/test_docs.py runs the same check.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from coordination import exceptions  # noqa: E402
from coordination.runtime import settings  # noqa: E402

README = ROOT / "README.md"
TABLES = {"settings": settings.markdown_table, "exit codes": exceptions.markdown_table}


def _pattern(name: str) -> re.Pattern:
    return re.compile(rf"(<!-- generated: {re.escape(name)} \(python scripts/doc_tables\.py --write\) -->\n)"
                      rf"(.*?)(<!-- end: {re.escape(name)} -->)", re.S)


def current(text: str, name: str) -> str | None:
    """The table README.md holds under ``name``, or None when its markers are missing."""
    m = _pattern(name).search(text)
    return m.group(2) if m else None


def rewrite(text: str) -> str:
    for name, render in TABLES.items():
        if current(text, name) is None:
            raise SystemExit(f"README.md has no markers for the {name} table")
        text = _pattern(name).sub(lambda m: m.group(1) + render() + m.group(3), text)
    return text


def main(argv: list[str]) -> int:
    text = README.read_text(encoding="utf-8")
    if "--write" in argv:
        README.write_text(rewrite(text), encoding="utf-8")
        return 0
    stale = [name for name, render in TABLES.items() if current(text, name) != render()]
    for name in stale:
        print(f"README.md: the {name} table is not what the code says; run python scripts/doc_tables.py --write")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
