"""What a run of :meth:`TaskManager.submit_tasks` did: counts, failures, timing."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ItemFailure:
    """One item that could not be processed.

    ``exc_type`` is the exception's class name (``"WorkerDiedError"`` when the
    worker process died), ``traceback`` the formatted traceback from the worker.
    """

    index: int
    exc_type: str
    message: str
    traceback: str = ""

    def to_record(self, max_traceback: int = 4000) -> dict[str, Any]:
        """A JSON-able dict, the traceback cut to its last ``max_traceback`` characters."""
        return {
            "index": self.index,
            "exc_type": self.exc_type,
            "message": self.message,
            "traceback": self.traceback[-max_traceback:],
        }

    @classmethod
    def from_record(cls, doc: dict[str, Any]) -> ItemFailure:
        return cls(int(doc["index"]), str(doc["exc_type"]), str(doc["message"]), str(doc.get("traceback", "")))


@dataclass
class TaskReport:
    """Summary of one call to :meth:`TaskManager.submit_tasks`.

    Example:
        >>> r = TaskReport(items_done=3, items_skipped=1, rows_saved=3, elapsed_seconds=0.5)
        >>> r.items_per_second
        6.0
    """

    #: Items processed by this call (failed ones included).
    items_done: int = 0
    #: Items not processed because completion records say they are already done.
    items_skipped: int = 0
    #: Items that failed in this call (with ``on_error="skip"``).
    failures: list[ItemFailure] = field(default_factory=list)
    #: Rows written to the saver by this call.
    rows_saved: int = 0
    #: Of those, rows the workers wrote themselves (``write="workers"``).
    rows_saved_by_workers: int = 0
    elapsed_seconds: float = 0.0
    #: Results in item order when the run had no saver, else None.
    results: list[Any] | None = None
    #: Times ``saver.consolidate()`` was called.
    consolidations: int = 0

    @property
    def items_failed(self) -> int:
        return len(self.failures)

    @property
    def items_per_second(self) -> float:
        """Items processed by this call per second of wall-clock time."""
        return self.items_done / self.elapsed_seconds if self.elapsed_seconds > 0 else 0.0

    def __str__(self) -> str:
        return (
            f"{self.items_done} items done ({self.items_failed} failed), "
            f"{self.items_skipped} already done, {self.rows_saved} rows saved "
            f"in {self.elapsed_seconds:.2f} s ({self.items_per_second:,.0f} items/s)"
        )


__all__ = ["ItemFailure", "TaskReport"]
