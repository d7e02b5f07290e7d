"""Saver configs: a JSON round trip rebuilds a saver writing the same dataset the same way."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numcodecs
import numpy as np
import pydantic
import pytest
import zarr
from zarr.codecs import BloscCodec, TransposeCodec, ZstdCodec
from zarr.storage import LocalStore, MemoryStore

import zsaver
from zsaver import HDF5Saver, ZarrSaver
from zsaver.errors import ConfigError
from zsaver.stores import H5ShardStore, ShardedStore, StoreTemplate, ZipShardStore

ROWS = np.arange(40, dtype="f4").reshape(20, 2)
MORE = -np.arange(12, dtype="f4").reshape(6, 2)


def _round_trip(saver: Any) -> Any:
    cfg = saver.to_config()
    text = json.dumps(cfg, allow_nan=False)  # strict JSON: NaN fill values are tagged
    assert json.loads(text) == cfg
    rebuilt = zsaver.from_config(json.loads(text))
    assert type(rebuilt) is type(saver)
    assert rebuilt.to_config() == cfg
    return rebuilt


def _codec_metadata(arr: zarr.Array) -> dict[str, Any]:
    meta = arr.metadata.to_dict()
    return {
        k: meta.get(k)
        for k in (
            "codecs",
            "compressor",
            "filters",
            "fill_value",
            "data_type",
            "dtype",
            "chunk_grid",
            "chunks",
            "attributes",
        )
    }


def test_zarr_saver_round_trip_keeps_codecs_and_appends_to_the_same_array(tmp_path: Path) -> None:
    saver = ZarrSaver(
        LocalStore(tmp_path / "d.zarr"),
        "runs/result",
        dtype=np.float32,
        chunks=(4, 2),
        compressors=ZstdCodec(level=5),
        filters=[TransposeCodec(order=(1, 0))],
        fill_value=np.nan,
        attributes={"units": "m"},
        dimension_names=["row", None],
    )
    with saver:
        saver.save(ROWS)
    rebuilt = _round_trip(saver)
    cfg = saver.to_config()
    assert cfg["options"]["fill_value"] == {"float": "NaN"}
    assert cfg["options"]["compressors"] == [
        {"name": "zstd", "configuration": {"level": 5, "checksum": False}}
    ]
    with rebuilt:
        rebuilt.save(MORE)
    arr = zarr.open_array(LocalStore(tmp_path / "d.zarr"), path="runs/result")
    np.testing.assert_array_equal(arr[:], np.concatenate([ROWS, MORE]))
    # A rebuilt saver creating the array anew makes it with identical metadata.
    fresh = ZarrSaver(LocalStore(tmp_path / "d.zarr"), "runs/result", "overwrite")
    fresh_cfg = dict(cfg, approach="overwrite")
    with zsaver.from_config(fresh_cfg) as again:
        again.save(MORE)
    assert _codec_metadata(fresh.array) == _codec_metadata(arr)
    np.testing.assert_array_equal(fresh.array[:], MORE)


def test_zarr_format_2_numcodecs_options_round_trip(tmp_path: Path) -> None:
    data = np.arange(14, dtype="<i2").reshape(7, 2)
    saver = ZarrSaver(
        tmp_path / "v2.zarr",
        "s",
        zarr_format=2,
        chunks=3,
        dtype="<i2",
        compressors=numcodecs.Zlib(level=3),
        filters=[numcodecs.Delta("<i2")],
    )
    with saver:
        saver.save(data[:4])
    rebuilt = _round_trip(saver)
    assert saver.to_config()["options"]["compressors"] == [{"id": "zlib", "level": 3}]
    with rebuilt:
        rebuilt.save(data[4:])
    arr = zarr.open_array(LocalStore(tmp_path / "v2.zarr"), path="s")
    assert arr.metadata.compressor == numcodecs.Zlib(level=3)
    assert arr.metadata.filters == (numcodecs.Delta("<i2"),)
    np.testing.assert_array_equal(arr[:], data)


def test_no_compression_survives_the_round_trip_as_none(tmp_path: Path) -> None:
    saver = ZarrSaver(tmp_path / "n.zarr", "s", compressors=None)
    assert saver.to_config()["options"] == {"compressors": None}  # not dropped, not "auto"
    with _round_trip(saver) as rebuilt:
        rebuilt.save(ROWS)
    assert rebuilt.array.compressors == ()


def test_structured_dtype_round_trips_as_its_descr(tmp_path: Path) -> None:
    dtype = np.dtype([("a", "<i4"), ("b", "<f8", (2,))])
    data = np.zeros(5, dtype=dtype)
    data["a"] = np.arange(5)
    saver = HDF5Saver(tmp_path / "c.h5", "s", dtype=dtype)
    assert saver.to_config()["options"]["dtype"] == [["a", "<i4"], ["b", "<f8", [2]]]
    with _round_trip(saver) as rebuilt:
        rebuilt.save(data)
    with h5py.File(tmp_path / "c.h5") as f:
        assert f["s"].dtype == dtype
        np.testing.assert_array_equal(f["s"][:], data)


@pytest.mark.parametrize("dtype", [str, "str", np.dtypes.StringDType()], ids=repr)
@pytest.mark.filterwarnings("ignore:The data type")  # zarr: no stable v3 spec for strings yet
def test_variable_length_strings_round_trip_as_str(tmp_path: Path, dtype: Any) -> None:
    saver = ZarrSaver(tmp_path, "s", dtype=dtype)
    assert saver.to_config()["options"]["dtype"] == "str"  # np.dtype(str) would say '<U0'
    with _round_trip(saver) as rebuilt:
        rebuilt.save(np.array(["abc", "de"]))
    assert zarr.open_array(LocalStore(tmp_path), path="s")[:].tolist() == ["abc", "de"]


def test_saver_on_an_open_group_is_described_by_store_and_full_path(tmp_path: Path) -> None:
    group = zarr.open_group(LocalStore(tmp_path / "g.zarr"), path="exp/one", mode="a")
    saver = ZarrSaver(group, "result", chunks=5)
    with saver:
        saver.save(ROWS)
    cfg = saver.to_config()
    assert cfg["dataset_name"] == "exp/one/result"
    assert cfg["store"] == {"type": "local", "root": str(tmp_path / "g.zarr"), "read_only": False}
    with _round_trip(saver) as rebuilt:
        rebuilt.save(MORE)
    np.testing.assert_array_equal(group["result"][:], np.concatenate([ROWS, MORE]))


def test_memory_store_saver_config_rebuilds_on_a_new_empty_store() -> None:
    store = MemoryStore()
    with ZarrSaver(store, "x", chunks=4) as saver:
        saver.save(ROWS)
    rebuilt = _round_trip(saver)
    assert rebuilt.store is not store and len(rebuilt) == 0  # memory contents are not config
    with rebuilt:
        rebuilt.save(MORE)
    np.testing.assert_array_equal(rebuilt.array[:], MORE)
    np.testing.assert_array_equal(saver.array[:], ROWS)


def _h5_shards(tmp: Path) -> Any:
    return H5ShardStore(tmp / "h5", chunks_per_shard=2, write_direct=True)


def _zip_shards(tmp: Path) -> Any:
    return ZipShardStore(tmp / "zip", chunks_per_shard=(3, None))


def _sharded(tmp: Path) -> Any:
    template = StoreTemplate({"type": "zip_shard", "root": str(tmp / "part-{0}")})
    return ShardedStore(LocalStore(tmp / "base"), array_shards={"runs/x": (1, template)})


@pytest.mark.parametrize(
    "make_store", [_h5_shards, _zip_shards, _sharded], ids=["h5_shard", "zip_shard", "sharded"]
)
def test_zarr_saver_on_zsaver_stores_round_trips(
    tmp_path: Path, make_store: Callable[[Path], Any]
) -> None:
    store = make_store(tmp_path)
    zarr.create_group(store, path="runs")
    with ZarrSaver(store, "runs/x", chunks=4) as saver:
        saver.save(ROWS)
    getattr(store, "flush", lambda: None)()  # write_direct chunks are data, not config
    with _round_trip(saver) as rebuilt:
        rebuilt.save(MORE)
    rebuilt.consolidate()
    reopened = zsaver.from_config(json.loads(json.dumps(zsaver.to_config(store))))
    np.testing.assert_array_equal(
        zarr.open_array(reopened, path="runs/x")[:], np.concatenate([ROWS, MORE])
    )


def test_update_saver_config_keeps_shape_and_allow_resize(tmp_path: Path) -> None:
    saver = ZarrSaver(
        tmp_path / "u.zarr",
        "u",
        "update",
        shape=(10, 2),
        dtype="f4",
        chunks=4,
        allow_resize=True,
        fill_value=-1.0,
    )
    rebuilt = _round_trip(saver)
    assert (rebuilt.approach, rebuilt.allow_resize) == ("update", True)
    with rebuilt:
        rebuilt.save(np.ones((2, 2)), indices=[3, 11])
    arr = zarr.open_array(LocalStore(tmp_path / "u.zarr"), path="u")
    assert arr.shape == (12, 2) and arr[3].tolist() == [1, 1] and arr[0].tolist() == [-1, -1]


def test_hdf5_saver_round_trip_keeps_options_and_appends(tmp_path: Path) -> None:
    path = tmp_path / "r.h5"
    saver = HDF5Saver(
        path,
        "runs/result",
        dtype="f4",
        chunks=8,
        compression="gzip",
        compression_opts=4,
        shuffle=True,
        fletcher32=True,
        fill_value=np.float32(np.inf),
        attributes={"units": "s"},
    )
    with saver:
        saver.save(ROWS)
    cfg = saver.to_config()
    assert cfg["path"] == str(path) and cfg["options"]["fill_value"] == {"float": "Infinity"}
    with _round_trip(saver) as rebuilt:
        rebuilt.save(MORE)
    with h5py.File(path) as f:
        ds = f["runs/result"]
        np.testing.assert_array_equal(ds[:], np.concatenate([ROWS, MORE]))
        assert (ds.compression, ds.compression_opts, ds.shuffle, ds.fletcher32) == (
            "gzip",
            4,
            True,
            True,
        )
        assert ds.chunks == (8, 2) and ds.fillvalue == np.inf and ds.attrs["units"] == "s"


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"compressors": [object()]}, "option 'compressors'"),
        ({"serializer": object()}, "option 'serializer'"),
        ({"attributes": {"when": object()}}, "option 'attributes'"),
        ({"fill_value": np.datetime64("2020-01-01")}, "option 'fill_value'"),
        ({"dtype": object}, "option 'dtype'"),
    ],
)
def test_an_option_without_a_json_form_raises_config_error_naming_it(
    options: dict[str, Any], named: str
) -> None:
    saver = ZarrSaver(MemoryStore(), "x", **options)
    with pytest.raises(ConfigError, match=named):
        saver.to_config()


def test_a_store_without_a_config_is_named_in_the_error() -> None:
    store = ShardedStore(MemoryStore(), array_shards={"x": (1, lambda index: MemoryStore())})
    with pytest.raises(ConfigError, match="ZarrSaver 'x': its store has no config"):
        ZarrSaver(store, "x").to_config()


def test_blosc_codec_round_trips_through_its_dict() -> None:
    saver = ZarrSaver(MemoryStore(), "x", compressors=[BloscCodec(cname="lz4", clevel=3)])
    rebuilt = _round_trip(saver)
    with rebuilt:
        rebuilt.save(ROWS)
    (codec,) = rebuilt.array.compressors
    assert codec.to_dict()["configuration"] | {"typesize": None} == (
        BloscCodec(cname="lz4", clevel=3).to_dict()["configuration"] | {"typesize": None}
    )
    np.testing.assert_array_equal(rebuilt.array[:], ROWS)


GOOD = {"type": "zarr_saver", "store": {"type": "memory"}, "dataset_name": "x"}


@pytest.mark.parametrize(
    ("cfg", "field"),
    [
        ({**GOOD, "approach": "sideways"}, "zarr_saver.approach"),
        ({**GOOD, "dataset_name": ""}, "zarr_saver.dataset_name"),
        ({**GOOD, "store": {"type": "local"}}, "zarr_saver.store"),
        ({**GOOD, "options": {"chunks": 0}}, "zarr_saver.options.chunks"),
        ({**GOOD, "options": {"colour": "red"}}, "zarr_saver.options.colour"),
        ({**GOOD, "options": {"compressors": [{"level": 1}]}}, "needs a 'name'"),
        ({**GOOD, "options": {"fill_value": float("nan")}}, "zarr_saver.options.fill_value"),
        ({**GOOD, "shape": [-1, 2]}, "zarr_saver.shape"),
        ({"type": "hdf5_saver", "dataset_name": "d"}, "hdf5_saver.path"),
        (
            {"type": "hdf5_saver", "path": "r.h5", "options": {"shuffle": "maybe"}},
            "hdf5_saver.options.shuffle",
        ),
    ],
)
def test_bad_saver_config_raises_a_validation_error_naming_the_field(
    cfg: dict[str, Any], field: str
) -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        zsaver.from_config(cfg)
    assert field in str(info.value)


CHILD = textwrap.dedent(
    """
    import pickle, sys
    import numpy as np
    import zsaver

    cfg, rows = pickle.load(sys.stdin.buffer)
    with zsaver.from_config(cfg) as saver:
        saver.save(rows)
    print(len(saver))
    """
)


@pytest.mark.parametrize("kind", ["zarr_h5_shard", "hdf5"])
def test_a_pickled_config_rebuilt_in_another_process_writes_rows_the_parent_reads(
    tmp_path: Path, kind: str
) -> None:
    if kind == "hdf5":
        saver: Any = HDF5Saver(tmp_path / "r.h5", "d", chunks=4)
    else:
        saver = ZarrSaver(H5ShardStore(tmp_path / "s", chunks_per_shard=2), "d", chunks=4)
    with saver:
        saver.save(ROWS)
    payload = pickle.dumps((saver.to_config(), MORE))
    done = subprocess.run(
        [sys.executable, "-c", CHILD], input=payload, capture_output=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr.decode()
    assert int(done.stdout) == len(ROWS) + len(MORE)
    if kind == "hdf5":
        with h5py.File(tmp_path / "r.h5") as f:
            stored = f["d"][:]
    else:
        stored = zarr.open_array(H5ShardStore(tmp_path / "s"), path="d")[:]
    np.testing.assert_array_equal(stored, np.concatenate([ROWS, MORE]))


@pytest.mark.parametrize("shards", [(8, 2), {"shape": (8, 2), "index_location": "start"}])
def test_zarr_sharding_options_round_trip(tmp_path: Path, shards: Any) -> None:
    saver = ZarrSaver(tmp_path / "s.zarr", "x", chunks=(4, 2), shards=shards)
    with saver:
        saver.save(ROWS)
    with _round_trip(saver) as rebuilt:
        rebuilt.save(MORE)
    arr = zarr.open_array(LocalStore(tmp_path / "s.zarr"), path="x")
    location = "start" if isinstance(shards, dict) else "end"
    index_location = arr.metadata.codecs[0].index_location  # an enum before zarr 3.4, a str since
    assert arr.shards == (8, 2) and getattr(index_location, "value", index_location) == location
    np.testing.assert_array_equal(arr[:], np.concatenate([ROWS, MORE]))
