"""Subprocess side of the store fault tests: wait for 'go' on stdin, then run one job."""

from __future__ import annotations

import sys

import numpy as np
import zarr

from zsaver.stores import H5ShardStore, ZipShardStore, convert

CLASSES = {"h5": H5ShardStore, "zip": ZipShardStore}


def main() -> None:
    job, kind, root, *rest = sys.argv[1:]
    print("ready", flush=True)
    sys.stdin.readline()
    if job == "consolidate":
        CLASSES[kind](root).consolidate(workers=int(rest[0]))
    elif job == "convert":  # kind is the target; rest[0], if given, a nested tree's depth
        convert(root, kind, consolidate_depth=int(rest[0]) if rest else None)
    elif job == "write":  # writer number rest[0] of rest[1]: versions 1..rest[2] of its chunks
        me, writers, versions = map(int, rest)
        arr = zarr.open_array(CLASSES[kind](root), path="x", mode="r+")
        n = arr.shape[0] // arr.chunks[0]
        for version in range(1, versions + 1):
            for chunk in range(me, n, writers):
                arr[chunk * arr.chunks[0] : (chunk + 1) * arr.chunks[0]] = version * 1000 + chunk
    elif job == "consolidate-loop":  # counts shard rewrites in <root>.rewrites
        store = CLASSES[kind](root)
        while True:
            rewritten = store.consolidate(workers=2)
            with open(root + ".rewrites", "a") as log:
                log.write(f"{rewritten}\n")
    elif job == "set-if-not-exists":  # race on key rest[0]; print the value read afterwards
        import time

        from zarr.core.buffer import default_buffer_prototype

        cls = CLASSES[kind]
        exists = cls.exists_sync

        def slow_exists(self: object, key: str) -> bool:  # widen the check-then-write window
            found = exists(self, key)
            time.sleep(0.05)
            return found

        cls.exists_sync = slow_exists  # type: ignore[method-assign]
        store = cls(root)
        proto = default_buffer_prototype()
        store.set_if_not_exists_sync(rest[0], proto.buffer.from_bytes(rest[1].encode()))
        got = store.get_sync(rest[0], prototype=proto)
        print(got.to_bytes().decode() if got is not None else "missing", flush=True)
    elif job == "slow-consolidate":  # says "writing" once shards are read, then waits rest[0] s
        import time

        store = CLASSES[kind](root)
        write = store._container.write

        def slow_write(path: str, members: object) -> None:
            print("writing", flush=True)
            time.sleep(float(rest[0]))
            write(path, members)

        store._container.write = slow_write  # type: ignore[method-assign]
        store.consolidate(workers=1)
    elif job == "write-direct":  # flush after chunk rest[0]; keep writing until killed
        store = CLASSES[kind](root, write_direct=True)
        arr = zarr.open_array(store, path="x", mode="r+")
        flush_after = int(rest[0])
        for chunk in range(arr.shape[0]):
            arr[chunk] = chunk + 1
            if chunk == flush_after:
                store.flush()
                print("flushed", flush=True)
        print("unflushed", flush=True)
        sys.stdin.readline()  # wait here, chunks after the flush still buffered
    print("done", flush=True)
    np.zeros(1)  # keep numpy imported before 'ready' for a steady startup


if __name__ == "__main__":
    main()
