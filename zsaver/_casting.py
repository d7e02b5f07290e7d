"""The casting rule: when data of one dtype may be stored in another, and the cast.

One rule for every saver and for the TaskManager, which checks each result
against the rows before it: within a kind of values (numbers, text, durations,
dates) numpy's "same_kind" rule decides, and no value may change on the way
(no overflow, wrap-around or truncation; floats may round). The fill-value
rule (:func:`fill_value_problem`) is the same for the savers' ``fill_value=``
and the TaskManager's.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from zsaver.errors import DTypeMismatchError

#: Kinds of values that convert into one another: numbers, text, durations, dates.
_FAMILIES = {"b": "number", "i": "number", "u": "number", "f": "number", "c": "number",
             "U": "text", "S": "text", "T": "text", "m": "duration", "M": "date", "V": "record"}


def can_store(source: np.dtype, target: np.dtype) -> bool:
    """Whether data of ``source`` may be stored in ``target``: numpy's "same_kind" rule,
    within one family of values (numpy also lets numbers become text or durations).

    Example:
        >>> can_store(np.dtype("i8"), np.dtype("f4")), can_store(np.dtype("i8"), np.dtype("U5"))
        (True, False)
    """
    return _FAMILIES.get(source.kind) == _FAMILIES.get(target.kind) and bool(
        np.can_cast(source, target, casting="same_kind")
    )


def cast_rows(arr: np.ndarray, target: np.dtype, holder: str) -> np.ndarray:
    """``arr`` in dtype ``target`` if :func:`can_store` allows it and no value changes.

    Integer, bool and string targets need an exact round trip (no overflow,
    wrap-around or truncation). Floating and complex targets accept rounding to
    the nearest representable value but not a finite value becoming infinite.

    Example:
        >>> cast_rows(np.array([1, 2]), np.dtype("f4"), "dataset 'd'").dtype
        dtype('float32')
    """
    source = arr.dtype
    if source == target:
        return arr
    if source.fields is not None and target.fields is not None:
        return _cast_fields(arr, target, holder)
    if not can_store(source, target):
        raise DTypeMismatchError(
            f"{holder} has dtype {target}; got data of dtype {source}, which "
            f"cannot be stored without changing values or their kind (numbers, text, "
            f"durations and dates do not convert into one another; numpy 'same_kind' "
            f"casting decides within a kind)"
        )
    with np.errstate(all="ignore"):
        try:
            if source.kind == "S" and target.kind == "T":
                # numpy copies the bytes into the variable-width strings undecoded
                # (non-ASCII ones become invalid text); decode them as S -> U does.
                cast = arr.astype(np.dtype(f"U{max(1, source.itemsize)}")).astype(target)
            else:
                cast = arr.astype(target)
            if target.kind in "fc" and source.kind in "iufcb":
                changed = _became_infinite(arr, cast)
            elif target.kind in "iu" and source.kind in "iu":
                # A range check: uint8 200 -> int8 -56 survives the round trip, wrapped.
                info = np.iinfo(target)
                changed = arr.size > 0 and (int(arr.min()) < info.min or int(arr.max()) > info.max)
            else:
                # NaT stays NaT across time units but never equals itself.
                changed = not np.array_equal(
                    cast.astype(source), arr, equal_nan=source.kind in "mM"
                )
        except (UnicodeError, TypeError, ValueError) as exc:
            # Bytes that are no ASCII text, text that is no ASCII, and numpy's
            # less helpful refusals of string conversions.
            raise DTypeMismatchError(
                f"{holder} has dtype {target}; got data of dtype {source} that "
                f"does not convert to it ({exc})"
            ) from None
    if changed:
        raise DTypeMismatchError(
            f"{holder} has dtype {target}; got data of dtype {source} whose values "
            f"do not fit in {target} (overflow or truncation)"
        )
    return cast


def _became_infinite(arr: np.ndarray, cast: np.ndarray) -> bool:
    """Whether a finite value (or a finite real or imaginary part) of ``arr`` is infinite in ``cast``.

    Complex parts are compared one by one: ``np.isfinite`` of a complex value is
    False as soon as either part is NaN, which would hide the other one overflowing.
    """
    parts = [(np.real(arr), np.real(cast))]
    if cast.dtype.kind == "c" and arr.dtype.kind == "c":
        parts.append((np.imag(arr), np.imag(cast)))
    return any(bool(np.any(np.isfinite(a) & ~np.isfinite(c))) for a, c in parts)


def _cast_fields(arr: np.ndarray, target: np.dtype, holder: str) -> np.ndarray:
    """Structured ``arr`` in structured ``target``, field by field *name* (numpy casts by position)."""
    assert arr.dtype.names is not None and target.names is not None
    if sorted(arr.dtype.names) != sorted(target.names):
        raise DTypeMismatchError(
            f"{holder} has fields {list(target.names)}; got data with fields "
            f"{list(arr.dtype.names)} (expected the same field names, in any order)"
        )
    cast = np.empty(arr.shape, dtype=target)
    for name in target.names:
        field = target.fields[name][0]  # type: ignore[index]
        given = arr.dtype.fields[name][0]  # type: ignore[index]
        if given.shape != field.shape:  # numpy would broadcast a (1,) field, or raise
            raise DTypeMismatchError(
                f"{holder}: field {name!r} holds values of shape {field.shape}; got data "
                f"whose field {name!r} holds values of shape {given.shape}"
            )
        part = arr[name]
        if field.subdtype is not None:  # a subarray field: its item dtype, its extra axes
            field = field.subdtype[0]
        try:
            cast[name] = cast_rows(part, field, holder)
        except DTypeMismatchError as exc:
            raise DTypeMismatchError(f"{exc} (in field {name!r})") from None
    return cast


def fill_value_problem(fill_value: Any, dtype: np.dtype) -> str | None:
    """Why ``fill_value`` cannot fill ``dtype`` unchanged, or None if it can.

    The fill-value rule of the savers' ``fill_value=`` option and of the
    TaskManager's (the rows of a skipped item). A fill value is a value, not
    typed data: 0 fills a bool or uint8 dtype, the text "NaT" a datetime one and
    "NaN" a float one; floats may round, as data does. What must not happen is
    the value changing on the way (overflow, wrap-around, truncation).

    Example:
        >>> fill_value_problem(0.1, np.dtype("f4")) is None, fill_value_problem(1.5, np.dtype("i4"))
        (True, 'it would be stored as np.int32(1) (overflow, wrap-around or truncation)')
    """
    if dtype.names is not None and isinstance(fill_value, tuple):
        if len(fill_value) != len(dtype.names):
            return f"got {len(fill_value)} values for {len(dtype.names)} fields"
        for name, value in zip(dtype.names, fill_value, strict=True):
            field = dtype.fields[name][0]  # type: ignore[index]
            if np.shape(value) not in ((), field.shape):
                return (
                    f"field {name!r} holds values of shape {field.shape}; got a value of "
                    f"shape {np.shape(value)}"
                )
            why = fill_value_problem(value, field.base)
            if why is not None:
                return f"{why} (in field {name!r})"
        return None
    try:
        value = np.asarray(fill_value)
    except (ValueError, OverflowError) as exc:  # ragged sequences, ints past 64 bits
        return f"expected a single value numpy can hold ({exc})"
    if value.dtype == object or value.ndim != 0:
        return f"expected a single value; got one of dtype {value.dtype} and shape {value.shape}"
    if dtype.names is not None or value.dtype.names is not None:
        return f"expected a tuple of one value per field of {dtype}"
    # A value, not typed data: 0 may fill a bool or uint8 dataset, "NaT" a datetime
    # one, "NaN" a float one; what must not happen is the value changing on the way.
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            stored = value.astype(dtype)
        except (ValueError, TypeError, OverflowError) as exc:
            return f"numpy does not convert it ({exc})"
        if value.dtype.kind in "UST" and dtype.kind not in "UST":
            if dtype.kind in "fc":  # text numpy parsed ("NaN", "1e3"): it must not overflow
                value = value.astype(np.complex128 if dtype.kind == "c" else np.float64)
            else:
                return None  # as it reads ("NaT", "12")
        if dtype.kind in "fc" and value.dtype.kind in "biufc":
            # Floats round to the nearest value they hold; they must not overflow.
            if np.isfinite(value) and not np.all(np.isfinite(stored.view(stored.dtype))):
                return f"{fill_value!r} overflows {dtype}"
            return None
        try:
            back = stored.astype(value.dtype)
            same = bool(back == value) or (bool(np.isnan(back)) and bool(np.isnan(value))
                                           if value.dtype.kind in "fcmM" else False)
        except (ValueError, TypeError, OverflowError):
            same = False
    if not same:
        return f"it would be stored as {stored[()]!r} (overflow, wrap-around or truncation)"
    return None


__all__ = ["can_store", "cast_rows", "fill_value_problem"]
