"""Grids of run configurations, and running only what the store is missing, on the chosen backend."""

from __future__ import annotations

import collections
import os
import itertools
import warnings
from typing import Any, Iterable

import torch
from .progress import progress_bar

from . import executors
from .checkpoints import check_checkpoint_every
from .config import RunConfig
from .executors import ExecutorSettings, Failed, Finished, RunTask, WorkerDied
from .store import HeldLock, ResultsStore, remove_temporary_files
from .training import preflight, resolve_device


def expand_grid(base: dict[str, Any], **axes: Iterable[Any]) -> list[RunConfig]:
    """Every combination of ``axes`` applied to ``base``.

    An axis named like a run setting (``optimizer``, ``seed``, ``num_epochs``, ...) sets it; any other axis
    name is an optimizer hyperparameter (``lr``, ``p``, ``momentum``, ...). All configurations are built,
    and so validated, before anything runs.
    """
    settings = set(RunConfig.__dataclass_fields__)
    names = list(axes)
    configs = []
    for values in itertools.product(*(list(axes[name]) for name in names)):
        values_by_name = dict(zip(names, values))
        config = {key: value for key, value in base.items()}
        config["hyperparameters"] = dict(base.get("hyperparameters", {}))
        for name, value in values_by_name.items():
            if name in settings:
                config[name] = value
            else:
                config["hyperparameters"][name] = value
        configs.append(RunConfig.from_dict(config))
    return configs


def run_sweep(
    configs: Iterable[RunConfig],
    store: ResultsStore | None = None,
    force: bool = False,
    device: torch.device | str | None = None,
    progress: bool = True,
    description: str = "runs",
    checkpoint_every: int | None = 1,
    executor: str | ExecutorSettings | None = None,
) -> list[dict]:
    """Records of ``configs`` in order: those in the store are loaded, the missing ones trained.

    ``executor`` picks the backend (``"serial"``, ``"pool"``, ``"ray"`` or :class:`ExecutorSettings`);
    None reads ``$OPTBENCH_EXECUTOR`` and its companions (see :mod:`optbench.executors`). Every backend
    gives the same records. Everything a run needs (settings, environment, data, device, model shapes, a
    writable store, the backend itself) is checked before the first run trains. The progress bar counts
    runs as they finish.

    Killed and started again (on any backend), a sweep keeps its finished records and resumes the
    interrupted runs from their checkpoints. Several processes may sweep overlapping grids into one store:
    a run another process is training is left for later and then loaded, never trained twice. A diverged
    run is recorded as such and the sweep goes on. A corrupt record is moved aside and recomputed; a stale
    one (made by older code, see :mod:`optbench.records`) is reported and its configuration recomputed.
    """
    configs = list(configs)
    for config in configs:
        config.validate()
    check_checkpoint_every(checkpoint_every)
    settings = executors.check_settings(executors.settings_from_environment(executor))
    store = store if store is not None else ResultsStore()
    unique = {config.run_id: config for config in configs}
    # each file is read and judged once; nothing is moved or reported until the sweep is known to run
    entries = {} if force else {run_id: store.inspect(run_id) for run_id in unique}
    records = {run_id: entry.record for run_id, entry in entries.items() if entry is not None and entry.intact}
    missing = [run_id for run_id in unique if run_id not in records]
    if not missing:
        return [records[config.run_id] for config in configs]
    preflight([unique[run_id] for run_id in missing], device)
    store.check_writable()
    name = executors.choose(settings, len(missing), resolve_device(device))
    session = executors.open_session(settings, name, len(missing), device, resolve_device(device))
    try:  # the backend is up: only now are bad files reported (and corrupt ones moved aside) as recomputed
        for run_id in missing:
            if entries.get(run_id) is not None:
                store.set_aside(entries[run_id], recomputed=True)
        for entry in store.entries(["stale"]):  # records of these configurations made by older code
            if entry.current_id in missing:
                store.set_aside(entry, recomputed=True)
        with progress_bar(total=len(missing), desc=f"{description} ({len(records)} of {len(unique)} stored)",
                  postfix=session.description, disable=not progress) as bar:
            _Driver(store, unique, session, settings, force, checkpoint_every, records, bar).run(missing)
    finally:
        session.close()
    return [records[config.run_id] for config in configs]


class _Driver:
    """Hands a session the missing runs while it has room, and writes each record the workers return;
    closes the session at the end.

    A run is given out only under its store lock (held here, in the driver, until its record is written),
    so another process sweeping the same store waits for it instead of training it too.
    """

    def __init__(self, store, unique, session, settings, force, checkpoint_every, records, bar):
        self.store, self.unique, self.session, self.settings = store, unique, session, settings
        self.force, self.checkpoint_every, self.records, self.bar = force, checkpoint_every, records, bar
        self.held: dict[str, HeldLock] = {}
        self.threads = executors.threads_per_run()

    def run(self, missing: list[str]) -> None:
        pending, deferred = collections.deque(missing), []
        try:
            while pending or deferred or self.session.in_flight:
                if pending and self.session.in_flight < self.session.capacity:
                    self._start(pending.popleft(), deferred, blocking=False)
                elif self.session.in_flight:
                    self._settle(*self.session.wait())
                else:  # all that is left is being trained by another process: wait for it, then load
                    self._start(deferred.pop(0), deferred, blocking=True)
        finally:
            # workers first (a run still in flight is abandoned; its checkpoint stays for a resume), then what
            # a killed worker may have been writing, then the locks
            self.session.close()
            for run_id, lock in self.held.items():
                remove_temporary_files(self.store.checkpoint_path(run_id))
                lock.release()
            self.held.clear()

    def _start(self, run_id: str, deferred: list[str], blocking: bool) -> None:
        lock = self.store.acquire_lock(run_id, blocking=blocking)
        if lock is None:
            deferred.append(run_id)
            return
        if not self.force:  # another process may have written it since the sweep looked
            record = self.store.load(run_id, recompute=True)
            if record is not None:
                lock.release()
                self._done(run_id, record)
                return
        self.held[run_id] = lock
        checkpoint = self.store.checkpoint_path(run_id)
        if self.force:
            checkpoint.unlink(missing_ok=True)
        remove_temporary_files(checkpoint)  # what a writer killed mid-write left
        # absolute: a worker need not share the driver's working directory
        self.session.submit(RunTask(run_id, self.unique[run_id].to_dict(), self.session.task_device, os.path.abspath(checkpoint),
                                    self.checkpoint_every, self.threads))

    def _settle(self, task: RunTask, outcome) -> None:
        if isinstance(outcome, Finished):
            executors.reraise_warnings(outcome)
            record = dict(outcome.record)
            record["provenance"] = {**record["provenance"], "executor": outcome.executor}
            self.store.save(record)
            # only now: a crash between the two leaves a record and a stale checkpoint, never neither
            checkpoint = self.store.checkpoint_path(task.run_id)
            checkpoint.unlink(missing_ok=True)
            remove_temporary_files(checkpoint)
            saved = self.store.load(task.run_id)
            if saved is None:
                raise RuntimeError(f"the record of {task.run_id} could not be read back from {self.store.path_for(task.run_id)}")
            self.held.pop(task.run_id).release()
            self._done(task.run_id, saved)
        elif isinstance(outcome, WorkerDied):
            attempts = self.settings.max_retries + 1
            if task.attempt >= attempts:
                raise executors.RunFailedError(
                    f"run {task.run_id} failed {task.attempt} time(s): {outcome.reason}; no record was written (its "
                    "checkpoint, if any, is kept, so running the sweep again resumes it)"
                )
            warnings.warn(
                f"run {task.run_id}: {outcome.reason}; trying it again (attempt {task.attempt + 1} of {attempts}), "
                "from its last checkpoint where the worker left one",
                executors.WorkerDiedWarning, stacklevel=2,
            )
            remove_temporary_files(self.store.checkpoint_path(task.run_id))  # what the dead worker was writing
            self.session.submit(task.retry())
        elif isinstance(outcome, Failed):
            raise outcome.error
        else:  # pragma: no cover
            raise TypeError(f"unknown outcome {outcome!r}")

    def _done(self, run_id: str, record: dict) -> None:
        self.records[run_id] = record
        self.bar.set_postfix_str(self.session.description, refresh=False)  # the default may have switched
        self.bar.update(1)
