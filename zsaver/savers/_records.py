"""Small JSON documents kept next to a dataset, crash-safe without rename.

Through the zarr Store API (no rename) each record has two slots written in
turn; a slot holds a sequence number and a checksum of its document. A reader
takes the newest slot whose checksum matches, so a write torn by a crash
leaves the previous version readable. The HDF5 saver keeps a sidecar file
instead, replaced atomically (temp file, fsync, rename).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import zarr
from zarr.abc.store import Store

from zsaver.savers._store_io import delete_key, get_bytes, set_bytes

_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
RECORDS_DIR = ".zsaver/records"


def check_record_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name) or name in {".", ".."}:
        raise ValueError(f"record name must match [A-Za-z0-9_.-]+; got {name!r}")
    return name


def _checksum(payload: str) -> str:
    return hashlib.sha256(payload.encode()).hexdigest()


def _encode_payload(seq: int, payload: str) -> bytes:
    return json.dumps({"seq": seq, "sha256": _checksum(payload), "doc": payload}).encode()


def _decode(raw: bytes | None) -> tuple[int, dict[str, Any] | None] | None:
    """(seq, doc) of a valid slot, None for a missing or torn one."""
    if raw is None:
        return None
    try:
        slot = json.loads(raw)
        if _checksum(slot["doc"]) != slot["sha256"]:
            return None
        return int(slot["seq"]), json.loads(slot["doc"])
    except (ValueError, KeyError, TypeError):
        return None


def _slot_keys(prefix: str, name: str) -> tuple[str, str]:
    base = f"{RECORDS_DIR}/{check_record_name(name)}"
    if prefix:
        base = f"{prefix}/{base}"
    return f"{base}.0.json", f"{base}.1.json"


def _read_slots(
    store: Store, prefix: str, name: str
) -> list[tuple[int, dict[str, Any] | None] | None]:
    return [_decode(get_bytes(store, key)) for key in _slot_keys(prefix, name)]


def read_store_record(store: Store, prefix: str, name: str) -> dict[str, Any] | None:
    """The newest valid version of record ``name`` under ``prefix``, or None."""
    valid = [s for s in _read_slots(store, prefix, name) if s is not None]
    if not valid:
        return None
    return max(valid, key=lambda s: s[0])[1]


def write_store_record(store: Store, prefix: str, name: str, doc: dict[str, Any] | None) -> None:
    """Write ``doc`` (None deletes) into the older slot; the other slot stays intact."""
    if doc is not None and not isinstance(doc, dict):
        raise TypeError(f"a record must be a dict (JSON object) or None; got {type(doc).__name__}")
    keys = _slot_keys(prefix, name)
    payload = json.dumps(doc, sort_keys=True, separators=(",", ":"))  # a bad document writes nothing
    slots = [_decode(get_bytes(store, key)) for key in keys]
    seqs = [s[0] if s is not None else -1 for s in slots]
    target = 0 if seqs[0] <= seqs[1] else 1
    if seqs[target] >= 0 and isinstance(store, zarr.storage.LocalStore):
        # A new file is far cheaper than one renamed over an old one on some file
        # systems (ext4 flushes the new file's data first). Deleting the older
        # slot first is safe: the newer slot stays readable all the while.
        delete_key(store, keys[target])
    set_bytes(store, keys[target], _encode_payload(max(seqs) + 1, payload))


def read_sidecar(path: Path) -> dict[str, Any] | None:
    """The JSON document in ``path``, or None if there is none."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


def write_sidecar(path: Path, doc: dict[str, Any] | None) -> None:
    """Replace ``path`` by ``doc`` atomically and durably (None deletes it)."""
    if doc is None:
        path.unlink(missing_ok=True)
        return
    if not isinstance(doc, dict):
        raise TypeError(f"a record must be a dict (JSON object) or None; got {type(doc).__name__}")
    text = json.dumps(doc, sort_keys=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


__all__ = [
    "check_record_name",
    "read_sidecar",
    "read_store_record",
    "write_sidecar",
    "write_store_record",
]
