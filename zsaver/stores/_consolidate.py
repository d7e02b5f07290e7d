"""Consolidation: rewrite shards by copy-on-write, many shards in parallel.

Crash safety rests on one ordering, per shard and under its consolidation lock:
(1) write the complete new shard under a temporary name and fsync it,
(2) rename it over the old shard (atomic) and fsync the directory,
(3) remove the loose files and tombstones it absorbed, each only if it is still
the very file that was read (same inode, size, mtime), under the swap lock that
writers hold while renaming a loose chunk into place.
A SIGKILL before (2) leaves the old shard and every loose file; after (2) the
loose files duplicate the shard's content, and a rerun absorbs them again.
"""

from __future__ import annotations

import contextlib
import glob
import os
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

from zsaver.stores._layout import TEMP_SUFFIX, TOMBSTONE_SUFFIX
from zsaver.stores._marker import fsync_dir
from zsaver.stores._shard_cache import Signature, signature

if TYPE_CHECKING:
    from zsaver.stores._sharded_base import ShardedStoreBase


def rewrite_shard(
    store: ShardedStoreBase, prefix: str, shard_rel: str, keys: list[str], extra: dict[str, bytes]
) -> bool:
    """Fold loose ``keys`` (and in-memory ``extra`` chunks) into one shard; True if rewritten."""
    array_dir = store._path(prefix)
    shard_path = os.path.join(array_dir, shard_rel)
    with store._consolidation_lock(prefix, shard_rel):
        # Temporary shards can only be left by a killed consolidation of this shard.
        for stale in glob.glob(glob.escape(shard_path) + ".*" + TEMP_SUFFIX):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(stale)
        new: dict[str, bytes] = {}
        deleted: set[str] = set()
        absorbed: list[tuple[str, Signature]] = []
        for key in sorted(set(keys) | set(extra)):
            ref = store._chunk_ref(key)
            if ref is None or ref.prefix != prefix or ref.shard_rel != shard_rel:
                continue
            loose = store._path(key)
            try:
                with open(loose, "rb") as f:
                    data = f.read()
                    absorbed.append((loose, signature(os.fstat(f.fileno()))))
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                data = None
            tomb_sig = _sig_or_none(loose + TOMBSTONE_SUFFIX)
            if tomb_sig is not None:
                absorbed.append((loose + TOMBSTONE_SUFFIX, tomb_sig))
            if key in extra:  # write_direct: this process's newer value wins
                new[ref.member] = extra[key]
            elif data is not None:  # a loose file wins over its tombstone
                new[ref.member] = data
            elif tomb_sig is not None:
                deleted.add(ref.member)
        if not new and not deleted:
            return False
        handle = store._cache.acquire(shard_path)
        try:
            members: list[tuple[str, bytes]] = []
            if handle is not None:
                for name in handle.index:
                    if name not in new and name not in deleted:
                        members.append((name, handle.read(name) or b""))
            members.extend(sorted(new.items()))
            made: list[str] = []
            if members:
                tmp = f"{shard_path}.{os.urandom(8).hex()}{TEMP_SUFFIX}"
                try:
                    made = _write_new_shard(store, tmp, members, stop=array_dir)
                    os.replace(tmp, shard_path)
                except BaseException:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(tmp)
                    raise
            elif handle is not None:  # every member deleted: no shard at all
                os.unlink(shard_path)
            fsync_dir(os.path.dirname(shard_path))
            for directory in made:  # deepest first: each new directory's entry in its parent
                fsync_dir(os.path.dirname(directory))
        finally:
            if handle is not None:
                store._cache.release(handle)
        with store._swap_lock(prefix, shard_rel):
            dirs = set()
            for path, sig in absorbed:
                if _sig_or_none(path) == sig:  # not replaced by a newer write meanwhile
                    os.unlink(path)
                    dirs.add(os.path.dirname(path))
            _remove_empty_dirs(dirs, stop=array_dir)
    return True


def _write_new_shard(
    store: ShardedStoreBase, tmp: str, members: list[tuple[str, bytes]], stop: str
) -> list[str]:
    """Write ``members`` to the shard file ``tmp``; return the directories created for it.

    A shard's directory may not exist yet: with ``write_direct`` no loose chunk
    made it (nested layouts keep shards in index subdirectories), or a
    consolidation of a sibling shard removed it once empty. It is created, and
    created again if such a removal races with the write.
    """
    made: list[str] = []
    directory = os.path.dirname(tmp)
    for attempt in range(20):
        try:
            store._container.write(tmp, members)
            return made
        except FileNotFoundError:
            if attempt == 19 or os.path.isdir(directory):
                raise  # not a missing directory
        missing = directory
        while not os.path.isdir(missing) and missing.startswith(stop + os.sep):
            if missing not in made:
                made.append(missing)
            missing = os.path.dirname(missing)
        with contextlib.suppress(FileNotFoundError):
            os.makedirs(directory, exist_ok=True)
    return made  # not reached


def _sig_or_none(path: str) -> Signature | None:
    try:
        return signature(os.stat(path))
    except (FileNotFoundError, NotADirectoryError):
        return None


def _remove_empty_dirs(dirs: set[str], stop: str) -> None:
    """Remove emptied chunk directories (each is an inode too), never ``stop`` itself.

    Each candidate is tried once, deepest first (rmdir is slow on some
    filesystems). Writers recreate a directory if this races with them
    (see ``_write_temp``).
    """
    stop = os.path.normpath(stop)
    candidates: set[str] = set()
    for start in dirs:
        path = os.path.normpath(start)
        while path != stop and path.startswith(stop + os.sep) and path not in candidates:
            candidates.add(path)
            path = os.path.dirname(path)
    failed: set[str] = set()
    for path in sorted(candidates, key=lambda p: p.count(os.sep), reverse=True):
        if any(f.startswith(path + os.sep) for f in failed if len(f) > len(path)):
            failed.add(path)  # a child stayed, so this one is not empty either
            continue
        try:
            os.rmdir(path)
        except OSError:
            failed.add(path)


def _consolidate_job(
    store: ShardedStoreBase, job: tuple[str, str, list[str]], allow_journal: bool = False
) -> bool:
    prefix, shard_rel, keys = job
    if allow_journal:  # a worker's copy of convert()'s store: the journal is that run's own
        store._allow_journal = True
    store._ensure_open_sync()  # a copy unpickled on a dask worker opens lazily
    return store._rewrite_shard(prefix, shard_rel, keys)


def run_consolidation(
    store: ShardedStoreBase, *, workers: int | None, client: Any, progress: bool
) -> int:
    """Consolidate every shard with loose chunks or tombstones; return shards rewritten."""
    jobs = [(prefix, shard, keys) for (prefix, shard), keys in sorted(store._plan().items())]
    rewritten = 0
    with tqdm(total=len(jobs), desc="consolidate", unit="shard", disable=not progress) as bar:
        if not jobs:
            return 0
        if client is not None:
            from distributed import as_completed as dask_as_completed

            # Pickling drops _allow_journal (a store sent anywhere else must still
            # refuse a half-converted directory), so the job carries it.
            futures = client.map(_consolidate_job, [store] * len(jobs), jobs,
                                 allow_journal=store._allow_journal, pure=False)
            for future in dask_as_completed(futures):
                rewritten += bool(future.result())
                bar.update(1)
            return rewritten
        n = workers if workers is not None else min(8, (os.cpu_count() or 1) + 1, len(jobs))
        if n <= 1:
            for job in jobs:
                rewritten += _consolidate_job(store, job)
                bar.update(1)
            return rewritten
        with ThreadPoolExecutor(max_workers=n) as pool:
            for future in as_completed([pool.submit(_consolidate_job, store, j) for j in jobs]):
                rewritten += bool(future.result())
                bar.update(1)
    return rewritten
