"""The documentation site builds with ``mkdocs build --strict`` and without a single warning."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _mkdocs_command() -> list[str]:
    try:
        import mkdocs  # noqa: F401
        import mkdocstrings  # noqa: F401
    except ImportError as exc:
        pytest.skip(
            f"mkdocs with mkdocstrings is not installed (pip install 'zsaver[docs]'): {exc}"
        )
    return [sys.executable, "-m", "mkdocs"]


def test_docs_site_builds_strict_without_warnings(tmp_path: Path) -> None:
    site = tmp_path / "site"
    done = subprocess.run(
        [*_mkdocs_command(), "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"mkdocs build failed (exit {done.returncode}):\n{output}"
    warnings = [line for line in output.splitlines() if "WARNING" in line]
    assert not warnings, "mkdocs build warned:\n" + "\n".join(warnings)
    assert (site / "index.html").is_file()
    api_page = (site / "api" / "index.html").read_text()
    # The reference is generated from docstrings, not left empty by a silent mkdocstrings failure.
    for name in ("zsaver.ZarrSaver", "zsaver.TaskManager", "zsaver.stores.H5ShardStore"):
        assert f'id="{name}"' in api_page, f"{name} is missing from the API reference"
