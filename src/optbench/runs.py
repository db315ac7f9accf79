"""Run a configuration once: load its record from the store, or train it and save the record."""

from __future__ import annotations

import torch

from .config import RunConfig
from .store import ResultsStore
from .training import train


def run(
    config: RunConfig,
    store: ResultsStore | None = None,
    force: bool = False,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> dict:
    """The record of ``config``: loaded from ``store`` if it is there (unless ``force``), else trained and saved."""
    store = store if store is not None else ResultsStore()
    if not force:
        record = store.load(config.run_id)
        if record is not None:
            return record
    record = train(config, device=device, progress=progress)
    store.save(record)
    return store.load(config.run_id)
