"""A bounded reorder buffer: batches finish in any order and leave in item order."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class ReorderBuffer(Generic[T]):
    """Holds out-of-order batches until the batch starting at :attr:`next_start` arrives.

    The buffer itself does not refuse batches: the runner bounds it by never
    having more than a window of batches submitted and not yet released.

    Example:
        >>> buf = ReorderBuffer(0)
        >>> buf.put(2, 2, "c+d")
        >>> list(buf.pop_ready())
        []
        >>> buf.put(0, 2, "a+b")
        >>> list(buf.pop_ready())
        ['a+b', 'c+d']
        >>> buf.next_start
        4
    """

    def __init__(self, next_start: int = 0) -> None:
        self.next_start = next_start
        self._waiting: dict[int, tuple[int, T]] = {}

    def put(self, start: int, count: int, value: T) -> None:
        """Add the batch of ``count`` items beginning at item ``start``."""
        if start < self.next_start or start in self._waiting:
            raise ValueError(f"batch starting at item {start} was already released or buffered")
        self._waiting[start] = (count, value)

    def pop_ready(self) -> Iterator[T]:
        """Yield, in order, every batch that continues the released prefix."""
        while self.next_start in self._waiting:
            count, value = self._waiting.pop(self.next_start)
            self.next_start += count
            yield value

    def __len__(self) -> int:
        return len(self._waiting)


__all__ = ["ReorderBuffer"]
