"""The ``serial`` backend (runs one after the other in this process) and the default built on it.

The serial backend trains in the driver's own process, so its warnings and errors pass through untouched
and a notebook's Ctrl-C stops the run at once. :class:`AutoSession`, the default on a multi-core CPU,
starts serial and hands over to a pool once the sweep has shown it is long enough to gain from one.
"""

from __future__ import annotations

import dataclasses
import time

from . import ExecutorSettings, Failed, Finished, RunTask, Session, train_task


class SerialSession(Session):
    """Runs train one after the other in this process, with the sweep's thread count."""

    def __init__(self, num_threads: int, device: str | None):
        import torch

        self.name, self.task_device = "serial", device
        self.description = f"serial (this process, {num_threads} thread(s))"
        self._previous_threads = torch.get_num_threads()
        torch.set_num_threads(num_threads)
        self._queue: list[RunTask] = []

    def submit(self, task: RunTask) -> None:
        self._queue.append(task)

    @property
    def in_flight(self) -> int:
        return len(self._queue)

    def wait(self):
        task = self._queue.pop(0)
        try:
            return task, dataclasses.replace(train_task(task, in_worker=False), executor="serial")
        except Exception as error:  # KeyboardInterrupt passes: the sweep stops at once
            return task, Failed(error)

    def close(self) -> None:
        import torch

        torch.set_num_threads(self._previous_threads)


class AutoSession(Session):
    """The default on a multi-core CPU: the first run trains in this process, timed; if the runs left
    would take ``settings.pool_after_seconds`` or more that way, a pool takes over, else the sweep stays
    serial (starting workers costs a few seconds, which a sweep of tiny runs never wins back). Where an
    earlier sweep of this process left warm workers, the pool starts at once."""

    def __init__(self, settings: ExecutorSettings, num_threads: int, num_runs: int, device_argument, device):
        from .pool import PoolSession, has_idle_workers

        self._serial = self._pool = None
        if has_idle_workers(num_threads):  # an earlier sweep's workers are warm: nothing to win back
            self._pool = PoolSession(settings, num_threads, num_runs, device)
        else:
            self._serial = SerialSession(num_threads, None if device_argument is None else str(device_argument))
        self._arguments = (settings, num_threads, device)
        self._left = num_runs
        self._describe()

    def _describe(self) -> None:
        current = self._pool or self._serial
        self.name, self.capacity, self.task_device = current.name, current.capacity, current.task_device
        self.description = f"auto: {current.description}"

    def submit(self, task: RunTask) -> None:
        (self._pool or self._serial).submit(task)

    @property
    def in_flight(self) -> int:
        return (self._pool or self._serial).in_flight

    def wait(self):
        if self._pool is not None:
            return self._pool.wait()
        started = time.perf_counter()
        task, outcome = self._serial.wait()
        self._left -= 1
        settings, num_threads, device = self._arguments
        if isinstance(outcome, Finished) and self._left * (time.perf_counter() - started) >= settings.pool_after_seconds:
            from .pool import PoolSession

            self._serial.close()
            self._serial = None
            self._pool = PoolSession(settings, num_threads, self._left, device)
            self._describe()
        return task, outcome

    def close(self) -> None:
        for session in (self._serial, self._pool):
            if session is not None:
                session.close()
