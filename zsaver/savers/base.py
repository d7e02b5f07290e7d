"""The Saver contract: persist arrays of results along axis 0.

Concrete savers (:class:`~zsaver.ZarrSaver`, :class:`~zsaver.HDF5Saver`, or a
user's own) are interchangeable strategies; runners such as
:class:`~zsaver.TaskManager` talk to them only through this interface.
"""

from __future__ import annotations

import abc
from types import TracebackType
from typing import Any, Self

import numpy as np
import numpy.typing as npt

#: What ``indices`` may be: an int, a slice, a sequence or array of ints, or a boolean mask.
IndexLike = int | slice | np.ndarray | npt.ArrayLike

APPROACHES = ("append", "overwrite", "update")


class Saver(abc.ABC):
    """Abstract base of every saver.

    Only :meth:`save` is required. The other methods have working defaults:
    ``flush`` does nothing, ``close`` flushes, ``consolidate`` flushes.

    Example:
        >>> class ListSaver(Saver):
        ...     def __init__(self):
        ...         self.rows = []
        ...     def save(self, data, indices=None, **kwargs):
        ...         self.rows.extend(np.asarray(data))
        >>> with ListSaver() as s:
        ...     s.save(np.ones((2, 3)))
        >>> len(s.rows)
        2
    """

    #: One of ``"append"``, ``"overwrite"``, ``"update"``.
    approach: str = "append"

    @abc.abstractmethod
    def save(self, data: npt.ArrayLike, indices: Any = None, **kwargs: Any) -> None:
        """Persist ``data`` (rows along axis 0); ``indices`` places them (update approach).

        Raises a subclass of ValueError, TypeError or IndexError on bad input
        (``DatasetNotFoundError``, a FileNotFoundError, for an update of a dataset
        that does not exist), in which case nothing has been written.
        """

    def flush(self) -> None:
        """Make everything saved so far durable. Returns once it survives a SIGKILL."""
        return None  # a saver that writes in save() has nothing left to flush

    def close(self) -> None:
        """Flush and release open handles. Closing twice is harmless."""
        self.flush()

    def consolidate(self) -> None:
        """Flush, then ask the underlying store to consolidate when it can."""
        self.flush()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- what runners need to know (optional; defaults describe "unknown") ---

    def __len__(self) -> int:
        """Rows in the dataset, staged rows included; 0 before the first save."""
        raise TypeError(f"{type(self).__name__} does not report its length")

    @property
    def row_chunk(self) -> int | None:
        """Rows per storage chunk along axis 0, or None when unknown or not chunked."""
        return None

    def row_spec(self) -> tuple[tuple[int, ...], np.dtype] | None:
        """Shape and dtype of the rows of the existing dataset; None when there is none yet or unknown."""
        return None

    def reserve(self, n_rows: int, row_shape: tuple[int, ...], dtype: npt.DTypeLike) -> None:
        """Make sure the dataset exists with at least ``n_rows`` rows of ``row_shape``.

        Used by runners that write results at their item index (update approach).
        """
        raise NotImplementedError(f"{type(self).__name__} cannot preallocate a dataset")

    def clone(self, approach: str | None = None) -> Saver:
        """A fresh, unopened, picklable saver on the same dataset (for worker processes)."""
        raise NotImplementedError(f"{type(self).__name__} cannot be cloned for workers")

    def clones_share_dataset(self) -> bool:
        """True when a pickled :meth:`clone` writes this very dataset, not a copy of it.

        False for data that lives in this process's memory (a zarr ``MemoryStore``):
        rows written by a clone in a worker would be lost.
        """
        return True

    # --- small durable documents kept next to the dataset (resume records) ---

    @property
    def supports_records(self) -> bool:
        """True when :meth:`read_record` / :meth:`write_record` are implemented."""
        return False

    def read_record(self, name: str) -> dict[str, Any] | None:
        """The JSON document ``name`` stored next to the dataset, or None if absent."""
        raise NotImplementedError(f"{type(self).__name__} keeps no records")

    def write_record(self, name: str, doc: dict[str, Any] | None) -> None:
        """Store (or, with None, delete) a JSON document next to the dataset.

        Atomic and durable when it returns; never visible half-written.
        """
        raise NotImplementedError(f"{type(self).__name__} keeps no records")


def normalize_approach(approach: str) -> str:
    """``" Append "`` -> ``"append"``; anything else than the three approaches is an error."""
    from zsaver.errors import ApproachError

    if not isinstance(approach, str):
        raise ApproachError(
            f"approach must be one of {', '.join(map(repr, APPROACHES))}; got {approach!r}"
        )
    norm = approach.strip().lower()
    if norm not in APPROACHES:
        raise ApproachError(
            f"approach must be one of {', '.join(map(repr, APPROACHES))}; got {approach!r}"
        )
    return norm


__all__ = ["APPROACHES", "IndexLike", "Saver", "normalize_approach"]
