"""JSON configs: a registry of pydantic models that describe and rebuild zsaver objects.

Bottom layer: this module imports nothing from ``zsaver.stores``, ``zsaver.savers`` or
``zsaver.tasks``; those layers register their own config models here at import time.

Example:
    >>> import zsaver
    >>> cfg = {"type": "local", "root": "data.zarr", "read_only": True}
    >>> store = zsaver.from_config(cfg)  # a zarr.storage.LocalStore
    >>> zsaver.to_config(store) == cfg
    True
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter

from zsaver.errors import ConfigError

__all__ = [
    "ConfigModel",
    "NestedConfig",
    "from_config",
    "register_config",
    "registered_config_types",
    "to_config",
    "validate_config",
]


class ConfigModel(BaseModel):
    """Base of every config model: unknown fields are refused, ``type`` names the kind.

    Subclasses declare ``type: Literal["name"] = "name"``; the literal is the
    discriminator :func:`from_config` dispatches on.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str


class _Entry:
    __slots__ = ("build", "describe", "describes", "model")

    def __init__(
        self,
        model: type[ConfigModel],
        build: Callable[[Any], Any],
        describes: type | None,
        describe: Callable[[Any], dict[str, Any]] | None,
    ) -> None:
        self.model = model
        self.build = build
        self.describes = describes
        self.describe = describe


_lock = threading.Lock()
_registry: dict[str, _Entry] = {}
_adapter: TypeAdapter[Any] | None = None  # rebuilt lazily after each registration


def _type_name(model: type[ConfigModel]) -> str:
    field = model.model_fields.get("type")
    name = None if field is None else field.default
    if not isinstance(name, str) or not name:
        raise ConfigError(
            f"{model.__name__} must declare `type: Literal['<name>'] = '<name>'`, "
            f"got default {name!r}"
        )
    return name


def register_config(
    model: type[ConfigModel],
    build: Callable[[Any], Any],
    *,
    describes: type | None = None,
    describe: Callable[[Any], dict[str, Any]] | None = None,
) -> type[ConfigModel]:
    """Register ``model`` under its ``type`` literal; ``build(validated_model)`` makes the object.

    ``describes``/``describe`` are for classes zsaver does not own (zarr's stores):
    :func:`to_config` calls ``describe(obj)`` for instances of ``describes``. Classes
    zsaver owns give themselves a ``to_config()`` method instead.
    Re-registering the same type name with another model raises :class:`ConfigError`.

    Example:
        >>> class PointConfig(ConfigModel):  # doctest: +SKIP
        ...     type: Literal["point"] = "point"
        ...     x: int
        >>> register_config(PointConfig, build=lambda c: (c.x,))  # doctest: +SKIP
    """
    global _adapter
    name = _type_name(model)
    try:  # an incomplete model would break every later from_config call, so refuse it now
        model.model_rebuild(raise_errors=True)
    except Exception as exc:
        raise ConfigError(f"config model {model.__qualname__} is not fully defined: {exc}") from exc
    if (describes is None) != (describe is None):
        raise ConfigError("register_config: give both `describes` and `describe`, or neither")
    with _lock:
        old = _registry.get(name)
        if old is not None and old.model is not model:
            raise ConfigError(
                f"config type {name!r} is already registered by {old.model.__qualname__}; "
                f"cannot register {model.__qualname__} under the same name"
            )
        _registry[name] = _Entry(model, build, describes, describe)
        _adapter = None
    return model


def registered_config_types() -> tuple[str, ...]:
    """The ``type`` names :func:`from_config` currently understands, sorted."""
    with _lock:
        return tuple(sorted(_registry))


def _get_adapter() -> TypeAdapter[Any]:
    global _adapter
    with _lock:
        if _adapter is None:
            models = tuple(entry.model for entry in _registry.values())
            if not models:
                raise ConfigError("no config types are registered; import zsaver first")
            # A one-member Union collapses to the model itself; pydantic accepts the
            # discriminator either way, which keeps error messages uniform.
            union = Union[models]  # type: ignore[valid-type]  # noqa: UP007  (built at run time)
            _adapter = TypeAdapter(Annotated[union, Field(discriminator="type")])
        return _adapter


def _validate_model(cfg: Any) -> ConfigModel:
    if isinstance(cfg, ConfigModel):
        cfg = cfg.model_dump(mode="json")
    if not isinstance(cfg, Mapping):
        raise TypeError(f"a config must be a mapping with a 'type' key, got {type(cfg).__name__}")
    return _get_adapter().validate_python(dict(cfg))


def validate_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Validate ``cfg`` and return it normalised (defaults filled in) as a JSON-ready dict.

    Raises ``pydantic.ValidationError`` (a ValueError) naming the bad field.
    """
    return _validate_model(cfg).model_dump(mode="json")


def from_config(cfg: Mapping[str, Any]) -> Any:
    """Validate ``cfg`` completely, then build the object it describes.

    Nested configs (a ShardedStore's base, a cache's store) are validated before
    anything is built, so a bad config opens no file.

    Raises ``pydantic.ValidationError`` naming the bad field, ``TypeError`` if
    ``cfg`` is not a mapping.
    """
    model = _validate_model(cfg)
    return _registry[model.type].build(model)


def to_config(obj: Any) -> dict[str, Any]:
    """The JSON-ready config of ``obj``: its ``to_config()`` or a registered describer.

    Raises :class:`ConfigError` when nothing knows how to describe ``obj``.
    """
    method = getattr(obj, "to_config", None)
    if callable(method):
        return method()
    with _lock:
        entries = list(_registry.values())
    for cls in type(obj).__mro__:
        for entry in entries:
            if entry.describes is cls and entry.describe is not None:
                return validate_config(entry.describe(obj))
    raise ConfigError(
        f"cannot describe a {type(obj).__module__}.{type(obj).__qualname__} as a config; "
        f"known types: {', '.join(registered_config_types())}"
    )


def _validate_nested(value: dict[str, Any]) -> dict[str, Any]:
    return validate_config(value)


#: Field type for a config nested in another (a store inside a ShardedStore, a saver's store).
NestedConfig = Annotated[dict[str, Any], AfterValidator(_validate_nested)]
