"""Shard factories for ShardedStore: callables ``factory(shard_index) -> Store`` with configs.

Any callable works as a factory; these two also pickle cheaply and describe themselves as
JSON configs, so a ShardedStore using them can be rebuilt with :func:`zsaver.from_config`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from zarr.abc.store import Store

from zsaver._config import from_config, to_config, validate_config
from zsaver.errors import ConfigError, StoreConfigError

__all__ = ["MappedShardFactory", "ShardFactory", "StoreTable", "StoreTemplate"]

#: What ShardedStore accepts as a factory: shard index (chunk-grid indices) -> Store.
ShardFactory = Callable[[tuple[int, ...]], Store]

# Large enough for any array zarr can hold; used only to check a template once.
_PROBE_INDEX = (0,) * 32


def _fill(template: Any, index: tuple[int, ...]) -> Any:
    if isinstance(template, str):
        return template.format(*index, index="-".join(map(str, index)))
    if isinstance(template, Mapping):
        return {key: _fill(value, index) for key, value in template.items()}
    if isinstance(template, list):
        return [_fill(value, index) for value in template]
    return template


class StoreTemplate:
    """Build each shard's store from a config whose strings name the shard index.

    Placeholders: ``{0}``, ``{1}``, ... are the shard's chunk-grid indices, ``{index}``
    all of them joined by ``-``. Literal braces are written ``{{`` and ``}}``.

    Example:
        >>> factory = StoreTemplate({"type": "local", "root": "shards/x-{index}"})
        >>> factory((3, 12)).root.as_posix()
        'shards/x-3-12'
    """

    def __init__(self, template: Mapping[str, Any]) -> None:
        if not isinstance(template, Mapping):
            raise StoreConfigError(f"StoreTemplate needs a store config mapping, got {type(template).__name__}")
        try:
            probe = _fill(dict(template), _PROBE_INDEX)
        except (IndexError, KeyError, ValueError) as exc:
            raise StoreConfigError(
                f"store template {dict(template)!r} has a bad placeholder ({exc!r}); "
                "use {0}, {1}, ... or {index}"
            ) from exc
        validate_config(probe)  # a bad config raises pydantic's ValidationError naming the field
        try:  # keep the normalised form (defaults filled in) so configs round-trip to equal templates
            self._template = validate_config(dict(template))
        except ValueError:
            self._template = dict(template)

    @property
    def template(self) -> dict[str, Any]:
        """The config template (a copy)."""
        return dict(self._template)

    def __call__(self, index: tuple[int, ...]) -> Store:
        return from_config(_fill(self._template, tuple(index)))

    def to_config(self) -> dict[str, Any]:
        """``{"type": "store_template", "template": {...}}``."""
        return validate_config({"type": "store_template", "template": self._template})

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StoreTemplate) and self._template == other._template

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"StoreTemplate({self._template!r})"


class StoreTable:
    """An explicit table ``{shard_index: store}``, with an optional fallback factory.

    An index missing from the table goes to ``fallback``; without one it raises
    :class:`~zsaver.errors.StoreConfigError` (a ValueError) naming the index.

    Example:
        >>> from zarr.storage import MemoryStore
        >>> table = StoreTable({(0,): MemoryStore(), (1,): MemoryStore()})
        >>> isinstance(table((1,)), MemoryStore)
        True
    """

    def __init__(
        self,
        stores: Mapping[tuple[int, ...], Store],
        fallback: ShardFactory | None = None,
    ) -> None:
        table: dict[tuple[int, ...], Store] = {}
        for index, store in stores.items():
            key = (index,) if isinstance(index, int) else tuple(index)
            if not all(isinstance(i, int) and i >= 0 for i in key):
                raise StoreConfigError(f"shard index must be a tuple of ints >= 0, got {index!r}")
            if not isinstance(store, Store):
                raise StoreConfigError(
                    f"StoreTable value for {key} must be a zarr Store, got {type(store).__name__}"
                )
            table[key] = store
        if fallback is not None and not callable(fallback):
            raise StoreConfigError(f"fallback must be callable, got {type(fallback).__name__}")
        self._stores = table
        self._fallback = fallback

    @property
    def stores(self) -> dict[tuple[int, ...], Store]:
        """The table (a copy)."""
        return dict(self._stores)

    @property
    def fallback(self) -> ShardFactory | None:
        return self._fallback

    def __call__(self, index: tuple[int, ...]) -> Store:
        index = tuple(index)
        store = self._stores.get(index)
        if store is not None:
            return store
        if self._fallback is not None:
            return self._fallback(index)
        sample = ", ".join(map(str, sorted(self._stores)[:4]))
        raise StoreConfigError(
            f"no store for shard index {index}: the table has {len(self._stores)} entries"
            f" ({sample}{', ...' if len(self._stores) > 4 else ''}) and no fallback"
        )

    def to_config(self) -> dict[str, Any]:
        """``{"type": "store_table", "stores": [{"index": [...], "store": {...}}, ...], "fallback": ...}``."""
        entries = [
            {"index": list(index), "store": to_config(store)}
            for index, store in sorted(self._stores.items())
        ]
        fallback = None if self._fallback is None else to_config(self._fallback)
        return validate_config({"type": "store_table", "stores": entries, "fallback": fallback})

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, StoreTable)
            and self._stores == other._stores
            and self._fallback == other._fallback
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"StoreTable({len(self._stores)} stores, fallback={self._fallback!r})"


class MappedShardFactory:
    """``func(factory(index))``: what :meth:`ShardedStore.map_shards` uses for shards made later.

    It has no config (``func`` is arbitrary code); ``map_shards(func, grow=False)``
    gives a store whose config is complete.
    """

    def __init__(self, factory: ShardFactory, func: Callable[[Store], Store]) -> None:
        self.factory = factory
        self.func = func

    def __call__(self, index: tuple[int, ...]) -> Store:
        return self.func(self.factory(index))

    def to_config(self) -> dict[str, Any]:
        raise ConfigError(
            "shards created after map_shards(func) run arbitrary code and have no config; "
            "use map_shards(func, grow=False) to describe only the shards that exist"
        )

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, MappedShardFactory)
            and self.factory == other.factory
            and self.func == other.func
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"MappedShardFactory({self.factory!r}, {self.func!r})"
