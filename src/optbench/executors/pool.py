"""The ``pool`` backend: worker processes on this machine, each training one run at a time.

Each worker is a fresh ``python -m optbench.executors.pool`` process talking to the driver over a socket
pair: it never re-imports the driver's main script (as multiprocessing's spawn and fork server do, which
breaks scripts without an ``if __name__ == "__main__"`` guard) and never inherits the driver's threads
(as a fork would). Each gets the sweep's thread count, and on CUDA one GPU of its own; the driver sends
it one run at a time and knows which run a dead worker was training. Workers ignore Ctrl-C (the driver
stops them) and, on Linux, die with the driver, so a killed sweep leaves none behind.

Starting a worker costs seconds (Python, torch, the dataset), so idle workers are kept for the next
sweep of the same process (a notebook runs several) as long as the environment and working directory
are unchanged; they stop when the process exits, or at :func:`stop_idle_workers`.
"""

from __future__ import annotations

import atexit
import dataclasses
import multiprocessing.connection
import os
import signal
import socket
import subprocess
import sys

from . import (
    THREADS_VARIABLE,
    ExecutorSettings,
    Failed,
    Finished,
    RunTask,
    Session,
    WorkerDied,
    available_cores,
    check_pool_size,
    describe_exit,
    train_task,
)


def _die_with_parent(parent: int) -> None:
    """Ask Linux to kill this process when its parent ends (a SIGKILLed driver cannot stop its workers)."""
    if sys.platform.startswith("linux"):
        import ctypes

        set_parent_death_signal = 1  # PR_SET_PDEATHSIG
        ctypes.CDLL(None, use_errno=True).prctl(set_parent_death_signal, signal.SIGKILL)
    if os.getppid() != parent:  # the parent ended before the request took effect
        os._exit(1)


def _serve(descriptor: int, parent: int) -> None:
    """A worker's life: train each run the driver sends, send back its outcome, until the socket closes."""
    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group; the driver decides
    os.set_inheritable(descriptor, False)  # processes this one starts must not hold the driver's socket open
    connection = multiprocessing.connection.Connection(descriptor)
    from .. import training  # noqa: F401  (torch loads once, before the first run)

    while True:
        try:
            task = connection.recv()
        except (EOFError, OSError):
            return
        try:
            outcome = train_task(task)
        except Exception as error:
            outcome = Failed(error)
        try:
            connection.send(outcome)
        except Exception:  # an error that cannot travel: send its words instead
            error = outcome.error if isinstance(outcome, Failed) else None
            connection.send(Failed(RuntimeError(f"{type(error).__name__}: {error}")))


class _Worker:
    def __init__(self, num_threads: int, gpu: str | None):
        ours, theirs = socket.socketpair()
        environment = {**os.environ, THREADS_VARIABLE: str(num_threads)}
        if gpu is not None:  # before CUDA starts in the worker: it sees one GPU, as "cuda"
            environment["CUDA_VISIBLE_DEVICES"] = gpu
        with theirs:
            self.process = subprocess.Popen(
                [sys.executable, "-m", __name__, str(theirs.fileno()), str(os.getpid())],
                pass_fds=[theirs.fileno()], env=environment, stdin=subprocess.DEVNULL,
            )
        self.connection = multiprocessing.connection.Connection(ours.detach())
        self.task: RunTask | None = None
        self.key = _worker_key(num_threads, gpu)

    def stop(self) -> None:
        if self.task is not None:  # a run in flight: its checkpoint stays for the next attempt
            self.process.kill()
        self.connection.close()  # an idle worker reads end-of-file and returns
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


#: idle workers kept between sweeps, by what they were started with
_idle_workers: dict[tuple, list[_Worker]] = {}


#: environment variables only the driver reads (or pytest sets per test): a change keeps warm workers usable
_DRIVER_ONLY = {"OPTBENCH_RESULTS_DIR", "OPTBENCH_EXECUTOR", "OPTBENCH_WORKERS", "OPTBENCH_RAY_ADDRESS", "PYTEST_CURRENT_TEST"}


def _worker_key(num_threads: int, gpu: str | None) -> tuple:
    environment = tuple(sorted((name, value) for name, value in os.environ.items() if name not in _DRIVER_ONLY))
    return num_threads, gpu, os.getcwd(), environment


def _take_worker(num_threads: int, gpu: str | None) -> _Worker:
    idle = _idle_workers.get(_worker_key(num_threads, gpu), [])
    while idle:
        worker = idle.pop()
        if worker.process.poll() is None:
            return worker
        worker.stop()
    return _Worker(num_threads, gpu)


def has_idle_workers(num_threads: int) -> bool:
    """Whether workers of ``num_threads`` threads (CPU) from an earlier sweep are waiting, started and warm."""
    return any(worker.process.poll() is None for worker in _idle_workers.get(_worker_key(num_threads, None), []))


@atexit.register
def stop_idle_workers() -> None:
    """Stop the workers kept from earlier sweeps."""
    for idle in _idle_workers.values():
        while idle:
            idle.pop().stop()
    _idle_workers.clear()


def _visible_gpus(device) -> list[str]:
    """The GPUs a pool may use, as CUDA_VISIBLE_DEVICES entries: all visible ones, or the one ``device`` names."""
    import torch

    inherited = os.environ.get("CUDA_VISIBLE_DEVICES")
    visible = [item.strip() for item in inherited.split(",")] if inherited else [str(i) for i in range(torch.cuda.device_count())]
    return [visible[device.index]] if device.index is not None else visible


class PoolSession(Session):
    """Local worker processes: ``workers`` × threads per run ≤ cores; on CUDA one worker per GPU."""

    def __init__(self, settings: ExecutorSettings, num_threads: int, num_runs: int, device):
        workers = settings.workers or max(1, available_cores() // num_threads)
        check_pool_size(workers, num_threads)
        self._gpus = _visible_gpus(device) if device.type == "cuda" else None
        if self._gpus is not None:
            workers = min(workers, len(self._gpus))
        self.name, self.capacity = "pool", max(1, min(workers, num_runs))
        self.task_device = "cuda" if self._gpus is not None else "cpu"
        self.description = f"pool ({self.capacity} worker processes × {num_threads} thread(s) each)"
        self._num_threads = num_threads
        self._workers: list[_Worker | None] = [None] * self.capacity

    def _gpu(self, slot: int) -> str | None:
        return self._gpus[slot] if self._gpus is not None else None

    def submit(self, task: RunTask) -> None:
        slot = next(index for index, worker in enumerate(self._workers) if worker is None or worker.task is None)
        if self._workers[slot] is None:
            self._workers[slot] = _take_worker(self._num_threads, self._gpu(slot))
        worker = self._workers[slot]
        try:
            worker.connection.send(task)
        except OSError:  # it died while idle (out of memory, say): a fresh one takes the run
            worker.stop()
            worker = self._workers[slot] = _Worker(self._num_threads, self._gpu(slot))
            worker.connection.send(task)
        worker.task = task

    @property
    def in_flight(self) -> int:
        return sum(1 for worker in self._workers if worker is not None and worker.task is not None)

    def wait(self):
        busy = [worker for worker in self._workers if worker is not None and worker.task is not None]
        if not busy:
            raise RuntimeError("no run in flight")
        # a worker that dies closes its end of the socket: its connection becomes readable, at end-of-file
        ready = multiprocessing.connection.wait([worker.connection for worker in busy])
        worker = next(worker for worker in busy if worker.connection in ready)
        task, worker.task = worker.task, None
        try:
            outcome = worker.connection.recv()
            return task, dataclasses.replace(outcome, executor="pool") if isinstance(outcome, Finished) else outcome
        except (EOFError, OSError):
            pass  # the process is gone (or going)
        except Exception as error:  # an answer that arrived but cannot be read back
            return task, Failed(RuntimeError(f"the worker's answer could not be read: {type(error).__name__}: {error}"))
        self._workers[self._workers.index(worker)] = None  # a fresh worker takes the slot's next run
        worker.stop()
        return task, WorkerDied(f"worker process {worker.process.pid} {describe_exit(worker.process.returncode)}")

    def close(self) -> None:
        """Stop the workers with a run in flight; keep the idle ones for the next sweep."""
        workers, self._workers = [w for w in self._workers if w is not None], [None] * self.capacity
        for worker in workers:
            if worker.task is None and worker.process.poll() is None:
                _idle_workers.setdefault(worker.key, []).append(worker)
            else:
                worker.stop()


if __name__ == "__main__":
    _serve(int(sys.argv[1]), int(sys.argv[2]))
