"""The small JSON files that make a store directory self-describing.

``.zsaver-store.json`` records which store wrote the directory and with which
layout options; ``.zsaver-convert.json`` exists only while :func:`convert` runs.
Both are replaced atomically (temporary file, fsync, rename).
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

from zsaver._filelock import FALLBACK_DIR_SUFFIX, LOCK_FILE_NAME
from zsaver.errors import StoreConfigError

MARKER_NAME = ".zsaver-store.json"
JOURNAL_NAME = ".zsaver-convert.json"
#: Where earlier zsaver versions kept one lock file per lock; skipped like the rest.
LEGACY_LOCKS_DIR = ".zsaver-locks"
#: Root entries that belong to the store itself, never to zarr.
BOOKKEEPING = frozenset(
    {MARKER_NAME, JOURNAL_NAME, LOCK_FILE_NAME, LOCK_FILE_NAME + FALLBACK_DIR_SUFFIX, LEGACY_LOCKS_DIR}
)


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object at ``path``, or None if there is no such file."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise StoreConfigError(f"{path} is damaged: it is not valid JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise StoreConfigError(f"{path} is damaged: expected a JSON object, got {type(doc).__name__}")
    return doc


def refuse_unfinished_conversion(root: Path) -> None:
    """Raise StoreConfigError naming the command that finishes an interrupted :func:`convert`."""
    journal = read_json(root / JOURNAL_NAME)
    if journal is not None:
        to = journal.get("to", "TARGET")
        raise StoreConfigError(
            f"{root} is in the middle of a conversion from {journal.get('from')!r} "
            f"to {to!r} that was interrupted; finish it first: zsaver convert "
            f"{root} --to {to} (or zsaver.stores.convert(path, to={to!r}))"
        )


def write_json_atomic(path: Path, doc: dict[str, Any]) -> None:
    """Replace ``path`` with ``doc`` so a reader sees the old or the new file, never half."""
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex}.zsaver-partial")
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def create_json_once(path: Path, doc: dict[str, Any]) -> dict[str, Any]:
    """Create ``path`` holding ``doc`` unless it exists; return what the file holds.

    Two processes creating a store at once agree on one marker: the file is
    linked into place, which fails if another process got there first.
    """
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex}.zsaver-partial")
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    try:
        os.link(tmp, path)
    except FileExistsError:
        existing = read_json(path)
        return existing if existing is not None else doc
    finally:
        os.unlink(tmp)
    fsync_dir(path.parent)
    return doc


def fsync_dir(path: Path | str) -> None:
    """Make a rename in directory ``path`` durable (a no-op where unsupported)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
