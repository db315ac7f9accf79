"""What a build needs and what the results store holds: ``optbench plan``, ``status`` and ``clean --stale``.

Per chapter, the runs it plans (``Study.planned_runs`` of its final parameters; runs a chapter picks while
it executes, after a selection step, are not known before) are matched against the records of the
profile's store. Every file named like a record is judged without being moved, locked or warned about:

- ``finished`` / ``diverged``: an intact record the chapters read;
- ``stale``: intact as written (its checksum holds) but the current code would not read it, because its
  configuration now normalises to another id (a default changed) or is no longer accepted;
- ``corrupt``: anything else (truncated, edited, not JSON, not a regular file); the run is retrained.

The time left is estimated from the measured seconds per epoch of comparable stored runs (same network,
data, batch size, subset and split; the same optimizer where one is stored), times the epochs to train.
"""

from __future__ import annotations

import dataclasses
import statistics
from pathlib import Path
from typing import Any, Iterable

from .config import RunConfig, canonical_json
from .records import PLAIN_NAME
from .store import RecordEntry, ResultsStore
from .studies import STUDIES

def store_states(store: ResultsStore) -> dict[str, RecordEntry]:
    """Every file of ``store`` named like a record, judged (:meth:`ResultsStore.entries`), by run id.

    Reads only: nothing is moved or warned about. The one place that reads record states for ``plan``,
    ``status`` and ``clean``.
    """
    return {entry.run_id: entry for entry in store.entries()}


# ---- per chapter -----------------------------------------------------------------------------------------

@dataclasses.dataclass
class ChapterState:
    """What a chapter plans and what of it the store holds."""

    name: str
    #: the planned configurations by run id (each once)
    planned: dict[str, RunConfig]
    counts: dict[str, int]
    #: training seconds of the chapter's stored runs
    seconds_spent: float
    #: estimated training seconds of the runs to train that have comparable stored runs, and how many have none
    seconds_left: float
    unknown_left: int

    @property
    def stored(self) -> int:
        return self.counts["finished"] + self.counts["diverged"]

    @property
    def to_train(self) -> int:
        return len(self.planned) - self.stored


def planned_configs(name: str, values: dict[str, Any]) -> dict[str, RunConfig]:
    """The configurations chapter ``name`` plans with parameters ``values``, by run id (empty for a page)."""
    if name not in STUDIES:
        return {}
    study = STUDIES[name]
    return {config.run_id: config for config in study.planned_runs(study.settings_from(values))}


def chapter_states(parameters: dict[str, dict[str, Any]], names: Iterable[str], store: ResultsStore,
                   states: dict[str, RecordEntry] | None = None) -> list[ChapterState]:
    """Per chapter in ``names`` (pages have no runs and are left out), its plan against ``store``."""
    states = store_states(store) if states is None else states
    costs = CostIndex(entry for entry in states.values() if entry.state in ("finished", "diverged"))
    chapters = []
    for name in names:
        if name not in STUDIES:
            continue
        planned = planned_configs(name, parameters[name])
        counts = dict.fromkeys(("finished", "diverged", "missing", "corrupt", "stale"), 0)
        spent, left, unknown = 0.0, 0.0, 0
        for run_id, config in planned.items():
            entry = states.get(run_id)
            if entry is None or entry.state == "stale":
                counts["missing"] += 1
            else:
                counts[entry.state] += 1
            if entry is not None and entry.state in ("finished", "diverged"):
                spent += record_seconds(entry.record)
            else:
                estimate = costs.estimate(config)
                if estimate is None:
                    unknown += 1
                else:
                    left += estimate
        # a stale record is the earlier version of a planned run when its configuration now has the run's id
        counts["stale"] = sum(entry.state == "stale" and entry.current_id in planned for entry in states.values())
        chapters.append(ChapterState(name, planned, counts, spent, left, unknown))
    return chapters


def record_seconds(record: dict) -> float:
    """The training seconds a record took (its last epoch's elapsed seconds)."""
    epochs = record.get("epochs") or []
    return float(epochs[-1].get("elapsed_seconds") or 0.0) if epochs else 0.0


def _cost_key(config: dict, with_optimizer: bool) -> tuple:
    """What an epoch's cost depends on: network, data, batch size, subset and split (and the optimizer)."""
    key = tuple(canonical_json(config.get(item)) for item in
                ("model", "model_options", "dataset", "image_size", "batch_size", "max_train_examples", "validation_fraction", "augment"))
    return key + ((config.get("optimizer"),) if with_optimizer else ())


class CostIndex:
    """Measured seconds per epoch of stored runs, by what an epoch's cost depends on (see :func:`_cost_key`)."""

    def __init__(self, stored: Iterable[RecordEntry]):
        self._seconds: dict[tuple, list[float]] = {}
        for entry in stored:
            per_epoch = [row["seconds"] for row in entry.record["epochs"] if row.get("seconds") is not None]
            for with_optimizer in (True, False):
                self._seconds.setdefault(_cost_key(entry.record["config"], with_optimizer), []).extend(per_epoch)

    def estimate(self, config: RunConfig) -> float | None:
        """Training seconds of ``config``: the median seconds per epoch of comparable stored runs (the same cost key
        with the same optimizer, else with any optimizer) times its epochs; None if none is stored."""
        wanted = config.to_dict()
        for with_optimizer in (True, False):
            per_epoch = self._seconds.get(_cost_key(wanted, with_optimizer))
            if per_epoch:
                return statistics.median(per_epoch) * config.num_epochs
        return None


# ---- what the command line prints -------------------------------------------------------------------------

def format_seconds(seconds: float) -> str:
    """Seconds as ``42 s``, ``3.5 min`` or ``2.1 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def time_left(chapter: ChapterState) -> str:
    if chapter.to_train == 0:
        return "nothing to train"
    if chapter.unknown_left == chapter.to_train:
        return "time left unknown (no comparable run stored)"
    if chapter.unknown_left:
        return f"at least {format_seconds(chapter.seconds_left)} left (unknown for {chapter.unknown_left} runs)"
    return f"about {format_seconds(chapter.seconds_left)} left"


def plan_line(chapter: ChapterState) -> str:
    """The one-line summary of a chapter that ``plan`` and ``execute`` print."""
    return (f"{chapter.name}: {len(chapter.planned)} runs needed, {chapter.stored} stored, {chapter.to_train} to train, "
            f"{time_left(chapter)}")


def plan_lines(profile: str, parameters: dict[str, dict[str, Any]], names: Iterable[str], results_dir: Path) -> list[str]:
    """One line per notebook of ``names``: a chapter's runs (:func:`plan_line`), or what a page does."""
    names = list(names)
    store = ResultsStore.for_profile(profile, results_dir)
    chapters = {chapter.name: chapter for chapter in chapter_states(parameters, names, store)}
    return [plan_line(chapters[name]) if name in chapters else f"{name}: no runs (a page that reads the stored records)"
            for name in names]


def status_table(profile: str, parameters: dict[str, dict[str, Any]], results_dir: Path) -> list[str]:
    """``optbench status``: per chapter, finished / diverged / missing / corrupt / stale runs and the compute spent,
    then the records no chapter plans (runs picked during a build, or of other parameters)."""
    store = ResultsStore.for_profile(profile, results_dir)
    states = store_states(store)
    chapters = chapter_states(parameters, list(STUDIES), store, states)
    planned = {run_id for chapter in chapters for run_id in chapter.planned}
    claimed_stale = {entry.run_id for entry in states.values() if entry.state == "stale" and entry.current_id in planned}
    columns = ("finished", "diverged", "missing", "corrupt", "stale")
    rows = [(chapter.name, *(str(chapter.counts[column]) for column in columns), format_seconds(chapter.seconds_spent))
            for chapter in chapters]
    others = [entry for run_id, entry in states.items() if run_id not in planned and run_id not in claimed_stale]
    rows.append(("not planned by any chapter", *(str(sum(entry.state == column for entry in others)) if column != "missing" else "-"
                                                  for column in columns),
                 format_seconds(sum(record_seconds(entry.record) for entry in others if entry.state in ("finished", "diverged")))))
    header = ("chapter", *columns, "compute")
    widths = [max(len(row[index]) for row in (header, *rows)) for index in range(len(header))]
    lines = [f"profile {profile!r}: records in {store.root}"]
    for row in (header, *rows):
        lines.append("  ".join(cell.ljust(widths[0]) if index == 0 else cell.rjust(widths[index]) for index, cell in enumerate(row)))
    checkpoints = sorted((store.root / "checkpoints").glob("*.pt")) if (store.root / "checkpoints").is_dir() else []
    aside = sorted(store.root.glob("*.json.corrupt-*")) if store.root.is_dir() else []
    if checkpoints:
        lines.append(f"{len(checkpoints)} run(s) in progress or interrupted (a checkpoint in {store.root / 'checkpoints'}): they resume")
    if aside:
        lines.append(f"{len(aside)} corrupt file(s) moved aside for inspection (<run id>.json.corrupt-<time>)")
    if others:
        lines.append("records not planned by any chapter: runs a chapter picked while executing (after a selection step), "
                     "or runs of other parameters; stale ones can be removed with `optbench clean --stale`")
    return lines


def stale_records(store: ResultsStore) -> list[RecordEntry]:
    """The stale records of ``store``: no chapter of the current code reads them."""
    return store.entries(states=["stale"])


def remove_record(store: ResultsStore, entry: RecordEntry) -> bool:
    """Delete the file of ``entry`` if it is still the file that was judged (:meth:`ResultsStore.remove`)."""
    return store.remove(entry)


def profile_stores(results_dir: Path, profile: str | None = None) -> list[ResultsStore]:
    """The store of ``profile``, or of every profile with a directory under ``results_dir``."""
    if profile is not None:
        return [ResultsStore.for_profile(profile, results_dir)]
    if not results_dir.is_dir():
        return []
    return [ResultsStore(path) for path in sorted(results_dir.iterdir()) if path.is_dir() and PLAIN_NAME.match(path.name)]
