"""Driver-side placement of rows: item i's rows go to row ``row_base + i * k``, whatever the saver's approach."""

from __future__ import annotations

from typing import Any

import numpy as np

from zsaver.errors import ResumeMismatchError
from zsaver.savers.base import Saver


def saver_length(saver: Saver) -> int | None:
    """``len(saver)``, or None for savers that do not report it."""
    try:
        return len(saver)
    except TypeError:
        return None


class RowWriter:
    """Writes rows at absolute positions through a Saver.

    ``"update"`` savers get ``save(rows, indices=slice)`` after ``reserve``.
    ``"append"`` savers get plain appends, except for rows that already exist:
    a crashed run may have written rows past its last completion record, and on
    resume those rows are overwritten in place through ``saver.clone("update")``
    so the dataset ends exactly as an uninterrupted run leaves it.
    """

    def __init__(self, saver: Saver, approach: str, n_rows_total: int | None) -> None:
        self.saver = saver
        self.approach = approach
        self._n_rows_total = n_rows_total  # rows the finished dataset will have, if known
        self._reserved = 0
        # "overwrite": the first save replaces the dataset, so it starts empty.
        self._length = 0 if approach == "overwrite" else saver_length(saver) if approach == "append" else None
        self._overwriter: Saver | None = None

    def write(self, first_row: int, rows: np.ndarray) -> None:
        end = first_row + len(rows)
        if self.approach == "update":
            if end > self._reserved:
                total = self._n_rows_total if self._n_rows_total is not None else end
                self.saver.reserve(max(total, end), tuple(rows.shape[1:]), rows.dtype)
                self._reserved = max(total, end)
            self.saver.save(rows, indices=slice(first_row, end))
            return
        length = self._length
        if length is None:  # a saver that does not say its length: trust the order
            self.saver.save(rows)
            return
        if first_row > length:
            raise ResumeMismatchError(
                f"the dataset has {length} rows but the completion records say rows up to "
                f"{first_row} are saved: the dataset was changed outside this run; pass resume=False"
            )
        overlap = min(length - first_row, len(rows))
        if overlap > 0:
            self._overwrite(first_row, rows[:overlap])
        if overlap < len(rows):
            self.saver.save(rows[overlap:])
            self._length = end

    def _overwrite(self, first_row: int, rows: np.ndarray) -> None:
        if self._overwriter is None:
            try:
                self._overwriter = self.saver.clone(approach="update")
            except NotImplementedError as exc:
                raise ResumeMismatchError(
                    "the dataset holds rows past the last completion record and "
                    f"{type(self.saver).__name__} cannot overwrite them (no clone); pass resume=False"
                ) from exc
        self._overwriter.save(rows, indices=slice(first_row, first_row + len(rows)))

    def flush(self) -> None:
        if self._overwriter is not None:
            self._overwriter.flush()
        self.saver.flush()

    def close(self) -> None:
        """Close the helper saver; the user's saver stays open."""
        if self._overwriter is not None:
            self._overwriter.close()
            self._overwriter = None


def concat_rows(parts: list[np.ndarray]) -> np.ndarray:
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def positions_of(first_rows: list[int], parts: list[Any]) -> list[tuple[int, list[Any]]]:
    """Group parts that follow each other into runs: ``[(first_row, [part, ...]), ...]``."""
    runs: list[tuple[int, list[Any]]] = []
    next_row = None
    for first, part in zip(first_rows, parts, strict=True):
        if runs and first == next_row:
            runs[-1][1].append(part)
        else:
            runs.append((first, [part]))
        next_row = first + len(part)
    return runs


__all__ = ["RowWriter", "concat_rows", "positions_of", "saver_length"]
