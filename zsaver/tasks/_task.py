"""Task: the unit of work a TaskManager runs over items, and the wrapper for plain functions."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any


class Task:
    """Subclass and implement :meth:`process_item` (or :meth:`process_items` for batches).

    :meth:`setup` runs once per worker before its first item (once per worker
    process with ``"processes"`` or dask; once in the driver with ``"serial"``
    and ``"threads"``), :meth:`teardown` once when that worker is done.

    Example:
        >>> class Square(Task):
        ...     def process_item(self, item, **kwargs):
        ...         return item * item
        >>> Square().process_items([1, 2, 3])
        [1, 4, 9]
    """

    def setup(self) -> None:
        """Acquire per-worker resources (open files, load a model)."""

    def teardown(self) -> None:
        """Release what :meth:`setup` acquired."""

    def process_item(self, item: Any, **kwargs: Any) -> Any:
        """The result of one item: one row (array-like), or ``rows_per_item`` rows."""
        if _overrides(self, "process_items"):
            return self.process_items([item], **kwargs)[0]
        raise NotImplementedError(f"{type(self).__name__} must implement process_item or process_items")

    def process_items(self, items: Sequence[Any], **kwargs: Any) -> Sequence[Any]:
        """The results of a batch, one per item, in order. Override to vectorise.

        If it raises, the batch is retried item by item to find the failing items.
        """
        return [self.process_item(item, **kwargs) for item in items]


class FunctionTask(Task):
    """A plain function ``fn(item, **kwargs)`` used as a Task."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn

    def process_item(self, item: Any, **kwargs: Any) -> Any:
        return self.fn(item, **kwargs)

    def process_items(self, items: Sequence[Any], **kwargs: Any) -> Sequence[Any]:
        fn = self.fn  # a local name keeps the hot loop cheap
        if kwargs:
            return [fn(item, **kwargs) for item in items]
        return [fn(item) for item in items]

    def __repr__(self) -> str:
        return f"FunctionTask({getattr(self.fn, '__qualname__', self.fn)!r})"


def _overrides(task: Task, name: str) -> bool:
    return getattr(type(task), name) is not getattr(Task, name)


def is_vectorised(task: Task) -> bool:
    """True when the task brings its own :meth:`Task.process_items` (a wrapped function does not)."""
    return _overrides(task, "process_items") and not isinstance(task, FunctionTask)


def as_task(task: Task | type[Task] | Callable[..., Any]) -> Task:
    """A Task instance from a Task, a Task subclass, or a plain callable."""
    if isinstance(task, Task):
        return task
    if isinstance(task, type) and issubclass(task, Task):
        return task()
    if callable(task):
        return FunctionTask(task)
    raise TypeError(f"task must be a zsaver.Task, a Task subclass or a callable; got {type(task).__name__}")


__all__ = ["FunctionTask", "Task", "as_task", "is_vectorised"]
