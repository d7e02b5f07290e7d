"""Resume records: which items of a run are done, and a fingerprint to recognise the items.

A record is a small JSON document stored next to the dataset through
``saver.write_record``; it is rewritten only after the rows it covers are flushed.
"""

from __future__ import annotations

import hashlib
import pickle
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from zsaver.errors import ResumeMismatchError

RECORD_VERSION = 1


class ItemFingerprint:
    """A running hash of items in order, independent of how they are batched.

    Each item contributes a canonical encoding of its value, the same in every
    interpreter: Python and numpy integers alike (so ``range(n)`` and
    ``np.arange(n)`` match; ints are hashed in bulk), floats, strings, bytes,
    None, tuples and lists alike, sets and dicts sorted (so ``PYTHONHASHSEED``
    does not matter), numpy arrays by dtype, shape and bytes; anything else by
    its pickle.

    Example:
        >>> a, b = ItemFingerprint(), ItemFingerprint()
        >>> a.update([1, 2, 3]); b.update([1]); b.update(np.arange(2, 4))
        >>> a.hexdigest() == b.hexdigest()
        True
    """

    _INT_ITEM = np.dtype([("tag", "u1"), ("value", "<i8")])
    #: Integer types that fit int64, packed in bulk (uint64 may not fit).
    _BULK_INTS = frozenset({int, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32})

    def __init__(self) -> None:
        self._hash = hashlib.blake2b(digest_size=16)
        self.count = 0

    def update(self, items: Sequence[Any]) -> None:
        if not len(items):
            return
        self.count += len(items)
        if self._BULK_INTS.issuperset(map(type, items)):
            try:
                packed = np.empty(len(items), dtype=self._INT_ITEM)
                packed["tag"] = ord("i")
                packed["value"] = items
                self._hash.update(packed.tobytes())
                return
            except OverflowError:
                pass
        for item in items:
            self._hash.update(self._encode(item))

    @classmethod
    def _encode(cls, item: Any) -> bytes:
        if isinstance(item, (int, np.integer)) and not isinstance(item, bool):
            value = int(item)
            if -(2**63) <= value < 2**63:
                return b"i" + value.to_bytes(8, "little", signed=True)
            return b"I" + str(value).encode()
        if isinstance(item, (float, np.floating)):
            return b"f" + struct.pack("<d", float(item))
        if isinstance(item, str):
            return b"s" + item.encode("utf-8", "surrogatepass")
        if isinstance(item, bytes):
            return b"b" + item
        if item is None:
            return b"n"
        if isinstance(item, (tuple, list)):
            return b"l" + b"".join(cls._framed(x) for x in item)
        if isinstance(item, (set, frozenset)):
            return b"S" + b"".join(sorted(cls._framed(x) for x in item))
        if isinstance(item, dict):
            return b"d" + b"".join(sorted(cls._framed(k) + cls._framed(v) for k, v in item.items()))
        if isinstance(item, np.ndarray) and item.dtype != object:
            head = f"{item.dtype.str}{item.shape}".encode()
            return b"a" + cls._framed(head) + np.ascontiguousarray(item).tobytes()
        try:
            return b"p" + pickle.dumps(item, protocol=4)
        except Exception:  # unpicklable items (threads, serial) still get a fingerprint
            return b"r" + repr(item).encode()

    @classmethod
    def _framed(cls, item: Any) -> bytes:
        """The encoding of ``item`` behind its length, so that nested encodings cannot run together."""
        encoded = cls._encode(item)
        return len(encoded).to_bytes(8, "little") + encoded

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


class CompletionRecord(BaseModel):
    """The durable state of a run, as stored next to the dataset."""

    version: int = RECORD_VERSION
    #: Items in the run, None while a generator is not exhausted.
    n_items: int | None = None
    #: The first ``items_done`` items are processed and their rows flushed.
    items_done: int = 0
    #: :class:`ItemFingerprint` of those first ``items_done`` items.
    prefix_fingerprint: str = ItemFingerprint().hexdigest()
    #: Row of item 0 (rows already in an append dataset when the run began).
    row_base: int = 0
    rows_per_item: int | None = None
    row_shape: list[int] | None = None
    dtype: str | None = None
    #: Skipped items and why (their rows hold the fill value).
    failures: list[dict[str, Any]] = Field(default_factory=list)
    complete: bool = False

    @property
    def rows_done(self) -> int:
        return self.row_base + self.items_done * (self.rows_per_item or 1)

    def check_compatible(self, n_items: int | None, rows_per_item: int | None) -> None:
        """Raise :class:`ResumeMismatchError` if this record cannot be for these items."""
        hint = "; pass resume=False to start over"
        if self.version != RECORD_VERSION:
            raise ResumeMismatchError(f"completion record has version {self.version}, expected {RECORD_VERSION}{hint}")
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


__all__ = ["RECORD_VERSION", "CompletionRecord", "ItemFingerprint"]
