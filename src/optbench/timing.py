"""Interleaved timing of training steps: what the chapters' cost figures and timing claims rest on.

The seconds in run records come from runs trained at different moments (or side by side on a process
pool), so whatever else the machine did enters them. Cost comparisons instead time every optimizer in one
process, in rounds: each round runs, for every optimizer in an order shuffled per round, a warm-up step and
then ``steps`` timed training steps on the same batch (plus SVRG's full-gradient snapshot over the
training split, timed once per round, since it is part of its epoch). An optimizer whose steps cost
differently in a repeating pattern (AdaHessian with ``hessian_every = k`` estimates the Hessian at one step
in k) has each timed step made of k consecutive steps, divided by k, so that its median is the mean cost of
the pattern and not the cost of its commonest step. Rounds pair the measurements: a slow moment of the machine slows
every optimizer of that round, and the round-to-round spread is the noise the timing claims respect
(:mod:`optbench.verdicts`).

A measurement is stored in the results store (``timings/<key>.json``, the key a hash of the configurations
and the measurement's settings), so executing a chapter again reuses it rather than measuring anew.
"""

from __future__ import annotations

import hashlib
import platform
import random
import statistics
import time

import pandas as pd
import torch
import torch.nn.functional as F

from . import data, protocol
from .checks import check_count
from .config import RunConfig, canonical_json
from .progress import progress_bar
from .store import ResultsStore, load_measurement, save_measurement
from .training import batch_inputs, configure_threads, full_gradient, new_run, precision_context, resolve_device

#: 2: optimizers with a ``hessian_every`` pattern are timed over whole patterns; 3: a round's step time is
#: the median of its steps (the upper middle one before, for an even count)
TIMING_SCHEMA = 3
#: the columns of a stored timing measurement
TIMING_COLUMNS = ["label", "round", "seconds_per_step", "seconds_per_epoch"]


class _Stepper:
    """One optimizer ready to take training steps on a fixed batch of its configuration's data."""

    def __init__(self, config: RunConfig, device: torch.device):
        self.state = state = new_run(config, device)
        protocol.call_epoch_hook(state.optimizer, 0, config.num_epochs)
        first = data.epoch_batches(len(state.train_labels), config.batch_size, state.generator, config.augment, device)[0]
        self.inputs, self.targets = batch_inputs(state, first)
        self.steps_per_epoch = -(-len(state.train_labels) // config.batch_size)
        # steps whose costs repeat with this period (a Hessian estimate every k steps) are timed in whole periods
        self.period = int(getattr(state.optimizer, "hessian_every", 1))
        self.needs_snapshot = protocol.needs_full_gradient(state.optimizer)
        self.snapshot()

    def step(self) -> None:
        state = self.state

        def compute_loss():
            with precision_context(state.device, state.config.precision):
                logits = state.model(self.inputs)
            return F.cross_entropy(logits.float(), self.targets)

        protocol.optimizer_step(state.optimizer, compute_loss, state.model)

    def snapshot(self) -> None:
        """SVRG's full-gradient pass over the training split, as at the start of its every epoch."""
        protocol.take_snapshot_if_needed(self.state.optimizer, lambda: full_gradient(self.state))


def measurement_key(configs: dict[str, RunConfig], rounds: int, steps: int) -> str:
    """The store key of a measurement: a hash of the labelled configurations, the settings and the threads."""
    content = {
        "schema": TIMING_SCHEMA, "rounds": rounds, "steps": steps, "threads": torch.get_num_threads(),
        "torch": torch.__version__, "runs": {label: config.run_id for label, config in configs.items()},
    }
    return "timing-" + hashlib.sha256(canonical_json(content).encode()).hexdigest()[:16]


def measure_step_seconds(
    configs: dict[str, RunConfig],
    rounds: int = 5,
    steps: int = 3,
    store: ResultsStore | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
    seed: int = 0,
) -> pd.DataFrame:
    """Seconds per training step and per epoch of each labelled configuration, one row per (label, round).

    Columns: ``label``, ``round``, ``seconds_per_step`` (median of the round's ``steps`` timed steps),
    ``seconds_per_epoch`` (steps per epoch × seconds per step, plus the snapshot's time for SVRG).
    The measurement is loaded from ``store`` when it is there, else taken and stored.
    """
    check_count("rounds", rounds, 2)
    check_count("steps", steps, 1)
    if not configs:
        raise ValueError("invalid configs {}: give at least one labelled configuration to time")
    for config in configs.values():
        config.validate()
    configure_threads()
    store = store if store is not None else ResultsStore()
    path = store.root / "timings" / f"{measurement_key(configs, rounds, steps)}.json"
    stored = load_measurement(path, TIMING_SCHEMA, TIMING_COLUMNS)
    if stored is not None:
        return stored
    device = resolve_device(device)
    steppers = {label: _Stepper(config, device) for label, config in configs.items()}
    order = random.Random(seed)
    rows = []
    labels = list(steppers)
    bar = progress_bar(total=rounds * len(labels), desc="timing steps", disable=not progress, leave=False)
    for round_number in range(rounds):
        order.shuffle(labels)
        for label in labels:
            stepper = steppers[label]
            stepper.step()  # warm-up: caches, allocator, lazily built state
            durations = []
            for _ in range(steps):
                started = time.perf_counter()
                for _ in range(stepper.period):
                    stepper.step()
                _synchronize(device)
                durations.append((time.perf_counter() - started) / stepper.period)
            snapshot_seconds = 0.0
            if stepper.needs_snapshot:
                started = time.perf_counter()
                stepper.snapshot()
                _synchronize(device)
                snapshot_seconds = time.perf_counter() - started
            per_step = statistics.median(durations)
            rows.append({"label": label, "round": round_number, "seconds_per_step": per_step,
                         "seconds_per_epoch": per_step * stepper.steps_per_epoch + snapshot_seconds})
            bar.update(1)
    bar.close()
    frame = pd.DataFrame(rows)
    frame["label"] = pd.Categorical(frame["label"], categories=list(configs), ordered=True)
    frame = frame.sort_values(["label", "round"]).reset_index(drop=True)
    frame["label"] = frame["label"].astype(str)
    save_measurement(path, frame.to_dict(orient="records"), TIMING_SCHEMA,
                     {"device": str(device), "processor": platform.processor() or platform.machine(),
                      "threads": torch.get_num_threads(), "torch": torch.__version__})
    return frame


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def ratio_to(frame: pd.DataFrame, reference: str, column: str = "seconds_per_epoch") -> pd.DataFrame:
    """Per (label, round): ``column`` divided by the reference label's in the same round (paired ratios)."""
    if reference not in set(frame["label"]):
        raise ValueError(f"unknown reference {reference!r}; measured: {', '.join(dict.fromkeys(frame['label']))}")
    base = frame[frame["label"] == reference].set_index("round")[column]
    return frame.assign(ratio=frame[column].to_numpy() / frame["round"].map(base).to_numpy())


def cost_table(frame: pd.DataFrame, reference: str, column: str = "seconds_per_epoch") -> pd.DataFrame:
    """Per label: mean ``column`` and its ratio to ``reference`` (paired by round), each with a 95% bootstrap
    interval over rounds and the round-to-round spread (min–max)."""
    from .statistics import mean_interval, spread

    ratios = ratio_to(frame, reference, column)
    rows = []
    for label, group in ratios.groupby("label", sort=False):
        seconds, ratio = group[column], group["ratio"]
        row = {"label": label}
        for name, values in ((column, seconds), ("ratio", ratio)):
            mean, low, high = mean_interval(values)
            smallest, largest = spread(values)
            row.update({name: mean, f"{name}_low": low, f"{name}_high": high, f"{name}_min": smallest, f"{name}_max": largest})
        rows.append(row)
    return pd.DataFrame(rows).set_index("label")


def display_costs(costs: pd.DataFrame, reference: str, column: str = "seconds_per_epoch") -> pd.DataFrame:
    """:func:`cost_table` as text: seconds and the ratio to ``reference``, each mean [95% interval], and the ratio's range."""
    from .statistics import format_mean_interval, format_spread

    return pd.DataFrame({
        "optimizer": list(costs.index),
        "seconds per epoch": [format_mean_interval(mean, low, high, 3) for mean, low, high in
                              zip(costs[column], costs[f"{column}_low"], costs[f"{column}_high"])],
        f"ratio to {reference}": [format_mean_interval(mean, low, high, 2) for mean, low, high in
                                  zip(costs["ratio"], costs["ratio_low"], costs["ratio_high"])],
        "ratio, range over rounds": [format_spread(low, high, 2) for low, high in zip(costs["ratio_min"], costs["ratio_max"])],
    })
