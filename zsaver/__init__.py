"""zsaver: persist the results of long batch jobs into chunked arrays, crash-safely.

Example:
    >>> import numpy as np, zsaver
    >>> with zsaver.ZarrSaver(zarr.storage.MemoryStore(), "result") as s:  # doctest: +SKIP
    ...     s.save(np.zeros((10, 3)))
"""

from zsaver import errors
from zsaver.errors import ResumeMismatchError, TaskError, ZsaverError
from zsaver.savers import APPROACHES, HDF5Saver, Saver, ZarrSaver
from zsaver.tasks import ItemFailure, Task, TaskManager, TaskReport

__version__ = "0.1.0"

__all__ = [
    "APPROACHES",
    "HDF5Saver",
    "ItemFailure",
    "ResumeMismatchError",
    "Saver",
    "Task",
    "TaskError",
    "TaskManager",
    "TaskReport",
    "ZarrSaver",
    "ZsaverError",
    "__version__",
    "errors",
]
