"""What the study chapters share: groups of runs, per-run summaries, results tables and the lr selection.

A *group* is a display label (an optimizer or a variant) with its configurations, one per seed. A chapter
runs its groups through :func:`run_groups`, summarises every run with :func:`per_run_summary` and every
group with :func:`results_table`; claims compare groups with :mod:`optbench.verdicts` on
:func:`seed_values`.
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np
import pandas as pd

from ..config import RunConfig
from ..statistics import format_mean_interval, format_number, format_spread, mean_interval, spread
from ..store import ResultsStore
from ..sweeps import run_sweep

RunGroups = dict[str, list[RunConfig]]

#: a finished run whose final test accuracy lies this far (a fraction, 0.2 = 20 percentage points) below its
#: best epoch's has collapsed: it is flagged and named, and its curves stay in the figures
COLLAPSE_DROP = 0.20

#: per-run metrics of the results tables: column name → (title, unit, digits); accuracies are fractions
#: shown in percent
SUMMARY_METRICS = {
    "final_accuracy": ("final test accuracy", "%", 1),
    "best_accuracy": ("best test accuracy", "%", 1),
    "best_epoch": ("epoch of best", "", 1),
    "seconds_per_epoch": ("seconds per epoch", "s", 2),
}
PERCENT_COLUMNS = ("final_accuracy", "best_accuracy", "final_validation_accuracy")


def check_list(name: str, values, check_item, allowed: str, distinct: bool = False) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``values`` is a non-empty list whose every entry passes
    ``check_item`` (``allowed`` says what passes), each entry once if ``distinct``."""
    if not isinstance(values, (list, tuple)) or not values:
        raise ValueError(f"invalid {name} {values!r}: give a non-empty list of {allowed}")
    for value in values:
        if not check_item(value):
            raise ValueError(f"invalid {name} {values!r}: every entry must be {allowed}, got {value!r}")
    if distinct and len(set(values)) != len(values):
        raise ValueError(f"invalid {name} {values!r}: the entries must differ")


def is_seed(value) -> bool:
    """An integer >= 0 (a bool is not)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def is_positive_number(value) -> bool:
    """A finite number > 0 (a bool is not)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def describe_points(value: float) -> str:
    """An accuracy difference (a fraction) in signed percentage points, for a claim's evidence."""
    return f"{100 * value:+.1f} pp"


def describe_ratio(log_value: float) -> str:
    """A difference of logarithms as the ratio it stands for, for a claim's evidence."""
    return f"×{math.exp(log_value):.2f}"


def all_configs(groups: RunGroups) -> list[RunConfig]:
    """Every configuration of ``groups``, in order."""
    return [config for configs in groups.values() for config in configs]


def label_frame(frame: pd.DataFrame, groups: RunGroups, protocol: str | None = None) -> pd.DataFrame:
    """The rows of ``frame`` (a store DataFrame) that belong to ``groups``, with their ``label`` (and ``protocol``).

    A configuration in several groups (protocol A's and B's runs coincide where the lr does) appears once
    per group. Rows are ordered by the groups' order, then seed and epoch.
    """
    labelled = []
    for label, configs in groups.items():
        ids = {config.run_id for config in configs}
        labelled.append(frame[frame["run_id"].isin(ids)].assign(label=label))
    if not labelled:
        return frame.iloc[0:0].assign(label=pd.Series(dtype=object))
    result = pd.concat(labelled, ignore_index=True).sort_values(["seed", "epoch"], kind="stable")
    order = {label: position for position, label in enumerate(groups)}
    result = result.sort_values("label", key=lambda column: column.map(order), kind="stable").reset_index(drop=True)
    return result.assign(protocol=protocol) if protocol is not None else result


def run_groups(groups: RunGroups, store: ResultsStore, description: str, protocol: str | None = None) -> pd.DataFrame:
    """Train what the store lacks of ``groups`` (one progress bar), then return their labelled per-epoch frame."""
    configs = all_configs(groups)
    run_sweep(configs, store, description=description)
    return label_frame(store.dataframe([config.run_id for config in configs]), groups, protocol)


def run_grid(grid: dict, store: ResultsStore, description: str, column: str) -> pd.DataFrame:
    """Like :func:`run_groups` for groups that vary along an axis (``{lr: groups}``, say), in one sweep;
    the axis value is in ``column`` of the labelled frame."""
    configs = [config for groups in grid.values() for config in all_configs(groups)]
    run_sweep(configs, store, description=description)
    frame = store.dataframe([config.run_id for config in configs])
    return pd.concat([label_frame(frame, groups).assign(**{column: value}) for value, groups in grid.items()], ignore_index=True)


def evaluated_on(run: pd.DataFrame) -> str:
    """The split a run was evaluated on: "validation" (a held-out fraction or cross-validation fold of the
    training split: its records name the metrics ``validation_*``) or "test"."""
    if "validation_accuracy" in run and run["validation_accuracy"].notna().any():
        return "validation"
    if "validation_loss" in run and run["validation_loss"].notna().any():
        return "validation"
    return "test"


def per_run_summary(frame: pd.DataFrame, keep: Iterable[str] = ()) -> pd.DataFrame:
    """One row per (label, run): final and best accuracy, epoch of best, median seconds per epoch, first and
    final training loss, error variation, and whether the run diverged or collapsed.

    Accuracy, ``final_loss`` and the error variation are on the split the run was evaluated on, named in
    ``evaluated_on`` (:func:`evaluated_on`): the test set, or the held-out validation part of selection runs.
    Columns named in ``keep`` (a grid axis such as ``lr``) are carried over from the run's rows.
    """
    keep = list(keep)
    rows = []
    for (label, run_id, *kept), run in frame.groupby(["label", "run_id", *keep], sort=False):
        run = run.sort_values("epoch")
        split = evaluated_on(run)
        accuracy = run[f"{split}_accuracy"].to_numpy(dtype=float)
        finite = np.isfinite(accuracy)
        best_index = int(np.argmax(np.where(finite, accuracy, -np.inf))) if finite.any() else 0
        error = 1.0 - accuracy
        second_half = error[len(error) // 2:]
        diverged = run["status"].iloc[0] == "diverged"
        final, best = float(accuracy[-1]), float(accuracy[best_index]) if finite.any() else math.nan
        rows.append({
            "label": label,
            "run_id": run_id,
            **dict(zip(keep, kept)),
            "seed": int(run["seed"].iloc[0]),
            "status": run["status"].iloc[0],
            "evaluated_on": split,
            "diverged_epoch": run["diverged_epoch"].iloc[0] if diverged else None,
            "collapsed": bool(not diverged and math.isfinite(final) and best - final > COLLAPSE_DROP),
            "final_accuracy": final,
            "best_accuracy": best,
            "best_epoch": int(run["epoch"].iloc[best_index]),
            # the median resists the odd epoch slowed by other work on a shared machine
            "seconds_per_epoch": float(run["seconds"].median()),
            "first_train_loss": float(run["train_loss"].iloc[0]),
            "final_train_loss": float(run["train_loss"].iloc[-1]),
            "final_loss": float(run[f"{split}_loss"].iloc[-1]),
            # mean absolute epoch-to-epoch change of the test error over the second half: oscillation
            "test_error_variation": float(np.mean(np.abs(np.diff(second_half)))) if len(second_half) > 1 else math.nan,
        })
    return pd.DataFrame(rows)


def results_table(runs: pd.DataFrame, order: Iterable[str] | None = None, metrics: Iterable[str] = tuple(SUMMARY_METRICS)) -> pd.DataFrame:
    """Per label: run counts (runs, diverged, collapsed) and, per metric, mean, interval and per-seed spread.

    Columns ``<metric>``, ``<metric>_low``, ``<metric>_high`` (95% bootstrap interval of the mean) and
    ``<metric>_min``, ``<metric>_max``; labels in ``order`` (default: as they appear).
    """
    order = list(order) if order is not None else list(dict.fromkeys(runs["label"]))
    rows = []
    for label in order:
        group = runs[runs["label"] == label]
        row = {"label": label, "runs": len(group), "diverged": int((group["status"] == "diverged").sum()),
               "collapsed": int(group["collapsed"].sum())}
        for metric in metrics:
            mean, low, high = mean_interval(group[metric])
            smallest, largest = spread(group[metric])
            row.update({metric: mean, f"{metric}_low": low, f"{metric}_high": high, f"{metric}_min": smallest, f"{metric}_max": largest})
        rows.append(row)
    return pd.DataFrame(rows).set_index("label")


def display_results(table: pd.DataFrame, metrics: Iterable[str] = ("final_accuracy", "best_accuracy", "best_epoch"),
                    label_title: str = "optimizer") -> pd.DataFrame:
    """``table`` as text for the book: per metric the mean over seeds with its 95% interval, the final
    accuracy's range over seeds, and the counts of diverged and collapsed runs. Accuracies in %."""
    shown = pd.DataFrame({label_title: list(table.index)})
    for metric in metrics:
        title, unit, digits = SUMMARY_METRICS.get(metric, (metric.replace("_", " "), "", 3))
        scale = 100.0 if metric in PERCENT_COLUMNS else 1.0
        suffix = f" ({unit})" if unit else ""
        if metric == "best_epoch":  # a count: its mean says enough
            shown[title] = [format_number(value, 1) for value in table[metric]]
            continue
        shown[f"{title}{suffix}, mean [95% interval]"] = [
            format_mean_interval(scale * m, scale * lo, scale * hi, digits)
            for m, lo, hi in zip(table[metric], table[f"{metric}_low"], table[f"{metric}_high"])]
        if metric == "final_accuracy":
            shown[f"{title}, range over seeds{suffix}"] = [format_spread(scale * lo, scale * hi, digits)
                                                         for lo, hi in zip(table[f"{metric}_min"], table[f"{metric}_max"])]
    shown["diverged / collapsed runs"] = [f"{d} / {c} of {n}" for d, c, n in zip(table["diverged"], table["collapsed"], table["runs"])]
    return shown


def ranking(table: pd.DataFrame, metric: str = "final_accuracy", higher_is_better: bool = True) -> list[str]:
    """Labels by the mean of ``metric``, best first (NaN last)."""
    return list(table[metric].sort_values(ascending=not higher_is_better, kind="stable", na_position="last").index)


def seed_values(runs: pd.DataFrame, label: str, metric: str) -> pd.Series:
    """``metric`` of ``label``'s runs as a Series indexed by seed (what :mod:`optbench.verdicts` pairs on)."""
    group = runs[runs["label"] == label]
    if group.empty:
        raise ValueError(f"no runs labelled {label!r}; labels: {', '.join(dict.fromkeys(runs['label']))}")
    return group.set_index("seed")[metric].astype(float)


def unusual_runs(runs: pd.DataFrame) -> list[str]:
    """One phrase per diverged or collapsed run, naming it, for the chapter's text."""
    notes = []
    for row in runs.itertuples():
        if row.status == "diverged":
            notes.append(f"{row.label} seed {row.seed} diverged in epoch {int(row.diverged_epoch)}")
        elif row.collapsed:
            notes.append(f"{row.label} seed {row.seed} collapsed from {row.best_accuracy:.1%} (epoch {row.best_epoch}) "
                         f"to {row.final_accuracy:.1%} at the end")
    return notes


def select_by_mean(final_rows: pd.DataFrame, by: str, score: str, tie_break: str | None = None,
                   higher_is_better: bool = True) -> pd.DataFrame:
    """Per label, the value of ``by`` whose mean ``score`` over seeds is highest (ties: lowest mean ``tie_break``);
    with ``higher_is_better`` False, lowest (a loss).

    ``final_rows`` holds one row per run (label, seed, ``by``, ``score``, status); the runs of a value may be
    seeds or cross-validation folds. A value with any diverged run is never selected. Returns one row per
    label: ``by``, the mean score, the number of runs behind it (``seeds``).
    """
    rows = []
    for label, group in final_rows.groupby("label", sort=False):
        candidates = []
        for value, runs in group.groupby(by, sort=True):
            if (runs["status"] == "diverged").any():
                continue
            candidates.append({by: value, score: runs[score].mean(), "seeds": len(runs),
                               **({tie_break: runs[tie_break].mean()} if tie_break else {})})
        if not candidates:
            rows.append({"label": label, by: math.nan, score: math.nan, "seeds": 0})
            continue
        sign = -1.0 if higher_is_better else 1.0
        ranked = sorted(candidates, key=lambda item: (sign * item[score], item.get(tie_break, 0.0) if tie_break else 0.0))
        rows.append({"label": label, **ranked[0]})
    return pd.DataFrame(rows).set_index("label")


def value_at(frame: pd.DataFrame, metric: str, budget: float, x: str = "grad_evals") -> pd.DataFrame:
    """Per run, ``metric`` at ``x`` = ``budget``, linearly interpolated between its epochs: runs compared at equal
    compute (gradient evaluations, say) rather than at equal epochs.

    One row per (label, run): ``label``, ``run_id``, ``seed`` and ``value``. The value is NaN when the run's
    recorded epochs do not reach back to or forward to ``budget`` (no extrapolation), or when the epochs
    around it have no finite value (a diverged run).
    """
    rows = []
    for (label, run_id), run in frame.groupby(["label", "run_id"], sort=False):
        run = run.sort_values(x)
        positions, values = run[x].to_numpy(dtype=float), run[metric].to_numpy(dtype=float)
        value = math.nan
        if len(positions) and positions[0] <= budget <= positions[-1]:
            value = float(np.interp(budget, positions, values))
        rows.append({"label": label, "run_id": run_id, "seed": int(run["seed"].iloc[0]), "value": value})
    return pd.DataFrame(rows, columns=["label", "run_id", "seed", "value"])


def epoch_at_fraction(fraction: float, num_epochs: int) -> int:
    """The first epoch (counted from 1) at or after ``fraction`` of ``num_epochs``: 25% of 100 epochs is
    epoch 25, 25% of 6 is epoch 2."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"invalid fraction {fraction!r}: a fraction of training lies in (0, 1]")
    # the small tolerance keeps 0.3·10 = 3.0000000000000004 at epoch 3
    return max(1, math.ceil(fraction * num_epochs - 1e-9))


def values_at_fractions(frame: pd.DataFrame, fractions: Iterable[float], metric: str = "test_accuracy",
                        keep: Iterable[str] = ()) -> pd.DataFrame:
    """``metric`` of every run at each fraction of its training (:func:`epoch_at_fraction` of the run's
    ``num_epochs``): one row per (label, run, fraction) with the epoch; NaN where a diverged run stopped earlier.

    Columns named in ``keep`` (an architecture, say) are carried over.
    """
    keep, fractions = list(keep), list(fractions)
    rows = []
    for (label, run_id, *kept), run in frame.groupby(["label", "run_id", *keep], sort=False):
        by_epoch = run.set_index("epoch")[metric]
        num_epochs = int(run["num_epochs"].iloc[0])
        for fraction in fractions:
            epoch = epoch_at_fraction(fraction, num_epochs)
            rows.append({"label": label, "run_id": run_id, **dict(zip(keep, kept)), "seed": int(run["seed"].iloc[0]),
                         "fraction": fraction, "epoch": epoch, metric: float(by_epoch.get(epoch, math.nan))})
    return pd.DataFrame(rows)


def lr_sensitivity(final_rows: pd.DataFrame, tolerance: float = 0.01, by: str = "lr", score: str = "final_accuracy") -> pd.DataFrame:
    """Per label, how wide a range of learning rates stays within ``tolerance`` of the best mean ``score``.

    ``final_rows`` holds one row per run (label, ``by``, ``score``, status). Per label the grid's values are
    sorted; the best is the one with the highest mean score over seeds; the range grows from it to each
    neighbouring value while that value's mean stays at or above best − ``tolerance`` (an accuracy fraction:
    0.01 = 1 percentage point). A value with a diverged run ends the range. Returns, per label: the best
    value and its mean score, the range's ends ``low`` and ``high``, its width in decades
    (log10(high/low); 0 when only the best qualifies) and whether it reaches the grid's ends
    (``open_low``/``open_high``: the true range may be wider there). NaN throughout when every value diverged.
    """
    if tolerance < 0:
        raise ValueError(f"invalid tolerance {tolerance!r}: it must be >= 0")
    rows = []
    for label, group in final_rows.groupby("label", sort=False):
        values = sorted(group[by].unique())
        means = {value: (math.nan if (runs["status"] == "diverged").any() else float(runs[score].mean()))
                 for value, runs in group.groupby(by)}
        usable = [value for value in values if math.isfinite(means[value])]
        if not usable:
            rows.append({"label": label, f"best_{by}": math.nan, "best_score": math.nan, "low": math.nan, "high": math.nan,
                         "decades": math.nan, "open_low": False, "open_high": False})
            continue
        best = max(usable, key=lambda value: means[value])
        floor = means[best] - tolerance
        position = values.index(best)
        low = high = position
        while low > 0 and means[values[low - 1]] >= floor:
            low -= 1
        while high < len(values) - 1 and means[values[high + 1]] >= floor:
            high += 1
        rows.append({"label": label, f"best_{by}": best, "best_score": means[best], "low": values[low], "high": values[high],
                     "decades": math.log10(values[high] / values[low]), "open_low": low == 0, "open_high": high == len(values) - 1})
    return pd.DataFrame(rows).set_index("label")


# ---- time to a target ----------------------------------------------------------------------------------

#: what :func:`time_to_target` reports at the first epoch that reaches the target: record column → title
TARGET_COSTS = {"epoch": "epochs", "grad_evals": "gradient evaluations", "elapsed_seconds": "training seconds"}


def time_to_target(frame: pd.DataFrame, target: float, metric: str = "test_accuracy",
                   costs: Iterable[str] = tuple(TARGET_COSTS)) -> pd.DataFrame:
    """One row per (label, run): whether ``metric`` ever reached ``target`` (≥) and, at the first epoch that
    did, each column of ``costs`` (cumulative record columns such as ``grad_evals``); NaN costs for a run
    that never reached it (a diverged run's NaN epochs never do)."""
    costs = list(costs)
    rows = []
    for (label, run_id), run in frame.groupby(["label", "run_id"], sort=False):
        run = run.sort_values("epoch")
        reached = run[run[metric].to_numpy(dtype=float) >= target]
        first = reached.iloc[0] if len(reached) else None
        rows.append({"label": label, "run_id": run_id, "seed": int(run["seed"].iloc[0]), "reached": first is not None,
                     **{cost: float(first[cost]) if first is not None else math.nan for cost in costs}})
    return pd.DataFrame(rows)


def target_table(per_run: pd.DataFrame, order: Iterable[str] | None = None, costs: Iterable[str] = tuple(TARGET_COSTS)) -> pd.DataFrame:
    """:func:`time_to_target`'s rows as text per label: how many runs reached the target, and per cost the mean
    [95% interval] over the runs that did ("never reached" when none did). Runs that never reach it are
    counted, not averaged as if they had."""
    order = list(order) if order is not None else list(dict.fromkeys(per_run["label"]))
    rows = []
    for label in order:
        group = per_run[per_run["label"] == label]
        reached = group[group["reached"]]
        row = {"optimizer": label, "runs reaching the target": f"{len(reached)} of {len(group)}"}
        for cost in costs:
            title = TARGET_COSTS.get(cost, cost.replace("_", " "))
            digits = 0 if cost == "grad_evals" else 1
            row[f"{title} to reach it"] = (format_mean_interval(*mean_interval(reached[cost]), digits) if len(reached)
                                           else "never reached")
        rows.append(row)
    return pd.DataFrame(rows)
