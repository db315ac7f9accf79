"""Grids of run configurations, and running only what the store is missing."""

from __future__ import annotations

import itertools
from typing import Any, Iterable

import torch
from tqdm.auto import tqdm

from .config import RunConfig
from .runs import run
from .store import ResultsStore


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
) -> list[dict]:
    """Records of ``configs`` in order: those in the store are loaded, the missing ones trained."""
    configs = list(configs)
    for config in configs:
        config.validate()
    store = store if store is not None else ResultsStore()
    missing = {config.run_id for config in configs if force or config.run_id not in store}
    records, seen = [], {}
    bar = tqdm(total=len(missing), desc=f"{description} ({len(configs) - len(missing)} of {len(configs)} stored)", disable=not progress or not missing)
    for config in configs:
        if config.run_id not in seen:
            # one bar for the sweep; per-epoch bars of each run would drown it
            seen[config.run_id] = run(config, store, force=force, device=device, progress=False)
            if config.run_id in missing:
                bar.update(1)
        records.append(seen[config.run_id])
    bar.close()
    return records
