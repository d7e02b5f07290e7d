"""Every ```python block in README.md, docs/ and every script in examples/ runs.

Blocks of one Markdown file run in order in one namespace, in a fresh
directory, so a page reads like a session a user would type.
"""

from __future__ import annotations

import os
import re
import runpy
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("**/*.md")])
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
_BLOCK = re.compile(r"^```python[^\n]*\n(.*?)^```", re.S | re.M)


def _blocks(page: Path) -> list[str]:
    return _BLOCK.findall(page.read_text())


@pytest.mark.parametrize("page", [p for p in PAGES if _blocks(p)], ids=lambda p: p.relative_to(ROOT).as_posix())
def test_markdown_examples_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    # A real, importable module: dataclasses and pydantic resolve annotations through it.
    module = types.ModuleType(f"docs_example_{page.stem}")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    for number, code in enumerate(_blocks(page), start=1):
        try:
            exec(compile(code, f"{page.name}[block {number}]", "exec"), module.__dict__)
        except Exception as exc:
            raise AssertionError(f"{page.name}, python block {number} failed: {exc!r}\n{code}") from exc


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.name)
def test_example_scripts_run(script: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [str(script), str(tmp_path / "out")])
    monkeypatch.setenv("ZSAVER_EXAMPLE_QUICK", "1")
    runpy.run_path(str(script), run_name="__main__")
    assert os.listdir(tmp_path), f"{script.name} wrote nothing"
