"""A refused save raises the right error and leaves every file byte-identical."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from saver_backends import Backend

from zsaver.errors import (
    DatasetNotFoundError,
    DatasetSpecError,
    DTypeMismatchError,
    DuplicateIndexError,
    InvalidIndexError,
    RowIndexError,
    SaverOptionError,
    ShapeMismatchError,
)

EXISTING = np.arange(24, dtype=np.int32).reshape(8, 3)

# (id, approach, saver options, data, indices, error, dataset name)
CASES: list[tuple[str, str, dict[str, Any], Any, Any, type[Exception], str]] = [
    ("float-into-int", "append", {}, np.full((2, 3), 1.5), None, DTypeMismatchError, "d"),
    ("overflow-int32", "append", {}, np.full((1, 3), 2**40), None, DTypeMismatchError, "d"),
    (
        "negative-into-unsigned",
        "append",
        {"dtype": "u1"},
        np.full((1, 3), -1),
        None,
        DTypeMismatchError,
        "new",
    ),
    (   # uint32 3e9 -> int32 wraps to a negative number that round-trips back
        "unsigned-wraps-into-signed",
        "append",
        {},
        np.full((1, 3), 3_000_000_000, dtype=np.uint32),
        None,
        DTypeMismatchError,
        "d",
    ),
    ("wrong-row-shape", "append", {}, np.zeros((2, 4), np.int32), None, ShapeMismatchError, "d"),
    ("wrong-ndim", "append", {}, np.zeros((2, 3, 1), np.int32), None, ShapeMismatchError, "d"),
    ("zero-dimensional", "append", {}, np.int32(5), None, ShapeMismatchError, "d"),
    ("ragged", "append", {}, [[1, 2, 3], [4, 5]], None, ShapeMismatchError, "d"),
    (
        "object-dtype",
        "append",
        {},
        np.array([[1, "a", None]], dtype=object),
        None,
        DTypeMismatchError,
        "d",
    ),
    ("string-into-int", "append", {}, np.array([["a", "b", "c"]]), None, DTypeMismatchError, "d"),
    ("indices-with-append", "append", {}, np.zeros((1, 3), np.int32), [0], InvalidIndexError, "d"),
    ("index-past-end", "update", {}, np.zeros((1, 3), np.int32), [8], RowIndexError, "d"),
    ("negative-index-past-start", "update", {}, np.zeros((1, 3), np.int32), -9, RowIndexError, "d"),
    (
        "one-bad-index-among-good",
        "update",
        {},
        np.zeros((3, 3), np.int32),
        [0, 1, 99],
        RowIndexError,
        "d",
    ),
    (
        "duplicate-indices",
        "update",
        {},
        np.zeros((3, 3), np.int32),
        [1, 5, 1],
        DuplicateIndexError,
        "d",
    ),
    ("float-indices", "update", {}, np.zeros((2, 3), np.int32), [0.0, 1.0], InvalidIndexError, "d"),
    # Were a raw TypeError and a raw ValueError from the index normalisation.
    ("float-slice-bound", "update", {}, np.zeros((2, 3), np.int32), slice(1.5, 3), InvalidIndexError, "d"),
    ("zero-slice-step", "update", {}, np.zeros((2, 3), np.int32), slice(0, 3, 0), InvalidIndexError, "d"),
    ("2d-indices", "update", {}, np.zeros((2, 3), np.int32), [[0], [1]], InvalidIndexError, "d"),
    (
        "mask-wrong-length",
        "update",
        {},
        np.zeros((1, 3), np.int32),
        [True, False],
        ShapeMismatchError,
        "d",
    ),
    (
        "rows-vs-indices-count",
        "update",
        {},
        np.zeros((3, 3), np.int32),
        [0, 1],
        ShapeMismatchError,
        "d",
    ),
    ("none-indices-update", "update", {}, np.zeros((1, 3), np.int32), None, InvalidIndexError, "d"),
    (
        "update-missing-dataset",
        "update",
        {},
        np.zeros((1, 3), np.int32),
        0,
        DatasetNotFoundError,
        "new",
    ),
    (
        "update-create-bad-index",
        "update",
        {"shape": (4, 3)},
        np.zeros((1, 3)),
        4,
        RowIndexError,
        "new",
    ),
    (
        "bad-chunks-option",
        "append",
        {"chunks": (0, 3)},
        np.zeros((1, 3)),
        None,
        DatasetSpecError,
        "new",
    ),
    (
        "bad-fill-value",
        "append",
        {"fill_value": "abc", "dtype": "i4"},
        np.zeros((1, 3)),
        None,
        DatasetSpecError,
        "new",
    ),
    ("overwrite-bad-data-keeps-old", "overwrite", {}, [[1, 2], [3]], None, ShapeMismatchError, "d"),
]


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` with the hash of its bytes."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        # lock files (the store's .zsaver.lock, HDF5's <file>.zsaver-lock) are created, never written
        if p.is_file() and not p.name.endswith((".zsaver.lock", ".zsaver-lock"))
    }


@pytest.mark.parametrize(
    "approach, options, data, indices, error, name",
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_refused_save_raises_and_leaves_files_byte_identical(
    backend: Backend,
    approach: str,
    options: dict[str, Any],
    data: Any,
    indices: Any,
    error: type[Exception],
    name: str,
) -> None:
    backend.saver(name="d", chunks=4).save(EXISTING)
    before = snapshot(backend.root)
    saver = backend.saver(approach, name=name, **options)
    with pytest.raises(error):
        saver.save(data, indices=indices)
    with pytest.raises(error), saver:  # the same refusal inside a session, then a flush on exit
        saver.save(data, indices=indices)
    assert snapshot(backend.root) == before
    np.testing.assert_array_equal(backend.read("d"), EXISTING)


def test_unknown_save_keyword_is_refused(backend: Backend) -> None:
    with pytest.raises(TypeError) as info:
        backend.saver().save(np.zeros((1, 3)), approach="update")
    assert isinstance(info.value, SaverOptionError)


def test_unsigned_values_that_fit_a_signed_dataset_are_accepted(backend: Backend) -> None:
    backend.saver(name="d", chunks=4).save(EXISTING)
    backend.saver(name="d").save(np.full((1, 3), 2**31 - 1, dtype=np.uint32))
    assert backend.read("d")[-1].tolist() == [2**31 - 1] * 3


def test_nat_survives_a_change_of_time_unit() -> None:  # HDF5 has no datetime type: zarr only
    import zarr

    from zsaver import ZarrSaver

    store = zarr.storage.MemoryStore()
    stamps = np.array([["2026-01-01T00:00:01", "NaT"]], dtype="M8[s]")
    ZarrSaver(store, "t", dtype="M8[ms]", chunks=4).save(stamps)
    stored = zarr.open_array(store, path="t")[:]
    assert stored.dtype == np.dtype("M8[ms]")
    assert np.array_equal(stored, stamps.astype("M8[ms]"), equal_nan=True) and np.isnat(stored[0, 1])


POINT = np.dtype([("x", "<f8"), ("y", "<f8")])


@pytest.mark.filterwarnings("ignore:The data type")  # zarr: no stable v3 spec for structured dtypes
def test_structured_rows_are_stored_by_field_name(backend: Backend) -> None:
    backend.saver(name="p").save(np.zeros(1, POINT))
    swapped = np.array([(1.0, 2.0)], dtype=[("y", "<f8"), ("x", "<f8")])  # y=1, x=2
    backend.saver(name="p").save(swapped)
    stored = backend.read("p")[1]
    assert (stored["x"], stored["y"]) == (2.0, 1.0)
    # Only the layout differs (align=True): NaN is a value like any other.
    aligned = np.array([(np.nan, 3.0)], dtype=np.dtype([("x", "<f8"), ("y", "<f8")], align=True))
    backend.saver(name="p").save(aligned)
    assert np.isnan(backend.read("p")[2]["x"])


@pytest.mark.filterwarnings("ignore:The data type")  # zarr: no stable v3 spec for structured dtypes
def test_structured_rows_with_other_fields_or_a_field_that_overflows_are_refused(backend: Backend) -> None:
    backend.saver(name="p").save(np.zeros(1, [("x", "<f8"), ("n", "i1")]))
    before = snapshot(backend.root)
    with pytest.raises(DTypeMismatchError, match=r"fields \['x', 'n'\].*\['x', 'm'\]"):
        backend.saver(name="p").save(np.zeros(1, [("x", "<f8"), ("m", "i1")]))
    with pytest.raises(DTypeMismatchError, match="in field 'n'"):
        backend.saver(name="p").save(np.array([(0.0, 300)], dtype=[("x", "<f8"), ("n", "i2")]))
    assert snapshot(backend.root) == before


def test_non_ascii_bytes_into_a_text_dataset_are_refused_by_name(tmp_path: Path) -> None:
    # HDF5 has no fixed-width unicode type: zarr only. Was a raw UnicodeDecodeError.
    from zsaver import ZarrSaver

    ZarrSaver(tmp_path, "t").save(np.array(["ab"]))
    before = snapshot(tmp_path)
    with pytest.raises(DTypeMismatchError, match=r"'t' has dtype <U2; got data of dtype \|S1"):
        ZarrSaver(tmp_path, "t").save(np.array([b"\xff"]))
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    "stored, data",
    [
        (np.array(["ab"]), np.array([7])),  # numpy would store the text "7"
        (np.array(["ab"]), np.array([0.25])),
        (np.array([b"ab"]), np.array([True])),
        (np.array([1], dtype="m8[s]"), np.array([5])),  # 5 of which unit?
        (np.array([1], dtype="m8[s]"), np.array([False])),
    ],
    ids=["int-into-text", "float-into-text", "bool-into-bytes", "int-into-timedelta",
         "bool-into-timedelta"],
)
@pytest.mark.filterwarnings("ignore:The data type")  # zarr: no stable v3 spec for strings yet
def test_numbers_are_refused_by_text_and_duration_datasets(
    tmp_path: Path, stored: np.ndarray, data: np.ndarray
) -> None:
    # numpy's 'same_kind' rule lets numbers become text or durations; a saver keeps
    # each kind of value to itself. HDF5 has no unicode or time types: zarr only.
    from zsaver import ZarrSaver

    ZarrSaver(tmp_path, "t").save(stored)
    before = snapshot(tmp_path)
    with pytest.raises(DTypeMismatchError, match="do not convert into one another"):
        ZarrSaver(tmp_path, "t").save(data)
    with pytest.raises(DTypeMismatchError, match="cannot be stored in it"):
        ZarrSaver(tmp_path, "t").reserve(4, stored.shape[1:], data.dtype)
    assert snapshot(tmp_path) == before


def test_numbers_still_convert_among_themselves(backend: Backend) -> None:
    backend.saver(name="f", dtype="f8").save(np.array([[True, False, True]]))
    backend.saver(name="f").save(np.array([[1, 2, 3]], dtype="u2"))
    np.testing.assert_array_equal(backend.read("f"), [[1.0, 0.0, 1.0], [1.0, 2.0, 3.0]])


@pytest.mark.filterwarnings("ignore:The data type")  # zarr: no stable v3 spec for bytes yet
@pytest.mark.parametrize(
    "fill_value, dtype",
    [
        (1.5, "i4"),  # was stored as 1
        (300, "u1"),  # HDF5 stored 255
        (-1, "u4"),  # HDF5 stored 0
        (np.nan, "i4"),  # HDF5 stored INT_MIN
        (b"abc", "S2"),  # was stored as b"ab"
        ("abc", "S2"),  # text into bytes, as for data
        (2.5, "bool"),  # zarr stored True
        (1e300, "f4"),  # a finite value becoming infinite
    ],
    ids=repr,
)
def test_a_fill_value_the_dtype_cannot_hold_is_refused_before_writing(
    backend: Backend, fill_value: Any, dtype: str
) -> None:
    backend.saver(name="d", chunks=4).save(EXISTING)
    before = snapshot(backend.root)
    saver = backend.saver("update", name="new", shape=(2,), dtype=dtype, fill_value=fill_value)
    with pytest.raises(DatasetSpecError) as info:
        saver.save(np.zeros(1, dtype), 0)
    assert f"fill_value={fill_value!r}" in str(info.value)
    assert str(np.dtype(dtype)) in str(info.value)
    with pytest.raises(DatasetSpecError):  # by the append approach, and by reserve(), too
        backend.saver(name="new", dtype=dtype, fill_value=fill_value).save(np.zeros(1, dtype))
    with pytest.raises(DatasetSpecError):
        backend.saver("update", name="new", fill_value=fill_value).reserve(2, (), dtype)
    assert snapshot(backend.root) == before


@pytest.mark.filterwarnings("ignore:The data type")  # zarr: no stable v3 spec for bytes yet
@pytest.mark.parametrize(
    "fill_value, dtype, expected",
    [(np.nan, "f4", np.nan), (0, "u1", 0), (255, "u1", 255), (b"ab", "S2", b"ab"), (True, "bool", True),
     (-3, "f8", -3.0),
     # Values, not typed data: these filled datasets before the check came, and still do.
     (0, "bool", False), (1, "bool", True), ("ab", "S3", b"ab"), (0.1, "f4", np.float32(0.1))],
    ids=repr,
)
def test_a_fill_value_the_dtype_holds_unchanged_is_accepted(
    backend: Backend, fill_value: Any, dtype: str, expected: Any
) -> None:
    backend.saver("update", name="d", shape=(2,), dtype=dtype, fill_value=fill_value).save(
        np.zeros(1, dtype), 0
    )
    np.testing.assert_array_equal(backend.read("d")[1:], np.array([expected], dtype))


def test_a_nat_fill_value_fills_a_datetime_dataset(tmp_path: Path) -> None:
    from zsaver import ZarrSaver  # HDF5 has no datetime type: zarr only

    saver = ZarrSaver(tmp_path, "t", "update", shape=(2,), dtype="M8[ns]", fill_value=np.datetime64("NaT"))
    saver.save(np.array(["2026-01-01"], dtype="M8[s]"), 0)
    assert np.isnat(saver.array[1])
    # As a JSON config holds it: the text "NaT" (and "NaN" for floats, 0 for durations).
    ZarrSaver(tmp_path, "u", "update", shape=(2,), dtype="M8[s]", fill_value="NaT").save(
        np.array(["2026-01-01"], dtype="M8[s]"), 0)
    ZarrSaver(tmp_path, "v", "update", shape=(2,), dtype="f4", fill_value="NaN").save(np.ones(1), 0)
    ZarrSaver(tmp_path, "w", "update", shape=(2,), dtype="m8[s]", fill_value=0).save(
        np.array([5], dtype="m8[s]"), 0)
    assert np.isnat(zarr.open_array(tmp_path / "u")[1]) and np.isnan(zarr.open_array(tmp_path / "v")[1])
    assert zarr.open_array(tmp_path / "w")[1] == np.timedelta64(0, "s")


def test_structured_subarray_fields_of_another_shape_are_refused_by_name(tmp_path: Path) -> None:
    # zarr refuses subarray fields in a dtype: HDF5 only. Were numpy's raw ValueError
    # ((2,) into (3,)) and a silent broadcast (a scalar into (2,)).
    from zsaver import HDF5Saver

    path = tmp_path / "s.h5"
    HDF5Saver(path, "s").save(np.zeros(1, [("a", "f8", (3,)), ("b", "i4", (2,))]))
    before = snapshot(tmp_path)
    with pytest.raises(DTypeMismatchError, match=r"field 'a' holds values of shape \(3,\).*\(2,\)"):
        HDF5Saver(path, "s").save(np.ones(1, [("a", "f8", (2,)), ("b", "i4", (2,))]))
    with pytest.raises(DTypeMismatchError, match=r"field 'b' holds values of shape \(2,\).*\(\)"):
        HDF5Saver(path, "s").save(np.zeros(1, [("a", "f8", (3,)), ("b", "i4")]))
    assert snapshot(tmp_path) == before
    swapped = np.ones(1, [("b", "i2", (2,)), ("a", "f4", (3,))])  # same shapes, by name
    HDF5Saver(path, "s").save(swapped)
    assert HDF5Saver(path, "s").row_spec() is not None and len(HDF5Saver(path, "s")) == 2


@pytest.mark.filterwarnings("ignore:The data type")  # zarr: no stable v3 spec for strings yet
def test_non_ascii_bytes_into_a_variable_length_text_dataset_are_refused_by_name(tmp_path: Path) -> None:
    # Was numpy's raw "TypeError: function takes exactly 5 arguments" (HDF5: no such type).
    from zsaver import ZarrSaver

    ZarrSaver(tmp_path, "t", dtype=str).save(np.array(["ok"]))
    before = snapshot(tmp_path)
    with pytest.raises(DTypeMismatchError, match=r"'t' has dtype StringDType\(\); got data of dtype \|S3"):
        ZarrSaver(tmp_path, "t").save(np.array([b"\xe9t\xe9"]))
    assert snapshot(tmp_path) == before
    ZarrSaver(tmp_path, "t").save(np.array([b"abc"]))  # ASCII bytes are text
    assert ZarrSaver(tmp_path, "t").array[...].tolist() == ["ok", "abc"]


def test_a_complex_part_that_overflows_is_refused_beside_a_nan_part(backend: Backend) -> None:
    # np.isfinite(nan+1e300j) is False, which hid the imaginary part becoming inf.
    backend.saver(name="c", dtype="c8").save(np.array([1 + 1j]))
    before = snapshot(backend.root)
    for value in (complex(np.nan, 1e300), complex(1e300, np.nan)):
        with pytest.raises(DTypeMismatchError, match="do not fit in complex64"):
            backend.saver(name="c").save(np.array([value]))
    assert snapshot(backend.root) == before
    backend.saver(name="c").save(np.array([complex(np.nan, 2.0)]))  # NaN itself is a value
    assert np.isnan(backend.read("c")[1].real) and backend.read("c")[1].imag == 2.0


@pytest.mark.parametrize("chunks", [True, 2.5, (2.5, 3), (2, True), "rows", []], ids=repr)
def test_chunks_of_the_wrong_kind_are_refused_not_coerced(backend: Backend, chunks: Any) -> None:
    # chunks=True gave 1-row chunks; ZarrSaver(chunks=2.5) raised a raw TypeError.
    backend.saver(name="d", chunks=4).save(EXISTING)
    before = snapshot(backend.root)
    with pytest.raises(DatasetSpecError, match=r"chunks= expects rows per chunk.*; got " + re.escape(repr(chunks))):
        backend.saver(name="new", chunks=chunks).save(np.zeros((3, 3)))
    assert snapshot(backend.root) == before


@pytest.mark.parametrize(
    "options, match",
    [
        ({"shape": (3.5,)}, r"shape= expects a tuple of ints.*\(3\.5,\)"),  # became 3 rows
        ({"shape": 3.0}, r"shape= expects a tuple of ints.*3\.0"),
        ({"shape": (True, 3)}, r"shape= expects a tuple of ints"),
        ({"allow_resize": "no"}, r"allow_resize= expects True or False; got 'no' \(str\)"),  # was truthy
        ({"allow_resize": 0}, r"allow_resize= expects True or False; got 0 \(int\)"),
    ],
    ids=["float-size", "float-shape", "bool-size", "str-allow-resize", "int-allow-resize"],
)
def test_shape_and_allow_resize_of_the_wrong_kind_are_refused_when_the_saver_is_made(
    backend: Backend, options: dict[str, Any], match: str
) -> None:
    with pytest.raises(SaverOptionError, match=match):
        backend.saver("update", **options)
    assert snapshot(backend.root) == {}
