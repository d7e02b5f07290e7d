"""The zsaver command line: look at, consolidate, convert and check a store.

Example:
    $ zsaver info results.zarr
    $ zsaver verify results.zarr --json
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import zarr
from zarr.abc.store import Store

from zsaver.errors import ZsaverError
from zsaver.stores._layout import NODE_DOCUMENTS


class CommandError(ZsaverError, RuntimeError):
    """A command that cannot go on; printed as one line, exit status 2."""


# --- opening -------------------------------------------------------------------------


def open_path(path: str, *, read_only: bool = True) -> Store:
    """The store at ``path``: a zsaver shard store, a zarr zip file or a plain zarr directory."""
    from zsaver.stores import open_store
    from zsaver.stores._sync_io import ensure_open_sync

    p = Path(path).absolute()  # zarr's LocalStore lists keys wrongly under some relative roots
    if not p.exists():
        raise CommandError(f"{path}: no such file or directory")
    try:
        store = open_store(p, read_only=read_only)
        ensure_open_sync(store)  # a ZipStore does not open itself for listing
        return store
    except (ValueError, OSError) as exc:
        raise CommandError(f"{path}: {exc}") from exc




@dataclass
class Hierarchy:
    groups: list[str]
    arrays: list[zarr.Array]


def _node_paths(store: Store) -> list[str]:
    root = getattr(store, "root", None)
    if isinstance(root, Path) and root.is_dir():
        # Metadata documents are plain files in every directory store zsaver opens;
        # walking for them never opens a shard, so a damaged shard cannot hide the tree.
        found = set()
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if not d.startswith(".zsaver")]
            if NODE_DOCUMENTS.intersection(filenames):
                rel = os.path.relpath(dirpath, root).replace(os.sep, "/")
                found.add("" if rel == "." else rel)
        return sorted(found)
    keys = zarr.core.sync.sync(_list_keys(store, ""))
    return sorted({k.rpartition("/")[0] for k in keys if k.rpartition("/")[2] in NODE_DOCUMENTS})


def _discover(store: Store, path: str) -> Hierarchy:
    """Every group and array, found from their metadata documents.

    Walking the listing rather than ``open_group("")`` also finds arrays whose
    parents were never written as groups (zarr 3 has no implicit groups).
    """
    node_paths = _node_paths(store)
    if not node_paths:
        raise CommandError(f"{path}: not a zarr store (no zarr.json, .zarray or .zgroup found)")
    groups: list[str] = []
    arrays: list[zarr.Array] = []
    for node_path in node_paths:
        try:
            node = zarr.open(store=store, path=node_path, mode="r")
        except Exception as exc:  # zarr raises several types for damaged metadata
            raise CommandError(
                f"{path}: cannot read the metadata of {node_path or '/'!r} ({type(exc).__name__}: {exc})"
            ) from exc
        if isinstance(node, zarr.Array):
            arrays.append(node)
        else:
            groups.append(node_path or "/")
    return Hierarchy(groups=groups, arrays=arrays)


def _codec_names(arr: zarr.Array) -> list[str]:
    names: list[str] = []
    for codec in (*arr.filters, arr.serializer, *arr.compressors):
        if codec is None:
            continue
        conf = codec.to_dict() if hasattr(codec, "to_dict") else codec.get_config()
        names.append(str(conf.get("name") or conf.get("id") or type(codec).__name__))
    return names


# --- info ----------------------------------------------------------------------------


@dataclass
class ArrayInfo:
    path: str
    shape: list[int]
    dtype: str
    chunks: list[int]
    shards: list[int] | None
    codecs: list[str]
    zarr_format: int
    chunks_stored: int
    chunks_loose: int | None
    chunks_in_shards: int | None
    bytes_stored: int


@dataclass
class StoreInfo:
    path: str
    store: str
    groups: list[str]
    arrays: list[ArrayInfo] = field(default_factory=list)
    files_on_disk: int = 0
    bytes_on_disk: int = 0


def _chunk_split(store: Store, prefix: str) -> tuple[int | None, int | None]:
    counter = getattr(store, "count_chunks", None)
    if counter is None:
        return None, None
    counts = counter(prefix)
    return counts["loose"], counts["in_shards"]


def _disk_usage(path: Path) -> tuple[int, int]:
    if path.is_file():
        return 1, path.stat().st_size
    files = size = 0
    for dirpath, _, filenames in os.walk(path):
        for name in filenames:
            try:  # a loose chunk may be absorbed into its shard meanwhile
                size += os.path.getsize(os.path.join(dirpath, name))
            except FileNotFoundError:
                continue
            files += 1
    return files, size


def _files_on_disk(path: Path) -> int:
    return _disk_usage(path)[0]


def collect_info(path: str) -> StoreInfo:
    """Everything ``zsaver info`` prints, as a dataclass."""
    store = open_path(path)
    tree = _discover(store, path)
    info = StoreInfo(path=path, store=type(store).__name__, groups=tree.groups)
    for arr in tree.arrays:
        prefix = f"{arr.path}/" if arr.path else ""
        # dict.fromkeys: a zip lists a rewritten key once per copy it holds.
        listed = dict.fromkeys(zarr.core.sync.sync(_list_keys(store, prefix)))
        keys = [k for k in listed if _is_chunk_key(arr, k)]
        loose, sharded = _chunk_split(store, prefix)
        info.arrays.append(
            ArrayInfo(
                path=arr.path or "/",
                shape=list(arr.shape),
                dtype=str(arr.dtype),
                chunks=list(arr.chunks),
                shards=list(arr.shards) if arr.shards else None,
                codecs=_codec_names(arr),
                zarr_format=arr.metadata.zarr_format,
                chunks_stored=len(keys),
                chunks_loose=loose,
                chunks_in_shards=sharded,
                bytes_stored=sum(zarr.core.sync.sync(store.getsize(k)) for k in keys),
            )
        )
    info.files_on_disk, info.bytes_on_disk = _disk_usage(Path(path))
    return info


async def _list_keys(store: Store, prefix: str) -> list[str]:
    return [k async for k in store.list_prefix(prefix)]


def _is_chunk_key(arr: zarr.Array, key: str) -> bool:
    prefix = f"{arr.path}/" if arr.path else ""
    return _chunk_key_pattern(arr).fullmatch(key[len(prefix) :]) is not None


def _chunk_key_pattern(arr: zarr.Array) -> re.Pattern[str]:
    """The chunk (or shard) keys of ``arr``, relative to it, in its own key encoding."""
    sentinel = "918273645"
    sample = arr.metadata.encode_chunk_key((int(sentinel),) * arr.ndim)
    return re.compile(re.escape(sample).replace(sentinel, "(?:0|[1-9][0-9]*)"))


def _print_info(info: StoreInfo) -> None:
    print(f"{info.path} ({info.store}): {info.files_on_disk} files, {_human(info.bytes_on_disk)} on disk")
    print(f"groups: {', '.join(info.groups) if info.groups else '(none)'}")
    for a in info.arrays:
        split = ""
        if a.chunks_loose is not None:
            split = f" ({a.chunks_loose} loose, {a.chunks_in_shards} in shards)"
        print(f"array {a.path}: shape {tuple(a.shape)} {a.dtype}, chunks {tuple(a.chunks)}"
              + (f", shards {tuple(a.shards)}" if a.shards else "")
              + f", zarr v{a.zarr_format}")
        print(f"  codecs: {', '.join(a.codecs) or 'none'}")
        print(f"  chunks stored: {a.chunks_stored}{split}, {_human(a.bytes_stored)}")


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


# --- verify --------------------------------------------------------------------------


@dataclass
class VerifyReport:
    path: str
    chunks_checked: int = 0
    missing: list[str] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)

    allow_missing: bool = False

    @property
    def ok(self) -> bool:
        return not self.failed and (self.allow_missing or not self.missing)


def verify(path: str, *, allow_missing: bool = False) -> VerifyReport:
    """Decode every chunk of every array; list the ones that fail and the ones missing.

    zsaver's savers write every chunk, so a chunk missing inside an array's
    extent means lost data (a deleted shard, say); sparse arrays written by other
    tools, or a run still filling a preallocated array, need ``allow_missing``.
    """
    store = open_path(path)
    report = VerifyReport(path=path, allow_missing=allow_missing)
    for arr in _discover(store, path).arrays:
        block = arr.shards or arr.chunks
        grid = [range(-(-s // c)) for s, c in zip(arr.shape, block, strict=True)]
        for coords in itertools.product(*grid):
            key = arr.metadata.encode_chunk_key(coords)
            full_key = f"{arr.path}/{key}" if arr.path else key
            region = tuple(
                slice(i * c, min((i + 1) * c, s)) for i, c, s in zip(coords, block, arr.shape, strict=True)
            )
            try:
                exists = zarr.core.sync.sync(store.exists(full_key))
                if not exists:
                    report.missing.append(full_key)
                    continue
                arr[region]
            except Exception as exc:
                report.failed.append({"key": full_key, "error": f"{type(exc).__name__}: {exc}"})
            report.chunks_checked += 1
    return report


# --- the command ---------------------------------------------------------------------


def _cmd_info(args: argparse.Namespace) -> int:
    info = collect_info(args.path)
    if args.json:
        print(json.dumps(asdict(info), indent=2))
    else:
        _print_info(info)
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    report = verify(args.path, allow_missing=args.allow_missing)
    if args.json:
        print(json.dumps({**asdict(report), "ok": report.ok}, indent=2))
        return 0 if report.ok else 1
    for bad in report.failed:
        print(f"FAILED  {bad['key']}: {bad['error']}")
    if report.missing and not args.allow_missing:
        shown = report.missing[:10]
        more = f" (and {len(report.missing) - len(shown)} more)" if len(report.missing) > len(shown) else ""
        print(f"MISSING {', '.join(shown)}{more}")
    decoded = report.chunks_checked - len(report.failed)
    print(f"{report.chunks_checked} chunks read: {decoded} decoded, {len(report.failed)} failed; "
          f"{len(report.missing)} missing" + (" (allowed: read as fill value)" if args.allow_missing else ""))
    if report.missing and not args.allow_missing:
        print("a missing chunk reads as the fill value; pass --allow-missing if the array is "
              "sparse or still being filled")
    return 0 if report.ok else 1


def _cmd_consolidate(args: argparse.Namespace) -> int:
    store = open_path(args.path, read_only=False)
    consolidate = getattr(store, "consolidate", None)
    if consolidate is None:
        raise CommandError(f"{args.path}: a {type(store).__name__} has no loose chunks to consolidate")
    before = _files_on_disk(Path(args.path))
    rewritten = consolidate(workers=args.workers, progress=not args.json and not args.no_progress)
    summary = {"path": args.path, "shards_rewritten": rewritten, "files_before": before,
               "files_after": _files_on_disk(Path(args.path))}
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"consolidated {args.path}: {rewritten} shards rewritten, "
              f"files on disk {summary['files_before']} -> {summary['files_after']}")
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from zsaver.stores import convert

    if not Path(args.path).exists():
        raise CommandError(f"{args.path}: no such file or directory")
    before = _files_on_disk(Path(args.path))
    try:
        convert(args.path, to=args.to, consolidate_depth=args.consolidate_depth,
                progress=not args.json and not args.no_progress)
    except (ValueError, OSError) as exc:
        raise CommandError(f"{args.path}: {exc}") from exc
    summary = {"path": args.path, "to": args.to, "files_before": before,
               "files_after": _files_on_disk(Path(args.path))}
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"converted {args.path} to {args.to}: files on disk {before} -> {summary['files_after']}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from zsaver._demo import run_demo

    if Path(args.path).exists() and not Path(args.path).is_dir():
        raise CommandError(f"{args.path}: expected a directory for the demo's store, got a file")
    summary = run_demo(args.path, quiet=args.json)
    if args.json:
        print(json.dumps(summary))
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive int, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive int, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zsaver", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.add_argument("--json", action="store_true", help="machine-readable output")
        return p

    p = add("info", "groups and arrays: shape, dtype, chunks, codecs, chunk and file counts")
    p.add_argument("path")
    p.set_defaults(func=_cmd_info)
    p = add("verify", "decode every chunk; exit status 1 if any fails or is missing")
    p.add_argument("path")
    p.add_argument("--allow-missing", action="store_true",
                   help="accept chunks that are not stored (sparse arrays)")
    p.set_defaults(func=_cmd_verify)
    p = add("consolidate", "move loose chunks into their shard files")
    p.add_argument("path")
    p.add_argument("--workers", type=_positive_int, default=None, help="shards consolidated at once")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_consolidate)
    p = add("convert", "convert a store in place, a shard at a time")
    p.add_argument("path")
    p.add_argument("--to", required=True, choices=["h5", "zip", "plain"])
    p.add_argument("--consolidate-depth", type=int, default=None, metavar="D",
                   help="the depth a zarr 2 H5_Nested_Store tree was written with")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_convert)
    p = add("demo", "run a small batch job and save its results")
    p.add_argument("path", nargs="?", default="zsaver-demo.zarr")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``zsaver`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (ZsaverError, OSError, ValueError, KeyError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"zsaver {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"zsaver {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["ArrayInfo", "StoreInfo", "VerifyReport", "collect_info", "main", "verify"]
