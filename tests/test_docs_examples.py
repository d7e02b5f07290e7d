"""Every ```python block in README.md and docs/ runs (examples/ run in tests/tasks/test_examples.py).

Blocks of one Markdown file run in order in one namespace, in a fresh
directory, so a page reads like a session a user would type.
"""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("**/*.md")])
_BLOCK = re.compile(r"^```python[^\n]*\n(.*?)^```", re.S | re.M)


def _blocks(page: Path) -> list[str]:
    return _BLOCK.findall(page.read_text())


@pytest.mark.parametrize("page", [p for p in PAGES if _blocks(p)], ids=lambda p: p.relative_to(ROOT).as_posix())
def test_markdown_examples_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    # A real module in sys.modules: dataclasses and pydantic resolve annotations through it.
    module = types.ModuleType("__main__")
    # Run as a script would: the page is __main__, so `if __name__ == "__main__":`
    # blocks run, process pools find the page's functions, and dask ships them by value.
    monkeypatch.setitem(sys.modules, "__main__", module)
    for number, code in enumerate(_blocks(page), start=1):
        try:
            exec(compile(code, f"{page.name}[block {number}]", "exec"), module.__dict__)
        except Exception as exc:
            raise AssertionError(f"{page.name}, python block {number} failed: {exc!r}\n{code}") from exc
