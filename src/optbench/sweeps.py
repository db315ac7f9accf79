"""Grids of run configurations, and running only what the store is missing."""

from __future__ import annotations

import itertools
from typing import Any, Iterable

import torch
from .progress import progress_bar

from .checkpoints import check_checkpoint_every
from .config import RunConfig
from .runs import run
from .store import ResultsStore
from .training import preflight


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
) -> list[dict]:
    """Records of ``configs`` in order: those in the store are loaded, the missing ones trained.

    Everything a run needs (settings, data, device, model shapes) is checked before the first run trains.
    Killed and started again, a sweep keeps its finished records and resumes the interrupted run from its
    checkpoint. Several processes may sweep overlapping grids into one store: a run another process is
    training is left for later and then loaded, never trained twice. A diverged run is recorded as such
    and the sweep goes on.
    """
    configs = list(configs)
    for config in configs:
        config.validate()
    check_checkpoint_every(checkpoint_every)
    store = store if store is not None else ResultsStore()
    unique = {config.run_id: config for config in configs}
    # records loaded here are kept: each is read and verified once
    records = {} if force else {run_id: record for run_id in unique if (record := store.load(run_id)) is not None}
    missing = set(unique) - set(records)
    preflight([unique[run_id] for run_id in missing], device)
    busy = []
    bar = progress_bar(total=len(missing), desc=f"{description} ({len(unique) - len(missing)} of {len(unique)} stored)", disable=not progress or not missing)

    def settle(run_id: str, wait: bool) -> None:
        # one bar for the sweep; per-epoch bars of each run would drown it
        record = run(unique[run_id], store, force=force, device=device, progress=False,
                     checkpoint_every=checkpoint_every, wait=wait)
        if record is None:
            busy.append(run_id)
            return
        records[run_id] = record
        bar.update(1)

    for run_id in unique:
        if run_id in missing:
            settle(run_id, wait=False)
    # runs another process was training: by now most are done, and waiting for the rest loads them
    for run_id in list(busy):
        settle(run_id, wait=True)
    bar.close()
    return [records[config.run_id] for config in configs]
