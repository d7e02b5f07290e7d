"""Pickle zarr ZipStores held by zsaver's stores as their settings, not as open files.

zarr's ``ZipStore`` opens its file as soon as it is unpickled: a missing file
then raises, and mode ``"w"`` truncates an existing one, so sending a store to a
dask worker could destroy an archive. zsaver's composite stores swap each
ZipStore they hold directly for a :class:`ZipSpec` when pickled and rebuild an
unopened ZipStore when unpickled; it opens on first use, in mode ``"a"`` if the
original was ``"w"`` or ``"x"`` (that one already created or truncated the file).

Example:
    >>> import pickle
    >>> from zarr.storage import ZipStore
    >>> state = without_zips({"m": ZipStore("/nowhere/a.zip", mode="w")})
    >>> copy = with_zips(pickle.loads(pickle.dumps(state)))["m"]
    >>> copy._is_open, copy._zmode
    (False, 'a')
"""

from __future__ import annotations

from typing import Any, NamedTuple

from zarr.storage import ZipStore


class ZipSpec(NamedTuple):
    """The settings of a ZipStore, which reopen it lazily."""

    path: str
    mode: str
    read_only: bool
    compression: int
    allow_zip64: bool

    @classmethod
    def of(cls, store: ZipStore) -> ZipSpec:
        mode = "a" if store._zmode in ("w", "x") else store._zmode
        return cls(str(store.path), mode, store.read_only, store.compression, store.allowZip64)

    def unopened(self) -> ZipStore:
        return ZipStore(
            self.path,
            mode=self.mode,  # type: ignore[arg-type]
            read_only=self.read_only,
            compression=self.compression,
            allowZip64=self.allow_zip64,
        )


def without_zips(value: Any, memo: dict[int, ZipSpec] | None = None) -> Any:
    """``value`` (a store or a dict of them) with each ZipStore replaced by its ZipSpec.

    Pass one ``memo`` for all the values of one object: a ZipStore held twice
    becomes one ZipSpec, so it is rebuilt once.
    """
    memo = {} if memo is None else memo
    if isinstance(value, dict):
        return {key: without_zips(item, memo) for key, item in value.items()}
    if isinstance(value, ZipStore):
        return memo.setdefault(id(value), ZipSpec.of(value))
    return value


def with_zips(value: Any, memo: dict[int, ZipStore] | None = None) -> Any:
    """The reverse of :func:`without_zips`: each ZipSpec becomes an unopened ZipStore."""
    memo = {} if memo is None else memo
    if isinstance(value, dict):
        return {key: with_zips(item, memo) for key, item in value.items()}
    if isinstance(value, ZipSpec):
        return memo.setdefault(id(value), value.unopened())
    return value


__all__ = ["ZipSpec", "with_zips", "without_zips"]
