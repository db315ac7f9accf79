"""Run a configuration once: load its record from the store, or train it and save the record.

Safe to interrupt and to run from several processes at once: a configuration is trained under its
store lock (one process at a time; the others wait and load the record), from its last checkpoint if
an earlier attempt was killed, and its record is written atomically before the checkpoint is deleted.
It trains in this process with the thread count of every backend (``OPTBENCH_NUM_THREADS``, default 1),
so its record equals what a sweep on any backend would make; sweeps use :func:`optbench.sweeps.run_sweep`.
"""

from __future__ import annotations

import torch

from .checkpoints import check_checkpoint_every
from .config import RunConfig
from .executors import threads_per_run
from .store import ResultsStore, remove_temporary_files
from .training import preflight, train


def run(
    config: RunConfig,
    store: ResultsStore | None = None,
    force: bool = False,
    device: torch.device | str | None = None,
    progress: bool = True,
    checkpoint_every: int | None = 1,
    wait: bool = True,
) -> dict | None:
    """The record of ``config``: loaded from ``store`` if it is there (unless ``force``), else trained and saved.

    Training resumes from the run's checkpoint in the store (``checkpoints/<run id>.pt``, written every
    ``checkpoint_every`` epochs) unless ``force``, which starts from scratch. If another process is
    training the same configuration, wait for it and load its record; with ``wait`` False, return None
    at once instead.
    """
    check_checkpoint_every(checkpoint_every)
    threads_per_run()  # OPTBENCH_NUM_THREADS checked before anything is read or trained
    store = store if store is not None else ResultsStore()
    run_id = config.run_id
    entry = None if force else store.inspect(run_id)
    if entry is not None and entry.intact:
        return entry.record
    # bad settings, a missing dataset or device, a read-only store fail here, before anything is touched
    preflight([config], device)
    store.check_writable()
    if entry is not None:  # corrupt or stale: reported (and a corrupt file moved aside) now that it is recomputed
        store.set_aside(entry, recomputed=True)
    with store.lock(run_id, blocking=wait) as held:
        if not held:
            return None
        checkpoint = store.checkpoint_path(run_id)
        if not force:
            # another process may have finished it while this one waited for the lock
            record = store.load(run_id, recompute=True)
            if record is not None:
                return record
        else:
            checkpoint.unlink(missing_ok=True)
        # files of atomic writes that a killed process left half written
        remove_temporary_files(checkpoint)
        threads = torch.get_num_threads()
        torch.set_num_threads(threads_per_run())
        try:
            record = train(config, device=device, progress=progress, checkpoint_path=checkpoint, checkpoint_every=checkpoint_every)
        finally:
            torch.set_num_threads(threads)
        store.save(record)
        # only now: a crash between the two leaves a record and a stale checkpoint, never neither
        checkpoint.unlink(missing_ok=True)
        saved = store.load(run_id)
    if saved is None:
        raise RuntimeError(f"the record of {run_id} could not be read back from {store.path_for(run_id)}")
    return saved
