"""ShardedStore: one zarr hierarchy spread over several stores.

Groups can be *mounted* on their own store, and an array's chunks can be split across
sub-stores by the array's first n chunk-grid dimensions. Metadata always stays in the
base (or mount) store, so zarr and xarray see one ordinary hierarchy.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import os
import re
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

from zarr.abc.store import ByteRequest, Store
from zarr.core.buffer import Buffer, BufferPrototype, default_buffer_prototype
from zarr.core.sync import sync
from zarr.storage import LocalStore, WrapperStore, ZipStore

from zsaver._config import to_config, validate_config
from zsaver.errors import ConfigError, StoreConfigError
from zsaver.stores import _sync_io as sync_io
from zsaver.stores._lru_cache import LRUStoreCache
from zsaver.stores._shard_factories import MappedShardFactory, ShardFactory, StoreTable
from zsaver.stores._sharded_base import ShardedStoreBase
from zsaver.stores._sync_io import ensure_open_sync
from zsaver.stores._zip_pickle import with_zips, without_zips

__all__ = ["ArrayShards", "ShardedStore", "chunk_key_to_indices"]

# zarr 3 "default" chunk keys: "c", "c/1/2" or "c.1.2" (one separator throughout).
_DEFAULT_CHUNK_KEY = re.compile(r"c(?:([./])\d+(?:\1\d+)*)?")
# zarr 2 keys and zarr 3 "v2" encoding: "0", "1.2" or "1/2".
_V2_CHUNK_KEY = re.compile(r"\d+(?:([./])\d+(?:\1\d+)*)?")

# The attributes holding component stores (zarr's ZipStores among them pickle as settings).
_COMPONENT_FIELDS = ("_base", "_mounts", "_shards", "_made")


def chunk_key_to_indices(key: str) -> tuple[int, ...] | None:
    """Chunk-grid indices of a chunk key relative to its array, or None if not a chunk key.

    Both encodings zarr defines are self-describing, so no metadata is needed: the zarr 3
    "default" encoding starts with ``c`` and the zarr 2 / "v2" encoding with a digit.

    Example:
        >>> chunk_key_to_indices("c/12/3"), chunk_key_to_indices("12.3"), chunk_key_to_indices("zarr.json")
        ((12, 3), (12, 3), None)
    """
    match = _DEFAULT_CHUNK_KEY.fullmatch(key)
    if match is not None:
        body = key[2:]
        return tuple(int(part) for part in body.split(match.group(1))) if body else ()
    match = _V2_CHUNK_KEY.fullmatch(key)
    if match is not None:
        separator = match.group(1)
        return tuple(int(part) for part in (key.split(separator) if separator else [key]))
    return None


class ArrayShards(NamedTuple):
    """How one array is split: by its first ``n_dims`` chunk-grid dims, stores from ``factory``."""

    n_dims: int
    factory: ShardFactory


def _normalize_path(path: object, what: str) -> str:
    if not isinstance(path, str):
        raise StoreConfigError(f"{what} path must be a str, got {type(path).__name__} {path!r}")
    norm = path.strip("/")
    if "//" in norm or any(part in (".", "..") for part in norm.split("/")):
        raise StoreConfigError(f"{what} path {path!r} is not a clean zarr path like 'group/sub'")
    return norm


def _holds_nothing_yet(store: Store) -> bool:
    """True for a store not yet opened whose directory or file does not exist: it has no key.

    Looks through zsaver's cache and zarr's wrapper stores to the store they wrap.
    """
    if store._is_open:
        return False
    if isinstance(store, (LocalStore, ShardedStoreBase)):
        return not os.path.exists(store.root)
    if isinstance(store, ZipStore):
        return not os.path.exists(store.path)
    if isinstance(store, LRUStoreCache):
        return _holds_nothing_yet(store.store)
    if isinstance(store, WrapperStore):
        return _holds_nothing_yet(store._store)
    return False


async def _opened_unless_empty(store: Store) -> bool:
    """Open ``store`` and return True, unless it holds nothing yet (then leave it unopened)."""
    if _holds_nothing_yet(store):
        return False
    await store._ensure_open()
    return True


def _inside(path: str, parent: str) -> bool:
    """Is ``path`` equal to or below ``parent``, at '/' boundaries? ('' is the root)."""
    return parent == "" or path == parent or path.startswith(parent + "/")


def _check_store(store: object, what: str) -> Store:
    if not isinstance(store, Store):
        raise StoreConfigError(f"{what} must be a zarr.abc.store.Store, got {type(store).__name__}")
    return store


def _store_with_read_only(store: Store, read_only: bool) -> Store:
    """``store`` with the requested mode; a read-only wrapper around a writable store is enough."""
    if store.read_only == read_only:
        return store
    try:
        return store.with_read_only(read_only)
    except NotImplementedError:
        if read_only:
            return store  # our own read-only gate refuses writes before they reach it
        raise


class ShardedStore(Store):
    """A zarr Store that routes keys to a base store, mounted stores and array shards.

    - ``mounts={"group/path": store}``: every key below ``group/path/`` lives in ``store``
      with that prefix removed (so the mounted store is itself a valid zarr hierarchy).
      Mounts match at '/' boundaries only, and may not overlap.
    - ``array_shards={"array/path": (n_dims, factory)}``: each chunk of that array goes to
      ``factory(indices[:n_dims])`` (its chunk-grid indices along the first ``n_dims``
      dimensions) under its full key; the array's metadata stays in the base or mount.
      Sub-stores are created on first use and kept.

    Chunk keys are recognised for zarr 3 ("c/1/2", "c.1.2") and zarr 2 ("1.2", "1/2")
    encodings, any chunk size and any number of digits. Listing returns every key of
    every store, shard sub-stores included; a store's key is listed only if it routes
    back to that store.

    Example:
        >>> import zarr
        >>> from zarr.storage import MemoryStore
        >>> shards = StoreTable({(i,): MemoryStore() for i in range(4)})
        >>> store = ShardedStore(MemoryStore(), array_shards={"x": (1, shards)})
        >>> arr = zarr.create_array(store, name="x", shape=(8, 3), chunks=(2, 3), dtype="i4")
        >>> arr[:] = 1
        >>> sorted(shards((3,))._store_dict)  # the last two rows' chunk, under its full key
        ['x/c/3/0']
    """

    supports_writes: bool = True
    supports_deletes: bool = True
    supports_listing: bool = True

    def __init__(
        self,
        base: Store,
        mounts: Mapping[str, Store] | None = None,
        array_shards: Mapping[str, tuple[int, ShardFactory]] | None = None,
        *,
        read_only: bool = False,
    ) -> None:
        super().__init__(read_only=read_only)
        self._base = _check_store(base, "base")
        self._mounts = self._validated_mounts(mounts or {})
        self._arrays = self._validated_arrays(array_shards or {})
        self._shards: dict[tuple[str, tuple[int, ...]], Store] = {}
        # What the factories made, shared with with_read_only views (``_shards`` holds
        # this store's own, mode-switched, copies).
        self._made: dict[tuple[str, tuple[int, ...]], Store] = {}
        # Set by with_read_only: shards made later are switched to this mode too.
        self._shard_mode: bool | None = None

    # --- construction -------------------------------------------------------------

    @staticmethod
    def _validated_mounts(mounts: Mapping[str, Store]) -> dict[str, Store]:
        if not isinstance(mounts, Mapping):
            raise StoreConfigError(f"mounts must be a mapping path -> Store, got {type(mounts).__name__}")
        result: dict[str, Store] = {}
        for raw, store in mounts.items():
            path = _normalize_path(raw, "mount")
            if path == "":
                raise StoreConfigError("a mount at the root ('') would hide the base store; pass it as base")
            for other in result:
                if _inside(path, other) or _inside(other, path):
                    raise StoreConfigError(
                        f"overlapping mounts {other!r} and {raw!r}: a key can belong to one mount only"
                    )
            result[path] = _check_store(store, f"mount {raw!r}")
        return result

    def _validated_arrays(self, arrays: Mapping[str, tuple[int, ShardFactory]]) -> dict[str, ArrayShards]:
        if not isinstance(arrays, Mapping):
            raise StoreConfigError(
                f"array_shards must be a mapping path -> (n_dims, factory), got {type(arrays).__name__}"
            )
        result: dict[str, ArrayShards] = {}
        for raw, spec in arrays.items():
            path = _normalize_path(raw, "array")
            if not (isinstance(spec, tuple | list) and len(spec) == 2):
                raise StoreConfigError(f"array_shards[{raw!r}] must be (n_dims, factory), got {spec!r}")
            n_dims, factory = spec
            if isinstance(n_dims, bool) or not isinstance(n_dims, int) or n_dims < 1:
                raise StoreConfigError(f"array_shards[{raw!r}]: n_dims must be an int >= 1, got {n_dims!r}")
            if not callable(factory):
                raise StoreConfigError(
                    f"array_shards[{raw!r}]: factory must be callable(index) -> Store, got {type(factory).__name__}"
                )
            for other in result:
                if _inside(path, other) or _inside(other, path):
                    raise StoreConfigError(f"sharded arrays {other!r} and {raw!r} overlap: an array has no children")
            for mount in self._mounts:
                if mount != path and _inside(mount, path):
                    raise StoreConfigError(f"mount {mount!r} lies inside sharded array {raw!r}")
            result[path] = ArrayShards(n_dims, factory)
        return result

    # --- public description ----------------------------------------------------------

    @property
    def base(self) -> Store:
        return self._base

    @property
    def mounts(self) -> Mapping[str, Store]:
        return MappingProxyType(self._mounts)

    @property
    def array_shards(self) -> Mapping[str, ArrayShards]:
        return MappingProxyType(self._arrays)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, ShardedStore)
            and self._base == other._base
            and self._mounts == other._mounts
            and self._arrays == other._arrays
            and self.read_only == other.read_only
        )

    __hash__ = None  # type: ignore[assignment]

    def __str__(self) -> str:
        return f"sharded://{self._base}"

    def __repr__(self) -> str:
        return (
            f"ShardedStore(base={self._base!r}, mounts={sorted(self._mounts)}, "
            f"array_shards={ {p: s.n_dims for p, s in self._arrays.items()} }, read_only={self.read_only})"
        )

    def to_config(self) -> dict[str, Any]:
        """JSON-ready config; factories must be :class:`StoreTemplate`/:class:`StoreTable` or have ``to_config``."""
        arrays = {}
        for path, spec in self._arrays.items():
            try:
                arrays[path] = {"n_dims": spec.n_dims, "factory": to_config(spec.factory)}
            except ConfigError as exc:
                raise ConfigError(f"array_shards[{path!r}].factory: {exc}") from exc
        return validate_config(
            {
                "type": "sharded",
                "base": to_config(self._base),
                "mounts": {path: to_config(store) for path, store in self._mounts.items()},
                "array_shards": arrays,
                "read_only": self.read_only,
            }
        )

    # --- routing ------------------------------------------------------------------

    def _shard_store(self, path: str, index: tuple[int, ...]) -> Store:
        store = self._shards.get((path, index))
        if store is None:
            # One factory call per shard for a store and all its with_read_only views, so a
            # view's shard shares what the writable one caches (an LRUStoreCache per shard).
            made = self._made.get((path, index))
            if made is None:
                made = self._arrays[path].factory(index)
                if not isinstance(made, Store):
                    raise StoreConfigError(
                        f"shard factory of array {path!r} returned {type(made).__name__} for {index}, not a Store"
                    )
                made = self._made.setdefault((path, index), made)
            if self._shard_mode is not None:
                made = _store_with_read_only(made, self._shard_mode)
            store = self._shards.setdefault((path, index), made)
        return store

    def _route(self, key: str) -> tuple[Store, str]:
        """The store that holds ``key`` and the key inside it."""
        parts = key.split("/")
        for i in range(len(parts)):
            path = "/".join(parts[:i])
            spec = self._arrays.get(path)
            if spec is None:
                continue
            indices = chunk_key_to_indices("/".join(parts[i:]))
            if indices is not None:
                if len(indices) < spec.n_dims:
                    raise StoreConfigError(
                        f"chunk key {key!r} has {len(indices)} grid dims but array {path!r} is "
                        f"sharded along its first {spec.n_dims}"
                    )
                return self._shard_store(path, indices[: spec.n_dims]), key
            break  # arrays do not nest: a non-chunk key of an array lives with its metadata
        for i in range(1, len(parts)):
            mount = self._mounts.get("/".join(parts[:i]))
            if mount is not None:
                return mount, "/".join(parts[i:])
        return self._base, key

    async def _open_route(self, key: str, *, reading: bool = False) -> tuple[Store | None, str]:
        """``_route``, with this store and the component that holds ``key`` open.

        Shard sub-stores are made, not opened, on first use. A read of a local
        sub-store or mount with nothing on disk yet gets None: opening it would
        fail (read-only) or create its directory or file (writable).
        """
        await self._ensure_open()
        store, inner = self._route(key)
        if reading and _holds_nothing_yet(store):
            return None, inner
        await store._ensure_open()
        return store, inner

    def _open_route_sync(self, key: str, *, reading: bool = False) -> tuple[Store | None, str]:
        ensure_open_sync(self)
        store, inner = self._route(key)
        if reading and _holds_nothing_yet(store):
            return None, inner
        ensure_open_sync(store)
        return store, inner

    # --- lifecycle ------------------------------------------------------------------

    def _components(self) -> list[Store]:
        """Base, mounts and the shard sub-stores opened so far, each once."""
        seen: dict[int, Store] = {}
        for store in itertools.chain([self._base], self._mounts.values(), self._shards.values()):
            seen.setdefault(id(store), store)
        return list(seen.values())

    async def _open(self) -> None:
        await super()._open()  # sets the flag before any await, so concurrent opens cannot race
        await self._base._ensure_open()
        for store in self._mounts.values():
            await _opened_unless_empty(store)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_is_open"] = False  # the copy opens its components itself, on first use
        memo: dict[int, Any] = {}  # one ZipStore held twice travels once
        for name in _COMPONENT_FIELDS:
            state[name] = without_zips(state[name], memo)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        memo: dict[int, Any] = {}
        for name in _COMPONENT_FIELDS:
            state[name] = with_zips(state[name], memo)
        self.__dict__.update(state)

    def close(self) -> None:
        for store in self._components():
            if store._is_open:  # one never opened (nothing on disk) has nothing to close
                store.close()
        super().close()

    def with_read_only(self, read_only: bool = False) -> ShardedStore:
        """A new, unopened ShardedStore over the same stores and factories, in the given mode.

        Does no I/O (zarr calls it from inside its event loop). Components whose mode
        differs are switched with their own ``with_read_only``; shards made later too.
        """
        new = ShardedStore(
            _store_with_read_only(self._base, read_only),
            {path: _store_with_read_only(s, read_only) for path, s in self._mounts.items()},
            {path: (spec.n_dims, spec.factory) for path, spec in self._arrays.items()},
            read_only=read_only,
        )
        new._shard_mode = read_only
        new._made = self._made
        new._shards = {k: _store_with_read_only(s, read_only) for k, s in self._shards.items()}
        return new

    # --- reads and writes -----------------------------------------------------------

    async def get(
        self, key: str, prototype: BufferPrototype | None = None, byte_range: ByteRequest | None = None
    ) -> Buffer | None:
        store, inner = await self._open_route(key, reading=True)
        if store is None:
            return None
        return await store.get(inner, prototype or default_buffer_prototype(), byte_range)

    async def get_partial_values(
        self, prototype: BufferPrototype, key_ranges: Iterable[tuple[str, ByteRequest | None]]
    ) -> list[Buffer | None]:
        await self._ensure_open()
        requests = list(key_ranges)
        # One call per component keeps each store's own batching.
        groups: dict[int, tuple[Store, list[int], list[tuple[str, ByteRequest | None]]]] = {}
        for position, (key, byte_range) in enumerate(requests):
            store, inner = await self._open_route(key, reading=True)
            if store is None:
                continue  # nothing stored there yet: the answer stays None
            group = groups.setdefault(id(store), (store, [], []))
            group[1].append(position)
            group[2].append((inner, byte_range))
        results: list[Buffer | None] = [None] * len(requests)
        answers = await asyncio.gather(
            *(store.get_partial_values(prototype, ranges) for store, _, ranges in groups.values())
        )
        for (_, positions, _), values in zip(groups.values(), answers, strict=True):
            for position, value in zip(positions, values, strict=True):
                results[position] = value
        return results

    def get_sync(
        self, key: str, *, prototype: BufferPrototype | None = None, byte_range: ByteRequest | None = None
    ) -> Buffer | None:
        """``get`` without the event loop (zarr's optional synchronous protocol)."""
        store, inner = self._open_route_sync(key, reading=True)
        if store is None:
            return None
        return sync_io.get_sync(store, inner, prototype, byte_range)

    def set_sync(self, key: str, value: Buffer) -> None:
        self._check_writable()
        store, inner = self._open_route_sync(key)
        assert store is not None
        sync_io.set_sync(store, inner, value)

    def delete_sync(self, key: str) -> None:
        self._check_writable()
        store, inner = self._open_route_sync(key, reading=True)
        if store is not None:  # else there is nothing to delete
            sync_io.delete_sync(store, inner)

    async def exists(self, key: str) -> bool:
        store, inner = await self._open_route(key, reading=True)
        return store is not None and await store.exists(inner)

    async def getsize(self, key: str) -> int:
        store, inner = await self._open_route(key, reading=True)
        if store is None:
            raise FileNotFoundError(key)
        return await store.getsize(inner)

    async def set(self, key: str, value: Buffer) -> None:
        self._check_writable()
        store, inner = await self._open_route(key)
        assert store is not None
        await store.set(inner, value)

    async def set_if_not_exists(self, key: str, value: Buffer) -> None:
        self._check_writable()
        store, inner = await self._open_route(key)
        assert store is not None
        await store.set_if_not_exists(inner, value)

    async def delete(self, key: str) -> None:
        self._check_writable()
        store, inner = await self._open_route(key, reading=True)
        if store is not None:  # else there is nothing to delete
            await store.delete(inner)

    async def delete_dir(self, prefix: str) -> None:
        # Delegated to each store's delete_dir (a LocalStore removes a whole tree at once)
        # instead of deleting key by key.
        self._check_writable()
        await self._ensure_open()
        prefix = prefix.strip("/")
        # Shards first, while the arrays' metadata (which says what shards exist) is still there.
        for path in self._arrays:
            if _inside(prefix, path) or _inside(path, prefix):
                target = prefix if _inside(prefix, path) else path
                for store in await self._shard_stores(path):
                    await store.delete_dir(target)
        inside_mount = next((m for m in self._mounts if _inside(prefix, m)), None)
        if inside_mount is not None:
            if await _opened_unless_empty(self._mounts[inside_mount]):
                await self._mounts[inside_mount].delete_dir(prefix[len(inside_mount) + 1 :])
        else:
            await self._base.delete_dir(prefix)
            for mount, store in self._mounts.items():
                if _inside(mount, prefix) and await _opened_unless_empty(store):
                    await store.delete_dir("")

    # --- listing ------------------------------------------------------------------

    async def _chunk_grid(self, path: str) -> tuple[int, ...] | None:
        """Chunks per dimension of the array at ``path``, from its metadata; None if unknown."""
        prefix = f"{path}/" if path else ""
        for name in ("zarr.json", ".zarray"):
            buffer = await self.get(prefix + name, default_buffer_prototype())
            if buffer is None:
                continue
            try:
                meta = json.loads(buffer.to_bytes())
                shape = meta["shape"]
                if name == "zarr.json":
                    grid = meta["chunk_grid"]
                    if meta.get("node_type") != "array" or grid.get("name") != "regular":
                        return None
                    chunks = grid["configuration"]["chunk_shape"]
                else:
                    chunks = meta["chunks"]
                return tuple(math.ceil(s / c) for s, c in zip(shape, chunks, strict=True))
            except (ValueError, KeyError, TypeError, AttributeError, ZeroDivisionError):
                return None  # not array metadata we understand: fall back to shards opened so far
        return None

    async def _shard_indices(self, path: str) -> list[tuple[int, ...]]:
        """Every shard index the array's current chunk grid covers, plus any opened already."""
        n_dims = self._arrays[path].n_dims
        indices = {index for (array, index) in list(self._shards) if array == path}
        grid = await self._chunk_grid(path)
        if grid is not None and len(grid) >= n_dims:
            indices.update(itertools.product(*(range(g) for g in grid[:n_dims])))
        return sorted(indices)

    async def _shard_stores(self, path: str) -> list[Store]:
        """The shard stores of the array at ``path`` that hold anything, opened."""
        stores: dict[int, Store] = {}
        for index in await self._shard_indices(path):
            store = self._shard_store(path, index)
            stores.setdefault(id(store), store)
        return [store for store in stores.values() if await _opened_unless_empty(store)]

    def _routes_to(self, key: str, store: Store, inner: str) -> bool:
        try:
            home, home_key = self._route(key)
        except StoreConfigError:
            return False
        return home is store and home_key == inner

    async def list(self) -> AsyncIterator[str]:
        async for key in self.list_prefix(""):
            yield key

    async def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        await self._ensure_open()
        seen: set[str] = set()
        async for key in self._base.list_prefix(prefix):
            if key not in seen and self._routes_to(key, self._base, key):
                seen.add(key)
                yield key
        for mount, store in self._mounts.items():
            if prefix.startswith(mount + "/"):
                inner_prefix = prefix[len(mount) + 1 :]
            elif (mount + "/").startswith(prefix):
                inner_prefix = ""
            else:
                continue
            if not await _opened_unless_empty(store):
                continue
            async for inner in store.list_prefix(inner_prefix):
                key = f"{mount}/{inner}"
                if key.startswith(prefix) and key not in seen and self._routes_to(key, store, inner):
                    seen.add(key)
                    yield key
        for path in self._arrays:
            array_prefix = f"{path}/" if path else ""
            if not (prefix.startswith(array_prefix) or array_prefix.startswith(prefix)):
                continue
            sub_prefix = max(prefix, array_prefix, key=len)
            for store in await self._shard_stores(path):
                async for key in store.list_prefix(sub_prefix):
                    if key not in seen and self._routes_to(key, store, key):
                        seen.add(key)
                        yield key

    async def list_dir(self, prefix: str) -> AsyncIterator[str]:
        # Delegated to each store's list_dir rather than derived from list_prefix, so listing
        # a group does not walk every chunk below it.
        await self._ensure_open()
        prefix = prefix.strip("/")
        names: set[str] = set()
        inside_mount = next((m for m in self._mounts if _inside(prefix, m)), None)
        if inside_mount is not None:
            inner = prefix[len(inside_mount) + 1 :]
            if await _opened_unless_empty(self._mounts[inside_mount]):
                names.update([name async for name in self._mounts[inside_mount].list_dir(inner)])
        else:
            names.update([name async for name in self._base.list_dir(prefix)])
            for mount, store in self._mounts.items():
                if _inside(mount, prefix) and await _opened_unless_empty(store) and not await store.is_empty(""):
                    names.add(mount[len(prefix) :].lstrip("/").split("/")[0])
        for path in self._arrays:
            if _inside(prefix, path):
                for store in await self._shard_stores(path):
                    names.update([name async for name in store.list_dir(prefix)])
            elif _inside(path, prefix):
                # An array whose chunks exist but whose metadata is not (yet) written still
                # shows up as a directory, as it does in list_prefix.
                name = path[len(prefix) :].lstrip("/").split("/")[0]
                if name not in names:
                    for store in await self._shard_stores(path):
                        if not await store.is_empty(path):
                            names.add(name)
                            break
        for name in sorted(names):
            yield name

    # --- transformation ---------------------------------------------------------------

    def map_shards(self, func: Callable[[Store], Store], *, grow: bool = True) -> ShardedStore:
        """A new ShardedStore with ``func`` applied to the base, every mount and every shard.

        Shards are those the arrays' current chunk grids cover (from their metadata) plus
        any opened already; ``func`` runs on each now, once per distinct store. With
        ``grow=True`` a shard first used later gets ``func(factory(index))``; with
        ``grow=False`` the new store knows only today's shards (a chunk beyond them raises
        StoreConfigError) and its config is complete. Must not be called from a running
        event loop (it reads metadata synchronously).

        Example:
            >>> cached = store.map_shards(lambda s: LRUStoreCache(s, 2**26))  # doctest: +SKIP
        """
        indices = {path: sync(self._shard_indices(path)) for path in self._arrays}
        return self._mapped(func, indices, grow=grow)

    def _mapped(
        self,
        func: Callable[[Store], Store],
        indices: Mapping[str, Iterable[tuple[int, ...]]],
        *,
        grow: bool,
    ) -> ShardedStore:
        mapped: dict[int, Store] = {}

        def apply(store: Store) -> Store:
            if id(store) not in mapped:  # a store shared by several shards is mapped once
                result = func(store)
                mapped[id(store)] = _check_store(result, f"map_shards func result for {store!r}")
            return mapped[id(store)]

        arrays: dict[str, tuple[int, ShardFactory]] = {}
        for path, spec in self._arrays.items():
            table = {index: apply(self._shard_store(path, index)) for index in indices[path]}
            fallback = MappedShardFactory(spec.factory, func) if grow else None
            arrays[path] = (spec.n_dims, StoreTable(table, fallback=fallback))
        return ShardedStore(
            apply(self._base),
            {path: apply(store) for path, store in self._mounts.items()},
            arrays,
            read_only=self.read_only,
        )

    def shard_stores(self) -> dict[str, dict[tuple[int, ...], Store]]:
        """``{array_path: {shard_index: store}}`` for every shard the arrays cover now."""
        return {
            path: {index: self._shard_store(path, index) for index in sync(self._shard_indices(path))}
            for path in self._arrays
        }
