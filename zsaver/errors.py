"""The zsaver error hierarchy.

Every error derives from :class:`ZsaverError` and from the builtin it refines,
so ``except ValueError`` keeps working for callers who know nothing of zsaver.
"""

from __future__ import annotations

import pickle


class ZsaverError(Exception):
    """Base class of every error zsaver raises on purpose."""


# --- savers -----------------------------------------------------------------


class ApproachError(ZsaverError, ValueError):
    """An unknown saving approach was asked for."""


class ShapeMismatchError(ZsaverError, ValueError):
    """Data whose shape does not fit the dataset (trailing shape, ragged rows, 0-d)."""


class DuplicateIndexError(ZsaverError, ValueError):
    """The same row index appears twice in one update."""


class DTypeMismatchError(ZsaverError, TypeError):
    """Data whose dtype cannot be stored in the dataset without changing a value."""


class RowIndexError(ZsaverError, IndexError):
    """A row index outside the dataset."""


class DatasetNotFoundError(ZsaverError, FileNotFoundError):
    """The dataset (or its store) does not exist and the call cannot create it."""


class SaverClosedError(ZsaverError, ValueError):
    """An operation on a saver that has been closed."""


class InvalidIndexError(ZsaverError, TypeError):
    """Indices of a kind that cannot address rows (floats, 2-D arrays, ...)."""


class SaverOptionError(ZsaverError, TypeError):
    """A saver was given a keyword option it does not know, or an option of the wrong kind."""


class DatasetSpecError(ZsaverError, ValueError):
    """Creation options (chunks, codecs, fill value, ...) that zarr or h5py refuse."""


# --- stores -----------------------------------------------------------------


class StoreConfigError(ZsaverError, ValueError):
    """A store was configured with options that cannot work together."""


class ShardCorruptionError(ZsaverError, OSError):
    """A shard file exists but cannot be read as a shard."""


class ConfigError(ZsaverError, ValueError):
    """A config type cannot be registered, or an object cannot be described as a config."""


# --- tasks ------------------------------------------------------------------


class ResumeMismatchError(ZsaverError, ValueError):
    """Completion records exist for a different set of items."""


class WorkerDiedError(ZsaverError, RuntimeError):
    """A worker process died (os._exit, a segfault) while processing an item."""


class TaskError(ZsaverError, RuntimeError):
    """A task raised while processing an item.

    ``item_index`` is the position of the item in the submitted iterable and
    ``traceback_text`` the formatted traceback from the worker.
    """

    def __init__(self, message: str, *, item_index: int, traceback_text: str = "") -> None:
        super().__init__(message)
        self.item_index = item_index
        self.traceback_text = traceback_text

    def __str__(self) -> str:
        base = super().__str__()
        if self.traceback_text:
            return f"{base}\n\nOriginal traceback:\n{self.traceback_text}"
        return base

    def __reduce__(self):  # keep the keyword-only fields across pickling
        return (_rebuild_task_error, (self.args[0], self.item_index, self.traceback_text))


class UnpicklableError(ZsaverError, pickle.PicklingError):
    """A task, its arguments, an item or a result cannot be pickled for a worker process."""


class WorkerError(ZsaverError, RuntimeError):
    """An error raised in a worker process whose own class cannot travel back to the driver.

    Its message names the original class and message; ``traceback_text`` is the
    formatted traceback from the worker.
    """

    def __init__(self, message: str, traceback_text: str = "") -> None:
        super().__init__(message)
        self.traceback_text = traceback_text

    def __str__(self) -> str:
        base = super().__str__()
        return f"{base}\n\nOriginal traceback:\n{self.traceback_text}" if self.traceback_text else base

    def __reduce__(self):  # the traceback text travels too
        return (WorkerError, (self.args[0], self.traceback_text))


def _rebuild_task_error(message: str, item_index: int, traceback_text: str) -> TaskError:
    return TaskError(message, item_index=item_index, traceback_text=traceback_text)
