"""Batch runners that compute results and checkpoint them, in item order, through any Saver."""

from zsaver.tasks._manager import TaskManager, WorkerDiedError
from zsaver.tasks._progress import CompletionRecord, ItemFingerprint, read_failures
from zsaver.tasks._report import ItemFailure, TaskReport
from zsaver.tasks._task import FunctionTask, Task

__all__ = [
    "CompletionRecord",
    "FunctionTask",
    "ItemFailure",
    "ItemFingerprint",
    "Task",
    "TaskManager",
    "TaskReport",
    "WorkerDiedError",
    "read_failures",
]
