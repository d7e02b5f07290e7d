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


# Pages with ``$ zsaver`` examples run in order with them, below.
_CLI_PAGE = re.compile(r"^\$ zsaver ", re.M)


@pytest.mark.parametrize(
    "page", [p for p in PAGES if _blocks(p) and not _CLI_PAGE.search(p.read_text())],
    ids=lambda p: p.relative_to(ROOT).as_posix(),
)
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


# Every block of a page in order: ```python blocks, and ```console blocks of ``$ zsaver`` commands.
_ANY_BLOCK = re.compile(r"^```(python|console)[^\n]*\n(.*?)^```\n(?:\s*^```text\n(.*?)^```)?", re.S | re.M)
CLI_PAGES = [p for p in PAGES if _CLI_PAGE.search(p.read_text())]


def _commands(block: str) -> list[tuple[str, str]]:
    """(command line, the output shown under it) for each ``$ zsaver`` line of a console block."""
    found: list[tuple[str, list[str]]] = []
    for line in block.splitlines():
        if line.startswith("$ "):
            found.append((line[2:], []))
        elif found:
            found[-1][1].append(line)
    return [(cmd, "\n".join(out)) for cmd, out in found if cmd.startswith("zsaver ")]


@pytest.mark.parametrize("page", CLI_PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_pages_with_command_line_examples_print_what_they_show(
    page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shlex

    from zsaver.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "80")  # argparse wraps --help to the terminal's width
    module = types.ModuleType("__main__")
    monkeypatch.setitem(sys.modules, "__main__", module)
    for kind, body, shown_text in _ANY_BLOCK.findall(page.read_text()):
        if kind == "python":
            printed_by_code = io.StringIO()
            with contextlib.redirect_stdout(printed_by_code):
                exec(compile(body, page.name, "exec"), module.__dict__)
            assert not shown_text or _matches(printed_by_code.getvalue(), shown_text), (
                f"{page.name}: a python block printed\n{printed_by_code.getvalue()}\nbut the page shows\n{shown_text}"
            )
            continue
        for command, shown in _commands(body):
            out, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    status = main(shlex.split(command)[1:])
                except SystemExit as exc:  # argparse: --help
                    status = exc.code
            # A failing command shows its error (stderr); a working one its output,
            # not its progress bar (also stderr).
            printed = out.getvalue() + (err.getvalue() if status else "")
            assert _matches(printed, shown), f"{page.name}: `{command}` printed\n{printed}\nbut the page shows\n{shown}"
