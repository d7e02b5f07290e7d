"""Every ```python block in README.md and docs/ runs (examples/ run in tests/tasks/test_examples.py).

Blocks of one Markdown file run in order in one namespace, in a fresh
directory, so a page reads like a session a user would type.
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("**/*.md")])
# A python block, and the text block right after it (what the python block prints), if any.
_BLOCK = re.compile(r"^```python[^\n]*\n(.*?)^```\n(?:\s*^```text\n(.*?)^```)?", re.S | re.M)


def _blocks(page: Path) -> list[tuple[str, str | None]]:
    return [(code, shown or None) for code, shown in _BLOCK.findall(page.read_text())]


def _matches(printed: str, shown: str) -> bool:
    """``printed`` is ``shown``, where ``...`` in ``shown`` stands for any text (timings)."""
    pattern = ".*?".join(re.escape(part) for part in shown.rstrip().split("..."))
    return re.fullmatch(pattern, printed.rstrip(), re.S) is not None


@pytest.mark.parametrize("page", [p for p in PAGES if _blocks(p)], ids=lambda p: p.relative_to(ROOT).as_posix())
def test_markdown_examples_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    # A real module in sys.modules: dataclasses and pydantic resolve annotations through it.
    module = types.ModuleType("__main__")
    # Run as a script would: the page is __main__, so `if __name__ == "__main__":`
    # blocks run, process pools find the page's functions, and dask ships them by value.
    monkeypatch.setitem(sys.modules, "__main__", module)
    for number, (code, shown) in enumerate(_blocks(page), start=1):
        printed = io.StringIO()
        try:
            with contextlib.redirect_stdout(printed):
                exec(compile(code, f"{page.name}[block {number}]", "exec"), module.__dict__)
        except Exception as exc:
            raise AssertionError(f"{page.name}, python block {number} failed: {exc!r}\n{code}") from exc
        if shown is not None:  # the output the page shows is the output the code prints
            assert _matches(printed.getvalue(), shown), (
                f"{page.name}, python block {number} printed\n{printed.getvalue()}\nbut the page shows\n{shown}"
            )
