"""Where a sweep's runs train: ``serial`` (this process), ``pool`` (local worker processes) or ``ray``.

Chosen per build, without editing a notebook, by environment variables that :func:`optbench.sweeps.run_sweep`
reads (and checks before anything trains):

- ``OPTBENCH_EXECUTOR``: ``serial``, ``pool`` or ``ray``. Unset: where a pool can be faster (runs on the
  CPU, two or more missing, cores for two workers), the first run trains in this process, timed, and a
  pool takes over if the rest would take ``POOL_AFTER_SECONDS`` or more one at a time; else ``serial``.
- ``OPTBENCH_WORKERS``: the pool's worker processes (default: cores // threads per run), or the most runs
  a Ray cluster trains at once (default: what its CPUs, or GPUs, allow).
- ``OPTBENCH_RAY_ADDRESS``: the Ray cluster to use (``host:port``, ``ray://host:port`` or ``auto``);
  unset, ``ray`` starts a local instance on the loopback interface for the sweep and stops it after.
- ``OPTBENCH_NUM_THREADS``: torch's CPU threads per run (default 1), the same whatever the backend; a
  pool's workers × threads never exceed the cores.

Every backend trains a run with the same code (:func:`train_task`) and the same thread count, so the same
configuration gives bit-identical metrics on the CPU whichever trains it. A worker only computes: it
returns the record, and the driver (:func:`optbench.sweeps.run_sweep`) writes it into the store, so
workers on other machines need not share the driver's disk. A worker that dies costs its run one
attempt of ``max_retries + 1``; the retry resumes from the run's checkpoint where the worker can read it.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import warnings
from pathlib import Path

EXECUTORS = ("serial", "pool", "ray")
EXECUTOR_VARIABLE = "OPTBENCH_EXECUTOR"
WORKERS_VARIABLE = "OPTBENCH_WORKERS"
RAY_ADDRESS_VARIABLE = "OPTBENCH_RAY_ADDRESS"
THREADS_VARIABLE = "OPTBENCH_NUM_THREADS"
#: a run whose worker died is tried again this many times before the sweep gives up
MAX_RETRIES = 2
#: the default switches to a pool when the runs left would take this long in one process
POOL_AFTER_SECONDS = 20.0
#: how to get the optional Ray backend
RAY_INSTALL = "pip install -e '.[ray]' in the optbench checkout (or pip install 'ray>=2.40')"
_RAY_ADDRESS = re.compile(r"^(ray://)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")


class ExecutorUnavailableError(RuntimeError, ValueError):
    """The chosen backend cannot run here: Ray not installed, no cluster at the address, no GPU in it."""


class WorkerDiedWarning(UserWarning):
    """A worker died while training a run; the run is tried again (from its checkpoint where there is one)."""


class RunFailedError(RuntimeError):
    """A run's worker died on every attempt; no record of it was written."""


def require_ray():
    """The ``ray`` module, or :class:`ExecutorUnavailableError` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ExecutorUnavailableError(
            f"executor 'ray' needs the Ray package, which is not installed: {RAY_INSTALL}; "
            "or choose another executor: serial, pool"
        ) from None
    return ray


@dataclasses.dataclass(frozen=True)
class ExecutorSettings:
    """Which backend trains a sweep's runs and how; ``name`` None chooses by the default rule (see the module)."""

    name: str | None = None
    workers: int | None = None
    ray_address: str | None = None
    max_retries: int = MAX_RETRIES
    #: unset executor: switch from serial to a pool when the runs left would take this long serially
    pool_after_seconds: float = POOL_AFTER_SECONDS

    def __post_init__(self):
        check_executor_name(self.name, "executor")
        if self.workers is not None and (not isinstance(self.workers, int) or isinstance(self.workers, bool) or self.workers < 1):
            raise ValueError(f"invalid workers {self.workers!r}: give an integer >= 1")
        if self.ray_address is not None:
            check_ray_address(self.ray_address, "ray_address")
            if self.name != "ray":
                raise ValueError(
                    f"a Ray address ({self.ray_address!r}) is given but the executor is {self.name or 'unset'!r}: "
                    f"set {EXECUTOR_VARIABLE}=ray to use the cluster, or unset {RAY_ADDRESS_VARIABLE}"
                )
        if not isinstance(self.max_retries, int) or isinstance(self.max_retries, bool) or self.max_retries < 0:
            raise ValueError(f"invalid max_retries {self.max_retries!r}: give an integer >= 0")
        if isinstance(self.pool_after_seconds, bool) or not isinstance(self.pool_after_seconds, (int, float)) or not self.pool_after_seconds >= 0:
            raise ValueError(f"invalid pool_after_seconds {self.pool_after_seconds!r}: give a number of seconds >= 0")


def check_executor_name(name: object, what: str = EXECUTOR_VARIABLE) -> None:
    """Raise ``ValueError`` unless ``name`` is None or one of :data:`EXECUTORS`."""
    if name is not None and name not in EXECUTORS:
        raise ValueError(f"invalid {what} {name!r}: allowed {', '.join(EXECUTORS)}")


def check_ray_address(address: str, what: str = RAY_ADDRESS_VARIABLE) -> None:
    """Raise ``ValueError`` unless ``address`` is ``auto``, ``host:port`` or ``ray://host:port``."""
    match = _RAY_ADDRESS.match(address)
    if address != "auto" and (match is None or not 1 <= int(match.group(3)) <= 65535):
        raise ValueError(
            f"invalid {what} {address!r}: give 'host:port' (the head node's GCS port, e.g. '10.0.0.5:6379'), "
            "'ray://host:port' (a Ray client server) or 'auto' (the cluster this machine belongs to)"
        )


def _variable(name: str) -> str | None:
    """An environment variable's value; set but empty counts as unset."""
    value = os.environ.get(name)
    return value if value else None


def settings_from_environment(executor: "str | ExecutorSettings | None" = None) -> ExecutorSettings:
    """The settings of ``executor`` (a name, settings, or None for ``$OPTBENCH_EXECUTOR``), completed from
    the environment; raise ``ValueError`` naming a bad variable and what it allows."""
    if isinstance(executor, ExecutorSettings):
        return executor
    check_executor_name(executor, "executor")
    name = executor if executor is not None else _variable(EXECUTOR_VARIABLE)
    check_executor_name(name, EXECUTOR_VARIABLE)
    workers = _variable(WORKERS_VARIABLE)
    if workers is not None and (not workers.isdigit() or int(workers) < 1):
        raise ValueError(f"invalid {WORKERS_VARIABLE} {workers!r}: it must be an integer >= 1")
    address = _variable(RAY_ADDRESS_VARIABLE)
    if address is not None:
        check_ray_address(address)
        if executor is None and name != "ray":  # the environment contradicts itself; a caller's choice wins
            raise ValueError(
                f"{RAY_ADDRESS_VARIABLE} is set ({address!r}) but {EXECUTOR_VARIABLE} is {name or 'unset'!r}: set "
                f"{EXECUTOR_VARIABLE}=ray to use the cluster, or unset {RAY_ADDRESS_VARIABLE}; allowed executors: "
                f"{', '.join(EXECUTORS)}"
            )
        if name != "ray":
            address = None
    return ExecutorSettings(name, int(workers) if workers is not None else None, address)


def threads_per_run() -> int:
    """``$OPTBENCH_NUM_THREADS``, else 1: torch's CPU threads for each run, whatever the backend."""
    from ..training import check_environment

    check_environment()
    value = _variable(THREADS_VARIABLE)
    return int(value) if value is not None else 1


def available_cores() -> int:
    """CPU cores this process may use: its affinity mask, capped by a cgroup CPU quota if there is one."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def check_environment() -> ExecutorSettings:
    """Check every environment variable the executors read (for ``check-profile`` and before a build).

    Returns the settings; raises ``ValueError`` naming the bad value and what is allowed.
    """
    return check_settings(settings_from_environment())


def check_settings(settings: ExecutorSettings) -> ExecutorSettings:
    """Raise now what starting ``settings`` would: a pool larger than the cores, Ray not installed."""
    threads = threads_per_run()
    if settings.name in (None, "pool") and settings.workers is not None:  # the default may start a pool too
        check_pool_size(settings.workers, threads)
    if settings.name == "ray":
        require_ray()
    return settings


def check_pool_size(workers: int, threads: int) -> None:
    """Raise ``ValueError`` if ``workers`` × ``threads`` exceed the cores."""
    cores = available_cores()
    if workers * threads > cores:
        raise ValueError(
            f"{WORKERS_VARIABLE} {workers} × {THREADS_VARIABLE} {threads} = {workers * threads} threads exceed the "
            f"{cores} cores here: allowed at most {max(1, cores // threads)} workers of {threads} thread(s)"
        )


@dataclasses.dataclass(frozen=True)
class RunTask:
    """One run for a worker: plain data, so that it can travel to another process or machine."""

    run_id: str
    config: dict
    device: str | None
    #: where the run checkpoints and resumes from; None for no checkpoints
    checkpoint_path: str | None
    checkpoint_every: int | None
    num_threads: int
    attempt: int = 1

    def retry(self) -> "RunTask":
        return dataclasses.replace(self, attempt=self.attempt + 1)


@dataclasses.dataclass(frozen=True)
class Finished:
    """A run that trained: its record (not yet sealed) and the warnings it raised in the worker."""

    record: dict
    warnings: tuple = ()
    #: the backend that trained it (``serial``, ``pool``, ``ray``), noted in the record's provenance
    executor: str = ""


@dataclasses.dataclass(frozen=True)
class WorkerDied:
    """The process that trained a run ended without an answer (killed, out of memory, node lost)."""

    reason: str


@dataclasses.dataclass(frozen=True)
class Failed:
    """The run raised an error (a bug, bad data): the sweep stops and raises it."""

    error: BaseException


def train_task(task: RunTask, in_worker: bool = True) -> Finished:
    """Train ``task`` here and return its record: what every worker of every backend runs.

    Checks that this process's optbench gives the configuration the driver's id (a cluster running other
    code would otherwise fill the store with records of other configurations). In a worker process
    (``in_worker``) the thread count is also made the one :func:`optbench.training.configure_threads`
    applies, and warnings are collected to be re-raised in the driver; the serial backend's own process
    keeps its environment and lets warnings through.
    """
    import torch

    from ..config import RunConfig
    from ..training import train

    config = RunConfig.from_dict(task.config)
    if config.run_id != task.run_id:
        raise RuntimeError(
            f"this worker's optbench gives run {task.run_id} the id {config.run_id}: it runs other code than the "
            "driver; install the driver's version of optbench on every worker"
        )
    if in_worker:
        os.environ[THREADS_VARIABLE] = str(task.num_threads)
    torch.set_num_threads(task.num_threads)
    with warnings.catch_warnings(record=in_worker) as caught:
        if in_worker:
            warnings.simplefilter("always")
        record = train(config, device=task.device, progress=False, checkpoint_path=task.checkpoint_path,
                       checkpoint_every=task.checkpoint_every)
    return Finished(record, tuple((item.category, str(item.message)) for item in caught or ()))


class Session:
    """A started backend: takes runs while it has room, answers each when it ends (see :func:`open_session`)."""

    #: the backend's name, noted in each record's provenance
    name: str = ""
    #: runs it trains at once
    capacity: int = 1
    description: str = ""
    #: the device the workers train on, as the tasks name it (None: CUDA if the worker has it, else the CPU)
    task_device: str | None = None

    def submit(self, task: RunTask) -> None:
        raise NotImplementedError

    def wait(self) -> tuple[RunTask, Finished | WorkerDied | Failed]:
        """Block until a submitted run ends; return it with its outcome."""
        raise NotImplementedError

    @property
    def in_flight(self) -> int:
        raise NotImplementedError

    def close(self) -> None:
        """Stop the workers; runs still in flight are abandoned (their checkpoints stay for a resume).
        Closing twice does nothing more."""


def choose(settings: ExecutorSettings, num_runs: int, device) -> str:
    """The backend for ``num_runs`` missing runs on ``device`` (a resolved torch device): the one the
    settings name, else ``auto`` (serial, then maybe a pool) on a CPU with cores for two workers, else serial."""
    if settings.name is not None:
        return settings.name
    if device.type != "cpu" or num_runs < 2:
        return "serial"
    workers = settings.workers or available_cores() // threads_per_run()
    return "auto" if workers >= 2 else "serial"


def open_session(settings: ExecutorSettings, name: str, num_runs: int, device_argument, device) -> Session:
    """Start backend ``name`` (see :func:`choose`) for ``num_runs`` runs: ``device_argument`` is the sweep's
    ``device`` (None: CUDA if the worker has it), ``device`` what it resolves to here."""
    from .serial import AutoSession, SerialSession

    threads = threads_per_run()
    if name == "serial":
        return SerialSession(threads, None if device_argument is None else str(device_argument))
    if name == "auto":
        return AutoSession(settings, threads, num_runs, device_argument, device)
    if name == "pool":
        from .pool import PoolSession

        return PoolSession(settings, threads, num_runs, device)
    from .ray_tasks import RaySession

    return RaySession(settings, threads, num_runs, device_argument)


def reraise_warnings(finished: Finished) -> None:
    """Raise in this process the warnings a worker collected while training."""
    for category, message in finished.warnings:
        warnings.warn(message, category, stacklevel=3)


def describe_exit(exitcode: int | None) -> str:
    """Why a process ended, in words: ``killed by signal SIGKILL``, ``exit status 3``."""
    import signal

    if exitcode is None:
        return "ended without an exit status"
    if exitcode < 0:
        try:
            return f"killed by signal {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit status {exitcode}"

