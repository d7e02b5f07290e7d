"""The dask.distributed adapter: a Client seen through the concurrent.futures protocol.

Imported only when a Client is passed as ``executor``, so dask stays optional.
"""

from __future__ import annotations

import concurrent.futures as cf
from collections.abc import Callable
from typing import Any

from distributed import Client
from distributed.scheduler import KilledWorker


class DaskExecutor:
    """``submit`` returns a plain :class:`concurrent.futures.Future` mirroring the dask one.

    Example:
        >>> ex = DaskExecutor(client)  # doctest: +SKIP
        >>> ex.submit(pow, 2, 10).result()  # doctest: +SKIP
        1024
    """

    def __init__(self, client: Client) -> None:
        self.client = client

    @property
    def n_workers(self) -> int:
        """Threads over all workers: how many batches run at once."""
        workers = self.client.scheduler_info().get("workers", {})
        return max(1, sum(int(w.get("nthreads", 1)) for w in workers.values()))

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> cf.Future:
        mirror: cf.Future = cf.Future()
        mirror.set_running_or_notify_cancel()
        # pure=False: two batches with equal arguments are still two computations.
        dask_future = self.client.submit(fn, *args, pure=False)

        def relay(done: Any) -> None:
            try:
                mirror.set_result(done.result())
            except BaseException as exc:
                mirror.set_exception(exc)

        dask_future.add_done_callback(relay)
        mirror.dask_future = dask_future  # type: ignore[attr-defined]  # keeps it alive
        return mirror

    @staticmethod
    def is_worker_death(exc: BaseException) -> bool:
        return isinstance(exc, KilledWorker)

    def shutdown(self, wait: bool = True) -> None:
        """The Client belongs to the caller: nothing to do."""


__all__ = ["DaskExecutor"]
