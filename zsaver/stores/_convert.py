"""In-place conversion between plain zarr directories and HDF5 / zip shard stores.

Work goes a shard at a time, so the extra disk space stays around one shard.
A journal file (``.zsaver-convert.json``) names the source and the target while
a conversion runs; every step is idempotent, so after a SIGKILL running
``convert`` again with the same target finishes the job.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
from pathlib import Path
from typing import Any

from zsaver.errors import StoreConfigError
from zsaver.stores._layout import (
    NODE_DOCUMENTS,
    TEMP_SUFFIX,
    TOMBSTONE_SUFFIX,
    normalize_chunks_per_shard,
)
from zsaver.stores._listing import walk_keys
from zsaver.stores._marker import (
    JOURNAL_NAME,
    LEGACY_LOCKS_DIR,
    MARKER_NAME,
    fsync_dir,
    read_json,
    write_json_atomic,
)
from zsaver.stores._open import STORE_CLASSES
from zsaver.stores._sharded_base import ShardedStoreBase, _write_temp

TARGETS = ("h5", "zip", "plain")


def convert(
    path: str | os.PathLike[str],
    to: str,
    *,
    chunks_per_shard: int | tuple[int | None, ...] | None = None,
    consolidate_depth: int | None = None,
    workers: int | None = None,
    client: Any = None,
    progress: bool = False,
) -> None:
    """Convert the zarr directory at ``path`` in place to ``to`` ("h5", "zip" or "plain").

    A plain directory (zarr 3 LocalStore or zarr 2 nested directory tree) becomes a
    shard store and back. A zarr 2 H5_Nested_Store tree (or an
    ``H5ShardStore(layout="nested")``) becomes any of the three too: pass the
    ``consolidate_depth`` it was written with (a store opened by zsaver remembers
    it; a sharded store ignores it, so rerunning a finished conversion is a
    no-op). Killing it at any instant loses nothing; run it again with the same
    ``to`` to finish.

    ``chunks_per_shard`` is the target's grouping (default: the source store's, or
    ``(64,)`` from a plain tree). It is always validated, but ignored for
    ``to="plain"``, which has no shards. A sharded source keeps its grouping when
    its container changes: asking for another one raises ``StoreConfigError``
    (convert to "plain" first, then back). Every such refusal comes before the
    journal is written, so it leaves the directory as it was.

    Example:
        >>> import tempfile, zarr
        >>> from zsaver.stores import open_store
        >>> d = tempfile.mkdtemp()
        >>> zarr.create_array(d, shape=(3,), chunks=(1,), dtype="i1")[:] = 7
        >>> convert(d, "zip")
        >>> type(open_store(d)).__name__, open_store(d).list_keys()[:2]
        ('ZipShardStore', ['c/0', 'c/1'])
    """
    if to not in TARGETS:
        raise StoreConfigError(f"to must be one of {TARGETS}, got {to!r}")
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"no zarr directory at {root}")
    normalize_chunks_per_shard(chunks_per_shard)  # validate before writing anything
    if consolidate_depth is not None and (
        not isinstance(consolidate_depth, int) or isinstance(consolidate_depth, bool) or consolidate_depth < 2
    ):
        raise StoreConfigError(f"consolidate_depth must be an int >= 2, got {consolidate_depth!r}")
    journal = read_json(root / JOURNAL_NAME)
    marker = read_json(root / MARKER_NAME)
    if journal is None and marker is None and not _holds_zarr_metadata(root):
        raise StoreConfigError(f"{root} is not a zarr store: there is no zarr.json, .zarray or .zgroup in it")
    if journal is None:
        depth = _nested_depth(root, marker, consolidate_depth)
        if depth is not None:
            journal = {"from": "nested", "consolidate_depth": depth, "to": to,
                       "chunks_per_shard": None if chunks_per_shard is None
                       else list(normalize_chunks_per_shard(chunks_per_shard))}
            write_json_atomic(root / JOURNAL_NAME, journal)
    elif journal["to"] != to:
        raise StoreConfigError(
            f"{root} is being converted from {journal['from']!r} to {journal['to']!r}; "
            f"finish that first: convert(path, to={journal['to']!r}), or zsaver convert PATH --to {journal['to']}"
        )
    if journal is not None and journal["from"] == "nested":
        _from_nested(root, to, journal, marker, workers=workers, client=client, progress=progress)
        return
    if journal is None:
        source = marker.get("container") if marker else "plain"
        if source not in TARGETS:
            raise StoreConfigError(f"{root}/{MARKER_NAME} names an unknown container {source!r}")
        cps = marker.get("chunks_per_shard") if marker else None
        # Everything is checked before the journal is written: a refusal leaves the
        # directory untouched. "plain" has no shards, so chunks_per_shard is ignored
        # for it (the source store is opened with the grouping it was written with).
        if chunks_per_shard is not None and to != "plain":
            wanted = list(normalize_chunks_per_shard(chunks_per_shard))
            if marker and cps != wanted:
                raise StoreConfigError(
                    f"{root} is sharded with chunks_per_shard={cps}; convert to 'plain' first "
                    f"to regroup it with {wanted}"
                )
            cps = wanted
        if source == to:
            if to != "plain":
                _open(root, to, cps).consolidate(workers=workers, client=client, progress=progress)
            return
        journal = {"from": source, "to": to, "chunks_per_shard": cps}
        write_json_atomic(root / JOURNAL_NAME, journal)
    source, cps = journal["from"], journal["chunks_per_shard"]
    run = {"workers": workers, "client": client, "progress": progress}
    if source == "plain":
        _open(root, to, cps).consolidate(**run)
    elif to == "plain":
        _explode(_open(root, source, cps))
        _remove_bookkeeping(root)
    else:
        old = _open(root, source, cps)
        old.consolidate(**run)  # absorb loose chunks and deletions first
        _recontain(old, _open(root, to, cps, write_marker=False))
        marker = read_json(root / MARKER_NAME)
        if marker is None:
            raise StoreConfigError(f"{root}/{MARKER_NAME} was deleted during the conversion")
        write_json_atomic(root / MARKER_NAME, {**marker, "container": to})
    _end_journal(root)


def _holds_zarr_metadata(root: Path) -> bool:
    """True if a zarr metadata document is anywhere under ``root`` (bookkeeping aside)."""
    return any(name in NODE_DOCUMENTS for _, name, _ in walk_keys(str(root)))


def _end_journal(root: Path) -> None:
    for stale in root.glob(".zsaver-*.json.*" + TEMP_SUFFIX):  # from a killed earlier run
        stale.unlink(missing_ok=True)
    (root / JOURNAL_NAME).unlink()
    fsync_dir(root)


def _remove_bookkeeping(root: Path) -> None:
    """Remove the marker (the tree is plain zarr again) and an earlier version's lock directory.

    The lock file stays: savers on the plain tree lock through it too, and a lock
    file deleted while someone waits on it would let two holders in.
    """
    for name in (MARKER_NAME, LEGACY_LOCKS_DIR):
        target = root / name
        if target.is_dir():
            shutil.rmtree(target, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                target.unlink()


_NESTED_FILE = re.compile(r"(^|/)[0-9]+\.h5$")


def _nested_depth(root: Path, marker: dict[str, Any] | None, depth: int | None) -> int | None:
    """The consolidate_depth of a nested-layout tree at ``root``; None if it is not one.

    A tree without a marker that holds ``<index>.h5`` files is an H5_Nested_Store
    tree: converting it as plain would leave its chunks behind, so the depth is required.
    """
    if marker is not None:
        if marker.get("layout") == "nested":
            recorded = int(marker["consolidate_depth"])
            if depth is not None and depth != recorded:
                raise StoreConfigError(
                    f"{root} was written with consolidate_depth={recorded}, not {depth}"
                )
            return recorded
        return None  # a sharded store (perhaps converted already): no depth applies
    if depth is not None:
        return depth
    for _, _, key in walk_keys(str(root)):
        if _NESTED_FILE.search(key):
            raise StoreConfigError(
                f"{root} holds {key}, which looks like a zarr 2 H5_Nested_Store tree; pass "
                "the consolidate_depth it was written with, e.g. convert(path, to, consolidate_depth=3) "
                "or zsaver convert PATH --to TARGET --consolidate-depth 3"
            )
    return None


def _from_nested(
    root: Path, to: str, journal: dict[str, Any], marker: dict[str, Any] | None, **run: Any
) -> None:
    """Nested layout -> plain loose chunks (a nested file at a time) -> ``to``."""
    from zsaver.stores._h5_store import H5ShardStore

    if marker is None or marker.get("layout") == "nested":  # else a rerun is past this step
        nested = H5ShardStore(root, layout="nested", consolidate_depth=int(journal["consolidate_depth"]))
        nested._allow_journal = True
        nested._ensure_open_sync()
        _explode(nested)
        nested.close()
        _remove_bookkeeping(root)
    if to != "plain":
        _open(root, to, journal["chunks_per_shard"]).consolidate(**run)
    _end_journal(root)


def _open(root: Path, kind: str, cps: Any, *, write_marker: bool = True) -> ShardedStoreBase:
    """A store of ``kind`` on ``root`` usable while the journal exists."""
    cps = list(cps or normalize_chunks_per_shard(None))
    store = STORE_CLASSES[kind](root, chunks_per_shard=tuple(cps))
    store._allow_journal = True
    if write_marker:
        marker = read_json(root / MARKER_NAME)
        if marker is None or marker.get("container") != kind:
            write_json_atomic(root / MARKER_NAME, {
                "zsaver_store": 1, "container": kind, "layout": "sharded", "chunks_per_shard": cps})
        store._ensure_open_sync()
    else:  # the target of a container change: the marker still names the source
        store._layout = store._build_layout({"layout": "sharded", "chunks_per_shard": cps})
        store._is_open = True
    return store


def _shards(store: ShardedStoreBase) -> list[tuple[str, str, str]]:
    """(array path, shard path relative to it, shard file key) of every shard of ``store``."""
    found = []
    for _, _, key in walk_keys(store._root):
        if store._shard_members(key) is not None:
            prefix = _array_of(store, key)
            found.append((prefix, key[len(prefix) + 1 :] if prefix else key, key))
    return sorted(found)


def _array_of(store: ShardedStoreBase, key: str) -> str:
    parts = key.split("/")
    found = store._owning_array(parts)
    assert found is not None
    return "/".join(parts[: found[0]])


def _explode(store: ShardedStoreBase) -> None:
    """Turn every shard into loose chunk files, a shard at a time.

    A shard is deleted only once its chunk files, and the directory entries
    naming them, are on disk (fsynced), so not even a power cut loses a chunk.
    """
    for prefix, shard_rel, file_key in _shards(store):
        keys = store._shard_members(file_key) or []
        top = store._path(prefix)
        with store._consolidation_lock(prefix, shard_rel):
            handle = store._cache.acquire(store._path(file_key))
            if handle is None:
                continue
            written_dirs: set[str] = {top}
            try:
                for key in keys:
                    loose = store._path(key)
                    written_dirs.update(_dirs_between(top, os.path.dirname(loose)))
                    # A loose file is newer than the shard copy (made durable here, since
                    # the shard copy goes); a tombstone deleted it.
                    if os.path.exists(loose + TOMBSTONE_SUFFIX) or _fsync_if_exists(loose):
                        continue
                    ref = store._chunk_ref(key)
                    assert ref is not None
                    os.replace(_write_temp(loose, handle.read(ref.member) or b"", durable=True), loose)
            finally:
                store._cache.release(handle)
            for directory in sorted(written_dirs, key=len, reverse=True):  # deepest first
                fsync_dir(directory)
            os.unlink(store._path(file_key))
    for dirpath, _, filenames in os.walk(store._root):
        for name in filenames:
            if name.endswith((TOMBSTONE_SUFFIX, TEMP_SUFFIX)):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(dirpath, name))


def _fsync_if_exists(path: str) -> bool:
    """fsync the file at ``path``; False if there is none."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return False
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return True


def _dirs_between(top: str, directory: str) -> list[str]:
    """``directory`` and its parents up to ``top`` (created or changed by a write in it)."""
    found = []
    while len(directory) > len(top) and directory.startswith(top):
        found.append(directory)
        directory = os.path.dirname(directory)
    return found


def _recontain(old: ShardedStoreBase, new: ShardedStoreBase) -> None:
    """Rewrite each shard of ``old`` in ``new``'s container format, one at a time."""
    for prefix, shard_rel, file_key in _shards(old):
        new_rel = shard_rel[: -len(old._container.suffix)] + new._container.suffix
        target = os.path.join(old._path(prefix), new_rel)
        with old._consolidation_lock(prefix, shard_rel):
            handle = old._cache.acquire(old._path(file_key))
            if handle is None:
                continue
            try:
                members = [(name, handle.read(name) or b"") for name in handle.index]
            finally:
                old._cache.release(handle)
            for stale in glob.glob(glob.escape(target) + ".*" + TEMP_SUFFIX):
                os.unlink(stale)  # left by a killed earlier run
            tmp = f"{target}.{os.urandom(8).hex()}{TEMP_SUFFIX}"
            new._container.write(tmp, members)
            os.replace(tmp, target)
            fsync_dir(os.path.dirname(target))
            os.unlink(old._path(file_key))
