"""Resume records: which items of a run are done, and a fingerprint to recognise the items.

A record is a small JSON document stored next to the dataset through
``saver.write_record``; it is rewritten only after the rows it covers are flushed.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import re
import struct
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, Field

from zsaver.errors import ResumeMismatchError

RECORD_VERSION = 1
#: A memory address in a repr, as in ``<object at 0x7f3a...>``.
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


class ItemFingerprint:
    """A running hash of items in order, independent of how they are batched.

    Each item contributes a canonical encoding of its value, the same in every
    interpreter: Python and numpy integers alike (so ``range(n)`` and
    ``np.arange(n)`` match; ints are hashed in bulk), floats, strings, bytes,
    None, tuples and lists alike, sets and dicts sorted (so ``PYTHONHASHSEED``
    does not matter), numpy arrays by dtype, shape and bytes; anything else by
    its pickle (unpicklable objects: type and repr without memory addresses).
    Each item's encoding is framed, so ``["ab", "c"]`` and ``["a", "bc"]``
    differ. Earlier encodings are kept to resume the runs they recorded:
    ``version=1`` (each item's pickle) and ``version=2`` (as 3, but an
    unpicklable object hashed by its repr, memory address included).

    Example:
        >>> a, b = ItemFingerprint(), ItemFingerprint()
        >>> a.update([1, 2, 3]); b.update([1]); b.update(np.arange(2, 4))
        >>> a.hexdigest() == b.hexdigest()
        True
    """

    #: The encoding new records are written with.
    VERSION = 3
    _INT_ITEM = np.dtype([("tag", "u1"), ("value", "<i8")])
    #: Per version, the item types packed in bulk (all fit int64; uint64 may not).
    _BULK_TYPES: ClassVar[dict[int, frozenset[type]]] = {
        1: frozenset({int}),
        2: frozenset({int, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32}),
        # As 2, but objects that do not pickle are hashed without memory addresses.
        3: frozenset({int, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32}),
    }
    _FLOATS = (float, np.float16, np.float32, np.float64)  # exactly representable as float64

    def __init__(self, version: int = VERSION) -> None:
        if version not in self._BULK_TYPES:
            raise ValueError(f"fingerprint version must be one of {sorted(self._BULK_TYPES)}; got {version!r}")
        self.version = version
        self._other = self._object_token if version >= 3 else self._legacy_token
        self._hash = hashlib.blake2b(digest_size=16)
        self.count = 0

    def copy(self) -> ItemFingerprint:
        """An independent fingerprint with the same state."""
        twin = ItemFingerprint(self.version)
        twin._hash, twin.count = self._hash.copy(), self.count
        return twin

    def update(self, items: Sequence[Any]) -> None:
        self.update_encoded(self.encode(items), len(items))

    def encode(self, items: Sequence[Any]) -> np.ndarray | list[bytes]:
        """What ``items`` add to the hash, taken now (a task may change its items in place).

        One entry per item: a packed array for ints, else a list of tokens.
        """
        if len(items) and self._BULK_TYPES[self.version].issuperset(map(type, items)):
            try:
                packed = np.empty(len(items), dtype=self._INT_ITEM)
                packed["tag"] = ord("i")
                packed["value"] = items
                return packed
            except OverflowError:
                pass
        token = self._token if self.version >= 2 else self._legacy_token
        return [token(item) for item in items]

    def update_encoded(self, encoded: np.ndarray | list[bytes], n_items: int) -> None:
        """Add the first ``n_items`` of what :meth:`encode` returned."""
        if n_items <= 0:
            return
        head = encoded[:n_items]
        self._hash.update(head.tobytes() if isinstance(head, np.ndarray) else b"".join(head))
        self.count += n_items

    def _token(self, item: Any) -> bytes:
        """What one item adds to the hash: a bulk-packed int as is, anything else framed."""
        try:
            encoded = self._encode(item)
        except RecursionError:  # a container holding itself: pickle copes with cycles
            encoded = self._other(item)
        if len(encoded) == 9 and encoded[:1] == b"i":
            return encoded
        return b"L" + len(encoded).to_bytes(8, "little") + encoded

    def _encode(self, item: Any) -> bytes:
        if isinstance(item, (int, np.integer)) and not isinstance(item, bool):
            value = int(item)
            if -(2**63) <= value < 2**63:
                return b"i" + value.to_bytes(8, "little", signed=True)
            return b"I" + str(value).encode()
        if type(item) in self._FLOATS:
            return b"f" + struct.pack("<d", float(item))
        if isinstance(item, str):
            return b"s" + item.encode("utf-8", "surrogatepass")
        if isinstance(item, bytes):
            return b"b" + item
        if item is None:
            return b"n"
        if isinstance(item, (tuple, list)):
            return b"l" + b"".join(self._framed(x) for x in item)
        if isinstance(item, (set, frozenset)):
            return b"S" + b"".join(sorted(self._framed(x) for x in item))
        if isinstance(item, dict):
            return b"d" + b"".join(sorted(self._framed(k) + self._framed(v) for k, v in item.items()))
        if type(item) is np.ndarray and item.dtype != object:
            head = f"{item.dtype.str}{item.shape}".encode()
            return b"a" + self._framed(head) + np.ascontiguousarray(item).tobytes()
        return self._other(item)

    @staticmethod
    def _object_token(item: Any) -> bytes:
        """Any other object: its pickle, or if it has none, its type and repr without addresses.

        A repr such as ``<function f.<locals>.g at 0x7f...>`` holds a memory
        address, different in every process: it would make a rerun with the same
        items look like one with other items. Without the address, two such
        items with the same repr cannot be told apart.
        """
        try:
            return b"p" + pickle.dumps(item, protocol=4)
        except Exception:  # unpicklable items (threads, serial) still get a fingerprint
            kind = type(item)
            text = _ADDRESS.sub("", f"{kind.__module__}.{kind.__qualname__}:{item!r}")
            return b"r" + text.encode("utf-8", "surrogatepass")

    def _framed(self, item: Any) -> bytes:
        """The encoding of ``item`` behind its length, so that nested encodings cannot run together."""
        encoded = self._encode(item)
        return len(encoded).to_bytes(8, "little") + encoded

    @staticmethod
    def _legacy_token(item: Any) -> bytes:
        """Version 1: ints as 8 bytes, anything else its pickle (or, unpicklable, its repr)."""
        if type(item) is int and -(2**63) <= item < 2**63:
            return b"i" + item.to_bytes(8, "little", signed=True)
        try:
            return b"p" + pickle.dumps(item, protocol=4)
        except Exception:  # unpicklable items (threads, serial) still get a fingerprint
            return b"r" + repr(item).encode()

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def dtype_to_json(dtype: np.dtype) -> Any:
    """``dtype`` as JSON that :func:`dtype_from_json` reads back, structured and text dtypes included.

    Example:
        >>> dtype_from_json(dtype_to_json(np.dtype([("x", "<f8"), ("n", "<i2", (2,))]))).names
        ('x', 'n')
    """
    if dtype.kind == "T":  # numpy's variable-width strings (its descr would be a pickle)
        return "StringDType()"
    descr = np.lib.format.dtype_to_descr(dtype)
    return descr if isinstance(descr, str) else json.loads(json.dumps(descr))


def dtype_from_json(value: Any) -> np.dtype:
    """The dtype :func:`dtype_to_json` wrote (or a dtype string of an earlier record)."""
    if value == "StringDType()":
        return np.dtypes.StringDType()
    if isinstance(value, list):
        return np.lib.format.descr_to_dtype([_as_tuples(field) for field in value])
    return np.dtype(value)


def _as_tuples(field: Any) -> Any:
    """A field of a JSON-decoded descr, with its lists back as the tuples numpy expects."""
    name, kind, *shape = field
    if isinstance(kind, list):
        kind = [_as_tuples(sub) for sub in kind]
    return (name, kind, *[tuple(s) for s in shape])


class CompletionRecord(BaseModel):
    """The durable state of a run, as stored next to the dataset."""

    version: int = RECORD_VERSION
    #: Items in the run, None while a generator is not exhausted.
    n_items: int | None = None
    #: The first ``items_done`` items are processed and their rows flushed.
    items_done: int = 0
    #: :class:`ItemFingerprint` of those first ``items_done`` items.
    prefix_fingerprint: str = ItemFingerprint().hexdigest()
    #: Its encoding; records from before version 2 lack the field.
    fingerprint_version: int = 1
    #: Row of item 0 (rows already in an append dataset when the run began).
    row_base: int = 0
    rows_per_item: int | None = None
    row_shape: list[int] | None = None
    #: The rows' dtype as :func:`dtype_to_json` writes it (a string, or a list of fields).
    dtype: Any = None
    #: Skipped items and why, in records of earlier releases; now kept in
    #: ``failure_docs`` documents of their own (see :func:`read_failures`).
    failures: list[dict[str, Any]] = Field(default_factory=list)
    #: Documents ``<record name>.failures.<i>`` written, one per checkpoint with new
    #: failures: each is written once, so the cost of a checkpoint does not grow with
    #: the failures before it.
    failure_docs: int = 0
    complete: bool = False

    @property
    def rows_done(self) -> int:
        return self.row_base + self.items_done * (self.rows_per_item or 1)

    def check_compatible(self, n_items: int | None, rows_per_item: int | None) -> None:
        """Raise :class:`ResumeMismatchError` if this record cannot be for these items."""
        hint = "; pass resume=False to start over"
        if self.version != RECORD_VERSION:
            raise ResumeMismatchError(f"completion record has version {self.version}, expected {RECORD_VERSION}{hint}")
        if self.fingerprint_version not in ItemFingerprint._BULK_TYPES:
            raise ResumeMismatchError(
                f"completion record has item fingerprints of version {self.fingerprint_version}, "
                f"this zsaver knows versions {sorted(ItemFingerprint._BULK_TYPES)}{hint}"
            )
        if self.n_items is not None and n_items is not None and self.n_items != n_items:
            raise ResumeMismatchError(
                f"completion records are for {self.n_items} items, got {n_items} items{hint}"
            )
        if n_items is not None and n_items < self.items_done:
            raise ResumeMismatchError(
                f"completion records say {self.items_done} items are done, got only {n_items} items{hint}"
            )
        if self.rows_per_item != rows_per_item:
            raise ResumeMismatchError(
                f"completion records are for rows_per_item={self.rows_per_item}, got {rows_per_item}{hint}"
            )

    def check_prefix(self, fingerprint: ItemFingerprint) -> None:
        """Raise unless ``fingerprint`` (of the first ``items_done`` items now given) matches."""
        hint = "; pass resume=False to start over"
        if fingerprint.count < self.items_done:
            raise ResumeMismatchError(
                f"completion records say {self.items_done} items are done, "
                f"but the items ran out after {fingerprint.count}{hint}"
            )
        if fingerprint.hexdigest() != self.prefix_fingerprint:
            raise ResumeMismatchError(
                f"the first {self.items_done} items differ from those the completion records "
                f"were written for (fingerprint {fingerprint.hexdigest()} != {self.prefix_fingerprint}){hint}"
            )




def failures_doc_name(record_name: str, i: int) -> str:
    return f"{record_name}.failures.{i}"


def read_failures(saver: Any, record_name: str = "tasks") -> list[dict[str, Any]]:
    """The skipped items a run recorded next to ``saver``'s dataset, in item order.

    Each is a dict with ``index``, ``exc_type``, ``message`` and ``traceback``.

    Example:
        >>> import zarr, zsaver
        >>> saver = zsaver.ZarrSaver(zarr.storage.MemoryStore(), "x")
        >>> def f(i):
        ...     return 1 / (i - 2)
        >>> _ = zsaver.TaskManager(f).submit_tasks(range(4), saver, on_error="skip", progress=False)
        >>> [(f["index"], f["exc_type"]) for f in read_failures(saver)]
        [(2, 'ZeroDivisionError')]
    """
    doc = saver.read_record(record_name)
    if doc is None:
        return []
    record = CompletionRecord.model_validate(doc)
    failures = list(record.failures)
    for i in range(record.failure_docs):
        part = saver.read_record(failures_doc_name(record_name, i))
        failures.extend((part or {}).get("failures", []))
    return sorted(failures, key=lambda f: f["index"])


__all__ = ["RECORD_VERSION", "CompletionRecord", "ItemFingerprint", "failures_doc_name", "read_failures"]
