"""Saver configs: a ZarrSaver or HDF5Saver as JSON, rebuilt by ``zsaver.from_config``.

A saver config holds where the dataset is (a nested store config for ZarrSaver, a file
path for HDF5Saver), the approach and the creation options as JSON values: a dtype as a
numpy dtype string, zarr codecs as their dicts. Importing this module registers the models.

Example:
    >>> import json, zarr, zsaver
    >>> saver = zsaver.ZarrSaver(zarr.storage.MemoryStore(), "x", dtype="f4", chunks=8)
    >>> cfg = json.loads(json.dumps(saver.to_config()))
    >>> cfg["options"]
    {'dtype': '<f4', 'chunks': 8}
    >>> zsaver.from_config(cfg).approach
    'append'
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numcodecs
import numpy as np
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
)
from zarr.core.dtype import ZDType

from zsaver._config import ConfigModel, NestedConfig, from_config, register_config, to_config
from zsaver.errors import ConfigError
from zsaver.savers._hdf5 import HDF5Saver
from zsaver.savers._zarr import ZarrSaver

if TYPE_CHECKING:
    from zsaver.savers._session import StagedSaver

__all__ = ["HDF5SaverConfig", "ZarrSaverConfig", "hdf5_saver_config", "zarr_saver_config"]

# --- JSON forms of option values --------------------------------------------------------

_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _plain_json(value: Any, option: str) -> Any:
    """``value`` with tuples as lists and numpy scalars as Python ones; refused if not JSON."""
    if isinstance(value, Mapping):
        return {str(k): _plain_json(v, option) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain_json(v, option) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        raise ConfigError(
            f"option {option!r}: {value!r} ({type(value).__name__}) cannot be represented in "
            "a JSON config"
        ) from None
    return value


def _dtype_json(value: Any) -> str | list[Any]:
    """A numpy dtype string (``'<f4'``), or the ``descr`` list of a structured dtype."""
    native = value.to_native_dtype() if isinstance(value, ZDType) else value
    if native is str or native == "str" or isinstance(native, np.dtypes.StringDType):
        return "str"  # zarr's variable-length strings (np.dtype(str) would say '<U0')
    try:
        dt = np.dtype(native)
    except TypeError as exc:
        raise ConfigError(f"option 'dtype': {value!r} is not a numpy dtype ({exc})") from None
    encoded: str | list[Any] = dt.str if dt.fields is None else _plain_json(dt.descr, "dtype")
    if dt.hasobject or np.dtype(_dtype_from_json(encoded)) != dt:
        raise ConfigError(f"option 'dtype': {value!r} has no JSON form that rebuilds it")
    return encoded


def _dtype_from_json(value: str | list[Any]) -> Any:
    if isinstance(value, str):
        return value
    fields = []
    for name, kind, *shape in value:  # descr entries: (name, type) or (name, type, shape)
        name = name if isinstance(name, str) else tuple(name)  # (title, name) pairs
        fields.append((name, _dtype_from_json(kind), *(tuple(s) for s in shape)))
    return fields


def _float_json(x: float) -> float | str:
    if math.isfinite(x):
        return x
    return "NaN" if math.isnan(x) else ("Infinity" if x > 0 else "-Infinity")


def _fill_json(value: Any) -> Any:
    """JSON scalars as they are; NaN/inf and complex numbers as small tagged dicts."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"float": _float_json(value)}
    if isinstance(value, complex):
        return {"complex": [_float_json(value.real), _float_json(value.imag)]}
    raise ConfigError(
        f"option 'fill_value': {value!r} ({type(value).__name__}) has no JSON form; "
        "use a number, a bool, a string or None"
    )


def _fill_from_json(value: Any) -> Any:
    if isinstance(value, NonFiniteFill):
        return _NON_FINITE[value.float]
    if isinstance(value, ComplexFill):
        real, imag = (_NON_FINITE[p] if isinstance(p, str) else p for p in value.complex)
        return complex(real, imag)
    return value


def _codec_json(codec: Any, option: str) -> dict[str, Any]:
    if isinstance(codec, Mapping):
        return _plain_json(codec, option)
    if isinstance(codec, numcodecs.abc.Codec):  # zarr format 2 codecs
        return _plain_json(codec.get_config(), option)
    if callable(getattr(codec, "to_dict", None)):  # zarr 3 codecs (numcodecs.zarr3 included)
        return _plain_json(codec.to_dict(), option)
    raise ConfigError(
        f"option {option!r}: {codec!r} is not a zarr codec, a numcodecs codec or a codec dict"
    )


def _codecs_json(value: Any, option: str) -> Any:
    if value is None or isinstance(value, str):  # None (no codecs) or "auto"
        return value
    if isinstance(value, Mapping) or not isinstance(value, Iterable):
        value = [value]
    return [_codec_json(codec, option) for codec in value]


def _codec_from_json(codec: dict[str, Any]) -> Any:
    # zarr 3 builds its codecs from {"name": ...} dicts itself; zarr format 2 arrays
    # insist on numcodecs objects, which numcodecs builds from {"id": ...} dicts.
    return numcodecs.get_codec(dict(codec)) if "id" in codec else codec


def _codecs_from_json(value: Any) -> Any:
    if isinstance(value, list):
        return [_codec_from_json(c) for c in value]
    if isinstance(value, dict):
        return _codec_from_json(value)
    return value


# --- models ---------------------------------------------------------------------------


def _named_codec(codec: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(codec.get("name", codec.get("id")), str):
        raise ValueError(
            "a codec dict needs a 'name' (zarr 3 codec) or an 'id' (numcodecs codec); "
            f"got keys {sorted(codec)}"
        )
    return codec


PositiveInt = Annotated[int, Field(ge=1)]
CodecDict = Annotated[dict[str, Any], AfterValidator(_named_codec)]
DTypeJSON = str | list[Any]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


class NonFiniteFill(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    float: Literal["NaN", "Infinity", "-Infinity"]


class ComplexFill(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    complex: list[FiniteFloat | Literal["NaN", "Infinity", "-Infinity"]] = Field(
        min_length=2, max_length=2
    )


FillJSON = bool | int | FiniteFloat | str | None | NonFiniteFill | ComplexFill


class _GivenOptions(BaseModel):
    """Creation options: only those given are kept, so a JSON round trip adds no defaults.

    (``compressors=None`` means "no compression", unlike leaving it out.)
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_serializer(mode="wrap")
    def _only_given(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if k in self.model_fields_set}

    def saver_kwargs(self) -> dict[str, Any]:
        kwargs = {name: getattr(self, name) for name in self.model_fields_set}
        if "dtype" in kwargs:
            kwargs["dtype"] = _dtype_from_json(kwargs["dtype"])
        if "fill_value" in kwargs:
            kwargs["fill_value"] = _fill_from_json(kwargs["fill_value"])
        return kwargs


class ZarrOptions(_GivenOptions):
    """``zarr.create_array`` options of a ZarrSaver, as JSON values."""

    dtype: DTypeJSON | None = None
    chunks: PositiveInt | list[PositiveInt] | Literal["auto"] | None = None
    shards: list[PositiveInt] | dict[str, Any] | Literal["auto"] | None = None
    compressors: list[CodecDict] | Literal["auto"] | None = None
    filters: list[CodecDict] | Literal["auto"] | None = None
    serializer: CodecDict | Literal["auto"] = "auto"
    fill_value: FillJSON = None
    attributes: dict[str, Any] | None = None
    zarr_format: Literal[2, 3] = 3
    dimension_names: list[str | None] | None = None

    def saver_kwargs(self) -> dict[str, Any]:
        kwargs = super().saver_kwargs()
        for name in ("compressors", "filters", "serializer"):
            if name in kwargs:
                kwargs[name] = _codecs_from_json(kwargs[name])
        return kwargs


class HDF5Options(_GivenOptions):
    """``h5py.Group.create_dataset`` options of an HDF5Saver, as JSON values."""

    dtype: DTypeJSON | None = None
    chunks: PositiveInt | list[PositiveInt] | None = None
    compression: str | int | None = None  # a filter name or a registered HDF5 filter id
    compression_opts: int | list[Any] | None = None
    shuffle: bool = False
    fletcher32: bool = False
    fill_value: FillJSON = None
    attributes: dict[str, Any] | None = None

    def saver_kwargs(self) -> dict[str, Any]:
        kwargs = super().saver_kwargs()
        if isinstance(kwargs.get("compression_opts"), list):  # h5py wants a tuple
            kwargs["compression_opts"] = tuple(kwargs["compression_opts"])
        return kwargs


class ZarrSaverConfig(ConfigModel):
    """A ZarrSaver: its store's config and the dataset's full path in that store."""

    type: Literal["zarr_saver"] = "zarr_saver"
    store: NestedConfig
    dataset_name: str = Field(min_length=1)
    approach: Literal["append", "overwrite", "update"] = "append"
    shape: list[Annotated[int, Field(ge=0)]] | None = None
    allow_resize: bool = False
    options: ZarrOptions = Field(default_factory=ZarrOptions)


class HDF5SaverConfig(ConfigModel):
    """An HDF5Saver: the file path and the dataset's name in it."""

    type: Literal["hdf5_saver"] = "hdf5_saver"
    path: str = Field(min_length=1)
    dataset_name: str = Field(min_length=1)
    approach: Literal["append", "overwrite", "update"] = "append"
    shape: list[Annotated[int, Field(ge=0)]] | None = None
    allow_resize: bool = False
    options: HDF5Options = Field(default_factory=HDF5Options)


# --- describing and building ------------------------------------------------------------


def _options_json(options: Mapping[str, Any]) -> dict[str, Any]:
    encoded: dict[str, Any] = {}
    for name, value in options.items():
        if name == "dtype":
            encoded[name] = _dtype_json(value)
        elif name == "fill_value":
            encoded[name] = _fill_json(value)
        elif name in ("compressors", "filters", "serializer"):
            encoded[name] = (
                _codec_json(value, name)
                if name == "serializer" and value != "auto"
                else _codecs_json(value, name)
            )
        elif name == "compression" and hasattr(value, "filter_id"):
            # hdf5plugin-style filter objects: h5py takes their id and options as well.
            encoded[name] = int(value.filter_id)
            encoded.setdefault("compression_opts", _plain_json(value.filter_options, name))
        else:
            encoded[name] = _plain_json(value, name)
    return encoded


def _common(saver: StagedSaver) -> dict[str, Any]:
    shape = saver._create_shape
    return {
        "approach": saver.approach,
        "shape": None if shape is None else list(shape),
        "allow_resize": saver.allow_resize,
        "options": _options_json(saver._options),
    }


def zarr_saver_config(saver: ZarrSaver) -> dict[str, Any]:
    """The config of ``saver``; see :meth:`ZarrSaver.to_config`."""
    try:
        store = to_config(saver.store)
    except ConfigError as exc:
        raise ConfigError(f"ZarrSaver {saver.path!r}: its store has no config: {exc}") from exc
    return ZarrSaverConfig.model_validate(
        {"store": store, "dataset_name": saver.path, **_common(saver)}
    ).model_dump(mode="json")


def hdf5_saver_config(saver: HDF5Saver) -> dict[str, Any]:
    """The config of ``saver``; see :meth:`HDF5Saver.to_config`."""
    return HDF5SaverConfig.model_validate(
        {"path": str(saver.path), "dataset_name": saver.dataset_name, **_common(saver)}
    ).model_dump(mode="json")


def _saver_kwargs(cfg: ZarrSaverConfig | HDF5SaverConfig) -> dict[str, Any]:
    kwargs = cfg.options.saver_kwargs()
    if cfg.shape is not None:
        kwargs["shape"] = tuple(cfg.shape)
    return dict(kwargs, allow_resize=cfg.allow_resize)


def _build_zarr_saver(cfg: ZarrSaverConfig) -> ZarrSaver:
    return ZarrSaver(from_config(cfg.store), cfg.dataset_name, cfg.approach, **_saver_kwargs(cfg))


def _build_hdf5_saver(cfg: HDF5SaverConfig) -> HDF5Saver:
    return HDF5Saver(cfg.path, cfg.dataset_name, cfg.approach, **_saver_kwargs(cfg))


register_config(ZarrSaverConfig, build=_build_zarr_saver)
register_config(HDF5SaverConfig, build=_build_hdf5_saver)
