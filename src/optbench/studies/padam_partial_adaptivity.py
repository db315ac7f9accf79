"""Study 2: Padam and its partial-adaptivity parameter p (report 001).

Padam (Chen & Gu 2018) divides the momentum by the AMSGrad second moment raised to the power p ∈ (0, 1/2]:
θ ← θ − lr · m / v̂^p, so p → 0 is SGD with momentum and p = 1/2 is AMSGrad. Report 001 (Shi, Ye & Zhang)
reproduced it on CIFAR-10 with VGG-16, ResNet-18 and a Wide ResNet, at the hyperparameters of its Table 1,
without the original paper's multi-stage lr decay. This chapter runs

- the baselines on the three networks: Padam (p = 1/8), SGD momentum, Adam and AMSGrad at the report's
  settings (weight decay 0.005), and at the official scripts' weight decay 5e-4 as a variant;
- the p × lr grid on ResNet-18 and the p search on VGG-16 at lr 0.1;
- the Wide ResNet accuracies at 25/50/75/100% of training beside the report's table;
- the four optimizers with and without the multi-stage decay (×0.1 at 50% and 75% of training);
- the report's suggested schedule (large p and small lr first, then smaller p and larger lr) through
  Padam's p/lr schedule, against fixed-p Padam;
- each optimizer's learning-rate sensitivity (:func:`.common.lr_sensitivity`);

and decides claims C11–C15 with :mod:`optbench.verdicts`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
import pandas as pd

from .. import optim, styles
from ..config import RunConfig
from ..optim.padam import check_p
from ..statistics import format_number, format_spread, spread
from ..verdicts import LEVEL, Claim, Decision, all_of, decide_best, decide_greater, not_testable
from . import Study
from .common import RunGroups, all_configs, check_list, epoch_at_fraction, is_positive_number, is_seed, seed_values
from .common import describe_points as _points, describe_ratio as _ratio

#: the report's three networks, by model registry name, in the report's order
ARCHITECTURES = ("vgg16", "resnet18", "wideresnet")
TITLES = {"vgg16": "VGG-16", "resnet18": "ResNet-18", "wideresnet": "Wide ResNet"}
#: the four optimizers of the report's Table 1, Padam first
OPTIMIZERS = ("padam", "sgd", "adam", "amsgrad")
#: where the report ran its p × lr grid, its p search and its accuracy table
GRID_ARCHITECTURE, SEARCH_ARCHITECTURE, TABLE_ARCHITECTURE = "resnet18", "vgg16", "wideresnet"
#: report 001's Table 2: Wide ResNet test accuracy (%) on CIFAR-10 at epochs 25, 50, 75 and 100 of 100
REPORTED_EPOCHS = (25, 50, 75, 100)
REPORTED_ACCURACY = {
    "adam": (84.59, 87.75, 87.51, 88.65),
    "amsgrad": (86.83, 88.08, 88.88, 89.18),
    "sgd": (81.39, 82.13, 78.46, 81.78),
    "padam": (88.07, 87.66, 87.68, 88.43),
}
FRACTIONS = tuple(epoch / 100 for epoch in REPORTED_EPOCHS)
#: C12's "early in training": the first 30% of the epochs (the report's "before the 30th epoch" of 100)
EARLY_FRACTION = 0.3
#: the learning-rate sensitivity's tolerance: within this many percentage points of the best accuracy
SENSITIVITY_POINTS = 1.0
SCHEDULE_LABEL = "Padam, p/lr schedule"
CONSTANT, STEP_DECAY = "constant lr", "step decay"


def p_text(p: float) -> str:
    """p as the report writes it: 1/16, 1/8, ... for unit fractions, a decimal otherwise."""
    fraction = Fraction(p).limit_denominator(1024)
    if float(fraction) == p and fraction.numerator == 1:
        return f"1/{fraction.denominator}"
    return f"{p:g}"


def p_label(p: float) -> str:
    """The display label of Padam at ``p`` (a registered variant, see :func:`register_styles`)."""
    return f"Padam p={p_text(p)}"


def fixed_label(p: float, lr: float) -> str:
    """The label of fixed-p Padam at ``lr`` in the schedule comparison."""
    return f"{p_label(p)}, lr {lr:g}"


# ---- settings -------------------------------------------------------------------------------------------

def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_p(value) -> bool:
    return _is_number(value) and 0.0 < value <= 0.5


@dataclass
class Settings:
    """The chapter's parameters; the defaults are the notebook's parameters cell (the ``default`` profile's scale)."""

    dataset: str = "digits"
    image_size: int | None = None
    max_train_examples: int | None = 1000
    augment: bool = False
    num_epochs: int = 6
    batch_size: int = 128
    #: seeds of the runs the claims rest on (baselines, p × lr grid, p search)
    seeds: list = field(default_factory=lambda: [0, 1, 2])
    #: seeds of the comparisons no claim rests on (official weight decay, multi-stage decay, p/lr schedule,
    #: lr sensitivity); a subset of ``seeds`` reuses those runs
    secondary_seeds: list = field(default_factory=lambda: [0, 1])
    #: each network's model options (reduced width and depth below the paper profile)
    architectures: dict = field(default_factory=lambda: {
        "vgg16": {"width": 0.0625},
        "resnet18": {"width": 0.0625, "norm": "batch"},
        "wideresnet": {"depth": 10, "widen_factor": 2, "width": 0.25},
    })
    #: report 001's Table 1, by optimizer registry name (betas are the registry's 0.9, 0.999)
    hyperparameters: dict = field(default_factory=lambda: {
        "padam": {"lr": 0.1, "p": 0.125, "weight_decay": 0.005},
        "sgd": {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.005},
        "adam": {"lr": 0.001, "weight_decay": 0.005},
        "amsgrad": {"lr": 0.001, "weight_decay": 0.005},
    })
    #: the official Padam scripts' weight decay, run as a variant of every baseline
    official_weight_decay: float = 0.0005
    p_grid: list = field(default_factory=lambda: [0.0625, 0.125, 0.25, 0.5])
    lr_grid: list = field(default_factory=lambda: [0.001, 0.01, 0.1])
    #: the learning rate of the p search on VGG-16
    search_lr: float = 0.1
    #: the multi-stage decay: ×decay_factor at these fractions of training
    decay_milestones: list = field(default_factory=lambda: [0.5, 0.75])
    decay_factor: float = 0.1
    decay_architectures: list = field(default_factory=lambda: ["wideresnet"])
    #: the suggested schedule: p linear from start to final, lr geometric from start to final
    schedule_p_start: float = 0.5
    schedule_p_final: float = 0.0625
    schedule_lr_start: float = 0.001
    schedule_lr_final: float = 0.1

    def __post_init__(self):
        check_list("seeds", self.seeds, is_seed, "integers >= 0", distinct=True)
        check_list("secondary_seeds", self.secondary_seeds, is_seed, "integers >= 0", distinct=True)
        check_list("p_grid", self.p_grid, _is_p, "a number in (0, 1/2] (Padam's partial-adaptivity parameter)", distinct=True)
        check_list("lr_grid", self.lr_grid, is_positive_number, "a finite number > 0", distinct=True)
        if not isinstance(self.num_epochs, int) or isinstance(self.num_epochs, bool) or self.num_epochs < 1:
            raise ValueError(f"invalid num_epochs {self.num_epochs!r}: num_epochs must be an integer > 0")
        if not isinstance(self.architectures, dict):
            raise ValueError(f"invalid architectures {self.architectures!r}: give a mapping from network to its model options")
        unknown = [name for name in self.architectures if name not in ARCHITECTURES]
        if unknown:
            raise ValueError(f"unknown architecture(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(ARCHITECTURES)}")
        missing = [name for name in ARCHITECTURES if name not in self.architectures]
        if missing:
            raise ValueError(f"invalid architectures: {', '.join(map(repr, missing))} missing; the chapter runs all of "
                             f"{', '.join(ARCHITECTURES)}")
        for name, options in self.architectures.items():
            if not isinstance(options, dict):
                raise ValueError(f"invalid architectures[{name!r}] {options!r}: give the model options as a mapping such as {{'width': 0.25}}")
        if not isinstance(self.hyperparameters, dict) or set(self.hyperparameters) != set(OPTIMIZERS):
            given = sorted(self.hyperparameters) if isinstance(self.hyperparameters, dict) else self.hyperparameters
            raise ValueError(f"invalid hyperparameters {given!r}: give the settings of exactly {', '.join(OPTIMIZERS)}")
        for name, values in self.hyperparameters.items():
            if not isinstance(values, dict):
                raise ValueError(f"invalid hyperparameters[{name!r}] {values!r}: give a mapping such as {{'lr': 0.1}}")
            optim.resolve_hyperparameters(name, **values)
        if not _is_number(self.official_weight_decay) or self.official_weight_decay < 0:
            raise ValueError(f"invalid official_weight_decay {self.official_weight_decay!r}: it must be a number >= 0")
        if not is_positive_number(self.search_lr):
            raise ValueError(f"invalid search_lr {self.search_lr!r}: it must be a finite number > 0")
        check_list("decay_milestones", self.decay_milestones, lambda value: _is_number(value) and 0 < value < 1,
                   "a fraction of training in (0, 1)", distinct=True)
        epochs = self.milestone_epochs()
        if epochs != sorted(set(epochs)) or epochs[-1] >= self.num_epochs:
            raise ValueError(f"invalid decay_milestones {self.decay_milestones!r}: at {self.num_epochs} epochs they fall after "
                             f"epochs {epochs}; give increasing fractions that fall after different epochs before the last")
        if not _is_number(self.decay_factor) or not 0 < self.decay_factor < 1:
            raise ValueError(f"invalid decay_factor {self.decay_factor!r}: it must lie in (0, 1)")
        check_list("decay_architectures", self.decay_architectures, lambda value: value in ARCHITECTURES,
                   f"one of {', '.join(ARCHITECTURES)}", distinct=True)
        check_p("schedule_p_start", self.schedule_p_start)
        check_p("schedule_p_final", self.schedule_p_final)
        for name in ("schedule_lr_start", "schedule_lr_final"):
            if not is_positive_number(getattr(self, name)):
                raise ValueError(f"invalid {name} {getattr(self, name)!r}: it must be a finite number > 0")

    def milestone_epochs(self) -> list[int]:
        """The epochs after which the multi-stage decay multiplies the lr (MultiStepLR's milestones)."""
        return [epoch_at_fraction(fraction, self.num_epochs) for fraction in self.decay_milestones]

    def base(self, architecture: str) -> dict:
        return {
            "dataset": self.dataset, "image_size": self.image_size, "model": architecture,
            "model_options": dict(self.architectures[architecture]), "num_epochs": self.num_epochs,
            "batch_size": self.batch_size, "augment": self.augment, "max_train_examples": self.max_train_examples,
        }

    def report_padam(self) -> tuple[float, float]:
        """(p, lr) of the report's Padam (the registry's defaults where the settings leave them out)."""
        resolved = optim.resolve_hyperparameters("padam", **self.hyperparameters["padam"])
        return resolved["p"], resolved["lr"]

    def padam_at(self, p: float, lr: float, **extra) -> dict:
        """Padam's hyperparameters of the report with ``p`` and ``lr`` replaced."""
        return {**self.hyperparameters["padam"], "p": p, "lr": lr, **extra}


def register_styles(settings: Settings) -> None:
    """Give Padam at each p of the chapter one look (cividis from small to large p, Padam's marker), and the
    schedule comparison's curves theirs."""
    values = sorted({*settings.p_grid, settings.report_padam()[0], settings.schedule_p_start, settings.schedule_p_final})
    # viridis: colour-blind safe, and its four steps differ more in hue than cividis's
    styles.register_variants("padam", [p_label(p) for p in values], colormap="viridis")
    styles.register_variant(SCHEDULE_LABEL, "padam", color="vermillion", dashes="dashdot")
    for p, lr in schedule_endpoints(settings):
        styles.register_variant(fixed_label(p, lr), p_label(p))


# ---- the runs -------------------------------------------------------------------------------------------

def _groups(settings: Settings, architecture: str, seeds, weight_decay: float | None = None, **run) -> RunGroups:
    groups = {}
    for name in OPTIMIZERS:
        hyperparameters = dict(settings.hyperparameters[name])
        if weight_decay is not None:
            hyperparameters["weight_decay"] = weight_decay
        groups[styles.label(name)] = [RunConfig(optimizer=name, seed=seed, hyperparameters=hyperparameters, **settings.base(architecture), **run)
                                      for seed in seeds]
    return groups


def baselines(settings: Settings) -> dict[str, RunGroups]:
    """Per network: the four optimizers at the report's settings, every seed."""
    return {architecture: _groups(settings, architecture, settings.seeds) for architecture in ARCHITECTURES}


def official_weight_decay(settings: Settings) -> dict[str, RunGroups]:
    """Per network: the four optimizers at the official scripts' weight decay, the secondary seeds."""
    return {architecture: _groups(settings, architecture, settings.secondary_seeds, settings.official_weight_decay)
            for architecture in ARCHITECTURES}


def p_lr_grid(settings: Settings) -> dict[float, RunGroups]:
    """The grid on ResNet-18, per lr: Padam at each p, every seed (the report's other settings)."""
    base = settings.base(GRID_ARCHITECTURE)
    return {
        lr: {p_label(p): [RunConfig(optimizer="padam", seed=seed, hyperparameters=settings.padam_at(p, lr), **base) for seed in settings.seeds]
             for p in sorted(settings.p_grid)}
        for lr in sorted(settings.lr_grid)
    }


def p_search(settings: Settings) -> RunGroups:
    """The p search on VGG-16 at ``search_lr``: Padam at each p, every seed."""
    base = settings.base(SEARCH_ARCHITECTURE)
    return {p_label(p): [RunConfig(optimizer="padam", seed=seed, hyperparameters=settings.padam_at(p, settings.search_lr), **base)
                         for seed in settings.seeds]
            for p in sorted(settings.p_grid)}


def decay_comparison(settings: Settings) -> dict[str, dict[str, RunGroups]]:
    """Per network of ``decay_architectures``: the four optimizers with a constant lr and with the multi-stage
    decay, the secondary seeds (the constant runs are the baselines' where the seeds coincide)."""
    decay = {"scheduler": "multistep", "scheduler_options": {"milestones": settings.milestone_epochs(), "gamma": settings.decay_factor}}
    return {architecture: {CONSTANT: _groups(settings, architecture, settings.secondary_seeds),
                           STEP_DECAY: _groups(settings, architecture, settings.secondary_seeds, **decay)}
            for architecture in settings.decay_architectures}


def schedule_endpoints(settings: Settings) -> list[tuple[float, float]]:
    """The fixed-p Padam runs the schedule is compared with: its start, its end and the report's Padam."""
    points = [(settings.schedule_p_start, settings.schedule_lr_start), (settings.schedule_p_final, settings.schedule_lr_final),
              settings.report_padam()]
    return list(dict.fromkeys(points))


def schedule_comparison(settings: Settings) -> RunGroups:
    """On ResNet-18, the secondary seeds: Padam moving p from ``schedule_p_start`` to ``schedule_p_final``
    (linear) and lr from ``schedule_lr_start`` to ``schedule_lr_final`` (geometric) over training, and
    fixed-p Padam at the schedule's two ends and at the report's setting."""
    base = settings.base(GRID_ARCHITECTURE)
    scheduled = settings.padam_at(settings.schedule_p_start, settings.schedule_lr_start, p_final=settings.schedule_p_final,
                                  lr_final=settings.schedule_lr_final)
    groups = {SCHEDULE_LABEL: [RunConfig(optimizer="padam", seed=seed, hyperparameters=scheduled, **base) for seed in settings.secondary_seeds]}
    for p, lr in schedule_endpoints(settings):
        groups[fixed_label(p, lr)] = [RunConfig(optimizer="padam", seed=seed, hyperparameters=settings.padam_at(p, lr), **base)
                                      for seed in settings.secondary_seeds]
    return groups


def sensitivity_grid(settings: Settings) -> dict[float, RunGroups]:
    """On ResNet-18, per lr of ``lr_grid``: the four optimizers at the report's other settings, the secondary
    seeds (Padam's runs are the p × lr grid's at its p, the report's lrs the baselines')."""
    base = settings.base(GRID_ARCHITECTURE)
    return {
        lr: {styles.label(name): [RunConfig(optimizer=name, seed=seed, hyperparameters={**settings.hyperparameters[name], "lr": lr}, **base)
                                  for seed in settings.secondary_seeds]
             for name in OPTIMIZERS}
        for lr in sorted(settings.lr_grid)
    }


def _nested_configs(nested) -> list[RunConfig]:
    if isinstance(nested, list):
        return list(nested)
    return [config for value in nested.values() for config in _nested_configs(value)]


def planned_runs(settings: Settings) -> list[RunConfig]:
    """Every configuration of the chapter (none depends on a selection), each once."""
    configs = _nested_configs(baselines(settings)) + _nested_configs(p_lr_grid(settings)) + all_configs(p_search(settings))
    configs += _nested_configs(official_weight_decay(settings)) + _nested_configs(decay_comparison(settings))
    configs += all_configs(schedule_comparison(settings)) + _nested_configs(sensitivity_grid(settings))
    return list({config.run_id: config for config in configs}.values())


# ---- per-run measures and tables --------------------------------------------------------------------------

def early_epochs(num_epochs: int) -> int:
    """How many epochs C12's "early in training" covers: the first 30%, at least one."""
    return max(1, round(EARLY_FRACTION * num_epochs))


def add_early_train_loss(runs: pd.DataFrame, frame: pd.DataFrame, num_epochs: int) -> pd.DataFrame:
    """``runs`` (a per-run summary) with ``early_train_loss``: the geometric mean of each run's training loss
    over its first :func:`early_epochs` epochs."""
    count = early_epochs(num_epochs)
    early = frame[frame["epoch"] <= count].groupby("run_id")["train_loss"].apply(lambda losses: float(np.exp(np.log(losses).mean())))
    return runs.assign(early_train_loss=runs["run_id"].map(early))


def accuracy_counting_divergence(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` with a diverged run's final accuracy set to 0 (for claims: divergence is the worst outcome)."""
    return runs.assign(final_accuracy=np.where(runs["status"] == "diverged", 0.0, runs["final_accuracy"]))


def grid_tables(grid_runs: pd.DataFrame, metric: str, scale: float = 1.0, digits: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(values, annotations) for a p × lr heatmap: the mean of ``metric`` over seeds (times ``scale``), rows p
    from large to small (so p grows upwards), columns lr; annotations read "mean" over "min–max" over seeds,
    or "diverged"."""
    ps = sorted(grid_runs["p"].unique(), reverse=True)
    lrs = sorted(grid_runs["lr"].unique())
    values = pd.DataFrame(index=[p_text(p) for p in ps], columns=[f"{lr:g}" for lr in lrs], dtype=float)
    notes = pd.DataFrame(index=values.index, columns=values.columns, dtype=object)
    for p in ps:
        for lr in lrs:
            cell = grid_runs[(grid_runs["p"] == p) & (grid_runs["lr"] == lr)]
            row, column = p_text(p), f"{lr:g}"
            if (cell["status"] == "diverged").any():
                values.loc[row, column], notes.loc[row, column] = math.nan, "diverged"
                continue
            low, high = spread(scale * cell[metric])
            values.loc[row, column] = scale * cell[metric].mean()
            notes.loc[row, column] = f"{format_number(values.loc[row, column], digits)}\n{format_spread(low, high, digits)}"
    values.index.name, values.columns.name = "p", "learning rate"
    return values, notes


def best_lr_per_p(grid_runs: pd.DataFrame) -> pd.DataFrame:
    """Per p: the lr with the lowest mean final test error (highest mean accuracy; a diverged run counts as
    0%), its mean accuracy and mean final training loss. Rows ordered by p."""
    runs = accuracy_counting_divergence(grid_runs)
    rows = []
    for p, group in runs.groupby("p", sort=True):
        means = group.groupby("lr")[["final_accuracy", "final_train_loss"]].mean()
        lr = float(means["final_accuracy"].idxmax())
        rows.append({"p": p, "lr": lr, "final_accuracy": means.loc[lr, "final_accuracy"], "final_train_loss": means.loc[lr, "final_train_loss"]})
    return pd.DataFrame(rows)


def largest_curve_gap(frame: pd.DataFrame, label_a: str, label_b: str, metric: str = "test_error", by: str = "architecture") -> float:
    """The largest absolute difference between the mean curves (over seeds) of two labels, over the epochs and
    the values of ``by``: how far apart two curves of a figure ever are."""
    means = frame[frame["label"].isin([label_a, label_b])].groupby([by, "epoch", "label"])[metric].mean().unstack("label")
    return float((means[label_a] - means[label_b]).abs().max())


def best_cell(grid_runs: pd.DataFrame) -> dict:
    """The (p, lr) of the grid with the highest mean final test accuracy, with that accuracy."""
    means = accuracy_counting_divergence(grid_runs).groupby(["p", "lr"])["final_accuracy"].mean()
    p, lr = means.idxmax()
    return {"p": float(p), "lr": float(lr), "final_accuracy": float(means.max())}


def best_lr_table(best: pd.DataFrame) -> pd.DataFrame:
    """:func:`best_lr_per_p` as text for the book."""
    return pd.DataFrame({
        "p": [p_text(p) for p in best["p"]],
        "best learning rate": [f"{lr:g}" for lr in best["lr"]],
        "final test accuracy there (%), mean over seeds": [format_number(100 * value) for value in best["final_accuracy"]],
        "final training loss there, mean over seeds": [format_number(value, 3) for value in best["final_train_loss"]],
    })


def fractions_table(values: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """Wide ResNet test accuracy at 25/50/75/100% of training, one row per optimizer and fraction: report
    001's Table 2 beside this build's mean over seeds with the range over seeds (``values`` from
    :func:`.common.values_at_fractions`)."""
    rows = []
    for name in OPTIMIZERS:
        for fraction, reported_epoch, reported in zip(FRACTIONS, REPORTED_EPOCHS, REPORTED_ACCURACY[name]):
            runs = values[(values["label"] == styles.label(name)) & (values["fraction"] == fraction)]
            accuracy = 100 * runs["test_accuracy"]
            low, high = spread(accuracy)
            rows.append({
                "optimizer": styles.label(name),
                "share of training": f"{fraction:.0%}",
                "reported (CIFAR-10): epoch": f"{reported_epoch} of 100",
                "reported (CIFAR-10): test accuracy (%)": f"{reported:.2f}",
                f"this build ({settings.dataset}): epoch": f"{epoch_at_fraction(fraction, settings.num_epochs)} of {settings.num_epochs}",
                f"this build ({settings.dataset}): test accuracy (%), mean (range)": f"{format_number(accuracy.mean())} ({format_spread(low, high)})",
            })
    return pd.DataFrame(rows)


def comparison_table(table_a: pd.DataFrame, table_b: pd.DataFrame, title_a: str, title_b: str, metric: str = "final_accuracy") -> pd.DataFrame:
    """Two :func:`.common.results_table` frames (same labels, e.g. two weight decays or two schedules) side by
    side: the mean of ``metric`` (an accuracy, in %) with its range over seeds, and the difference b − a in pp."""
    rows = []
    for label in table_a.index:
        a, b = table_a.loc[label], table_b.loc[label]
        rows.append({
            "optimizer": label,
            f"{title_a} (%)": f"{format_number(100 * a[metric])} ({format_spread(100 * a[metric + '_min'], 100 * a[metric + '_max'])})",
            f"{title_b} (%)": f"{format_number(100 * b[metric])} ({format_spread(100 * b[metric + '_min'], 100 * b[metric + '_max'])})",
            "difference (pp)": f"{100 * (b[metric] - a[metric]):+.1f}",
        })
    return pd.DataFrame(rows)


def comparison_by_architecture(runs_a: pd.DataFrame, runs_b: pd.DataFrame, title_a: str, title_b: str) -> pd.DataFrame:
    """:func:`comparison_table` of two per-run summaries with an ``architecture`` column, one block of rows per
    network present in both, the network named in the first column."""
    from .common import results_table

    blocks = []
    for architecture in ARCHITECTURES:
        part_a, part_b = runs_a[runs_a["architecture"] == architecture], runs_b[runs_b["architecture"] == architecture]
        if part_a.empty or part_b.empty:
            continue
        order = list(dict.fromkeys(part_a["label"]))
        block = comparison_table(results_table(part_a, order, metrics=["final_accuracy"]), results_table(part_b, order, metrics=["final_accuracy"]),
                                 title_a, title_b)
        blocks.append(block.assign(network=TITLES[architecture])[["network", *block.columns]])
    return pd.concat(blocks, ignore_index=True)


def with_test_error(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` (per-epoch) with ``test_error`` = 1 − test accuracy, the report's top-1 error."""
    return frame.assign(test_error=1.0 - frame["test_accuracy"])


def sensitivity_table(sensitivity: pd.DataFrame) -> pd.DataFrame:
    """:func:`.common.lr_sensitivity` as text: best lr and accuracy, the range within the tolerance, its
    width, and whether it reaches an end of the grid (where the true range may be wider)."""
    def ends(row) -> str:
        names = [name for name, reached in (("lower", row.open_low), ("upper", row.open_high)) if reached]
        return " and ".join(names) if names else "neither"

    return pd.DataFrame({
        "optimizer": list(sensitivity.index),
        "best learning rate": [f"{value:g}" for value in sensitivity["best_lr"]],
        "its final test accuracy (%)": [format_number(100 * value) for value in sensitivity["best_score"]],
        f"learning rates within {SENSITIVITY_POINTS:g} pp": [
            "–" if not math.isfinite(row.low) else (f"{row.low:g}" if row.low == row.high else f"{row.low:g} to {row.high:g}")
            for row in sensitivity.itertuples()],
        "width (decades)": [format_number(value) for value in sensitivity["decades"]],
        "range reaches the grid's end": [ends(row) for row in sensitivity.itertuples()],
    })


def sensitivity_finding(sensitivity: pd.DataFrame) -> str:
    """The learning-rate sensitivity in one phrase for the findings: who keeps the widest range, or that
    none keeps more than one learning rate of the grid."""
    widest = sensitivity["decades"].max()
    if not math.isfinite(widest):
        return "cannot be measured: every learning rate diverged"
    if widest == 0:
        return (f"is narrow for every optimizer: none stays within {SENSITIVITY_POINTS:g} pp of its best at more than one "
                "learning rate of the grid")
    names = list(sensitivity.index[sensitivity["decades"] == widest])
    owners = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return f"is widest for {owners}: {widest:.1f} decades within {SENSITIVITY_POINTS:g} pp of the best"


def settings_rows(settings: Settings, profile: str) -> dict[str, str]:
    """The chapter's settings table, rendered from the parameters actually used."""
    from ..report import describe_data

    def options(values: dict) -> str:
        return ", ".join(f"{key} {value:g}" if isinstance(value, float) else f"{key} {value}" for key, value in values.items())

    return {
        "profile": profile,
        "data": describe_data(settings.dataset, settings.image_size, settings.max_train_examples),
        **{f"network: {TITLES[name]}": describe_architecture(name, settings.architectures[name]) for name in ARCHITECTURES},
        "epochs": settings.num_epochs,
        "batch size": settings.batch_size,
        "augmentation": "pad-4 crop and flip" if settings.augment else "none",
        "seeds (baselines, grid, p search)": ", ".join(map(str, settings.seeds)),
        "seeds (weight-decay variant, decay, schedule, sensitivity)": ", ".join(map(str, settings.secondary_seeds)),
        "report 001's settings (Table 1)": "; ".join(f"{styles.label(name)}: {options(values)}" for name, values in settings.hyperparameters.items()),
        "official weight decay (variant)": f"{settings.official_weight_decay:g} for every optimizer",
        "p × lr grid (ResNet-18)": f"p ∈ {{{', '.join(p_text(p) for p in sorted(settings.p_grid))}}} × lr ∈ {{{', '.join(f'{lr:g}' for lr in sorted(settings.lr_grid))}}}",
        "p search (VGG-16)": f"the same p values at lr {settings.search_lr:g}",
        "multi-stage decay": f"×{settings.decay_factor:g} after epochs {', '.join(map(str, settings.milestone_epochs()))} "
                             f"({', '.join(f'{fraction:.0%}' for fraction in settings.decay_milestones)} of training), on "
                             f"{', '.join(TITLES[name] for name in settings.decay_architectures)}",
        "suggested schedule (ResNet-18)": f"p {p_text(settings.schedule_p_start)} → {p_text(settings.schedule_p_final)} (linear), "
                                          f"lr {settings.schedule_lr_start:g} → {settings.schedule_lr_final:g} (geometric), over the epochs",
        "lr sensitivity (ResNet-18)": f"each optimizer over lr ∈ {{{', '.join(f'{lr:g}' for lr in sorted(settings.lr_grid))}}}, "
                                      f"range within {SENSITIVITY_POINTS:g} pp of its best mean final test accuracy",
    }


def describe_architecture(name: str, options: dict) -> str:
    """A network and its size in words."""
    width = options.get("width", 1.0)
    scale = "full width" if width == 1 else f"width ×{width:g}"
    if name == "wideresnet":
        return f"WRN-{options.get('depth', 28)}-{options.get('widen_factor', 10)}, {scale}"
    if name == "resnet18":
        return f"ResNet-18 (CIFAR-style, {'BatchNorm' if options.get('norm', 'batch') == 'batch' else 'no normalization'}), {scale}"
    return f"VGG-16 with BatchNorm, {scale}"


def source_settings(settings: Settings) -> list[tuple[str, str, str]]:
    """(setting, report 001, this build) rows of the chapter's scale box."""
    from ..report import describe_data

    return [
        ("data", "CIFAR-10, 32×32, 50,000 training and 10,000 test images", describe_data(settings.dataset, settings.image_size, settings.max_train_examples)),
        ("VGG-16", "VGG-16, full width", describe_architecture("vgg16", settings.architectures["vgg16"])),
        ("ResNet-18", "ResNet-18, full width", describe_architecture("resnet18", settings.architectures["resnet18"])),
        ("Wide ResNet", "a Wide ResNet (depth and width not stated; the original paper's WRN-16-4)",
         describe_architecture("wideresnet", settings.architectures["wideresnet"])),
        ("epochs", "100", str(settings.num_epochs)),
        ("batch size", "128", str(settings.batch_size)),
        ("seeds", "one run", f"{len(settings.seeds)} ({', '.join(map(str, settings.seeds))}); "
                             f"{len(settings.secondary_seeds)} for the variants"),
        ("multi-stage lr decay", "none (the original paper: ×0.1 at epochs 100 and 150 of 200)",
         f"none in the baselines; ×{settings.decay_factor:g} after epochs {', '.join(map(str, settings.milestone_epochs()))} as a comparison"),
    ]


# ---- claims ---------------------------------------------------------------------------------------------

def _titled(title: str, decision: Decision) -> Decision:
    return Decision(decision.verdict, f"{title}: {decision.evidence}")


def _log_values(runs: pd.DataFrame, label: str, metric: str) -> pd.Series:
    return np.log(seed_values(runs, label, metric))


def check_claims(baseline_runs: pd.DataFrame, grid_runs: pd.DataFrame, search_runs: pd.DataFrame, settings: Settings) -> list[Claim]:
    """Decide claims C11–C15.

    ``baseline_runs``: per-run summaries of the baselines with ``architecture`` and ``early_train_loss``
    (:func:`add_early_train_loss`); ``grid_runs``: of the p × lr grid with ``p`` and ``lr``; ``search_runs``:
    of the VGG-16 p search with ``p``.
    """
    label = styles.label
    padam, others = label("padam"), [label(name) for name in OPTIMIZERS if name != "padam"]
    claims = []

    def runs_of(architecture):
        return baseline_runs[baseline_runs["architecture"] == architecture]

    c11 = all_of([
        _titled(TITLES[architecture], decide_best(padam, {name: _log_values(runs_of(architecture), name, "final_train_loss")
                                                          for name in [padam, *others]}, higher_is_better=False, level=LEVEL / 2, describe=_ratio))
        for architecture in ("wideresnet", "resnet18")
    ], joiner=" | ")
    claims.append(Claim("C11", "001", "Padam reaches the lowest training loss on Wide ResNet and ResNet.",
                        "on each of Wide ResNet and ResNet-18, Padam's final training loss is below each other optimizer's; paired "
                        "t-tests on log loss over seeds (ratios shown), α = 0.05 over 2 networks × 3 comparisons; diverged runs dropped", c11))

    vgg = runs_of("vgg16")
    count = early_epochs(settings.num_epochs)
    c12 = all_of([
        decide_greater(_log_values(vgg, other, "early_train_loss"), _log_values(vgg, padam, "early_train_loss"), level=LEVEL / 2,
                       describe=lambda value: f"Padam's ×{math.exp(-value):.2f}", name=f"vs {other}")
        for other in (label("adam"), label("amsgrad"))
    ])
    claims.append(Claim("C12", "001", "On VGG, Padam has lower training loss than Adam and AMSGrad early in training (before ~30% of it).",
                        f"on VGG-16, Padam's training loss over the first {count} of {settings.num_epochs} epochs (≈30%; geometric mean "
                        "over those epochs) is below Adam's and below AMSGrad's; paired t-tests on log loss over seeds, α = 0.05/2", c12))

    ps, lrs = sorted(grid_runs["p"].unique()), sorted(grid_runs["lr"].unique())
    if len(lrs) < 2 or len(ps) < 2 or ps[0] > 0.125 or ps[-1] < 0.25:
        c13 = not_testable(f"the claim needs a p ≤ 1/8, a p ≥ 1/4 and two learning rates; this grid has p "
                           f"{', '.join(p_text(p) for p in ps)} and lr {', '.join(f'{lr:g}' for lr in lrs)}")
    else:
        runs = accuracy_counting_divergence(grid_runs)

        def cell(p, lr):
            return runs[(runs["p"] == p) & (runs["lr"] == lr)].set_index("seed")["final_accuracy"].astype(float)

        small, large = lrs[0], lrs[-1]
        c13 = all_of([
            decide_greater(cell(ps[0], large), cell(ps[0], small), level=LEVEL / 2, describe=_points,
                           name=f"p {p_text(ps[0])}: lr {large:g} − lr {small:g}"),
            decide_greater(cell(ps[-1], small), cell(ps[-1], large), level=LEVEL / 2, describe=_points,
                           name=f"p {p_text(ps[-1])}: lr {small:g} − lr {large:g}"),
        ])
    claims.append(Claim("C13", "001", "With p near 0 a larger lr is better; with p near 1/2 a smaller lr is better.",
                        "on ResNet-18, at the grid's smallest p the largest lr ends with a higher final test accuracy than the smallest "
                        "lr, and at its largest p the smallest lr ends higher than the largest; paired t-tests over seeds, α = 0.05/2; "
                        "a diverged run counts as 0%", c13))

    if 0.0625 not in set(search_runs["p"]) or search_runs["p"].nunique() < 2 or settings.search_lr != 0.1:
        c14 = not_testable(f"the claim is about p = 1/16 against other p at lr 0.1; this search has p "
                           f"{', '.join(p_text(p) for p in sorted(search_runs['p'].unique()))} at lr {settings.search_lr:g}")
    else:
        search = accuracy_counting_divergence(search_runs)
        c14 = decide_best(p_label(0.0625), {name: seed_values(search, name, "final_accuracy") for name in dict.fromkeys(search["label"])},
                          describe=_points)
    claims.append(Claim("C14", "001", "p = 1/16 is the best p at lr 0.1 (VGG).",
                        "on VGG-16 at lr 0.1, Padam's final test accuracy at p = 1/16 is above that at each other p of the search; "
                        "paired t-tests over seeds, α = 0.05 over the comparisons; a diverged run counts as 0%", c14))

    baseline_accuracy = accuracy_counting_divergence(baseline_runs)
    c15 = _adaptive_against_sgd(baseline_accuracy, ARCHITECTURES, sgd_first=False)
    claims.append(Claim("C15", "001", "Without lr decay, SGD momentum does not overtake Adam and AMSGrad late in training.",
                        "with a constant lr, on each network, Adam's and AMSGrad's final test accuracies are each above SGD momentum's "
                        "(supported), or SGD's is above one of them (contradicted); paired t-tests over seeds, α = 0.05 over "
                        "3 networks × 2 comparisons; a diverged run counts as 0%", c15))
    return claims


def _adaptive_against_sgd(runs: pd.DataFrame, architectures, sgd_first: bool) -> Decision:
    """Final test accuracy of SGD momentum against Adam's and AMSGrad's on each network: "SGD − other > 0"
    with ``sgd_first``, "other − SGD > 0" otherwise; α = 0.05 over all the comparisons."""
    sgd = styles.label("sgd")
    level = LEVEL / (2 * len(architectures))
    decisions = []
    for architecture in architectures:
        part = runs[runs["architecture"] == architecture]
        comparisons = []
        for name in ("adam", "amsgrad"):
            other = styles.label(name)
            first, second = (sgd, other) if sgd_first else (other, sgd)
            comparisons.append(decide_greater(seed_values(part, first, "final_accuracy"), seed_values(part, second, "final_accuracy"),
                                              level=level, describe=_points, name=f"{first} − {second}"))
        decisions.append(_titled(TITLES[architecture], all_of(comparisons)))
    return all_of(decisions, joiner=" | ")


def sgd_overtakes(decay_runs: pd.DataFrame) -> Decision:
    """With the multi-stage decay: does SGD momentum end above Adam and above AMSGrad on each decay network?
    Paired t-tests over seeds, α = 0.05 over the comparisons; a diverged run counts as 0%."""
    runs = accuracy_counting_divergence(decay_runs)
    return _adaptive_against_sgd(runs, list(dict.fromkeys(runs["architecture"])), sgd_first=True)


def sgd_margin(decay_runs: pd.DataFrame) -> float:
    """SGD momentum's mean final test accuracy minus the better of Adam's and AMSGrad's, on the network
    where it is smallest (a diverged run counts as 0%)."""
    runs = accuracy_counting_divergence(decay_runs)
    means = runs.groupby(["architecture", "label"])["final_accuracy"].mean().unstack("label")
    return float((means[styles.label("sgd")] - means[[styles.label("adam"), styles.label("amsgrad")]].max(axis=1)).min())


def schedule_margin(schedule_runs: pd.DataFrame) -> float:
    """The p/lr schedule's mean final test accuracy minus the best fixed-p Padam's (a diverged run counts as 0%)."""
    means = accuracy_counting_divergence(schedule_runs).groupby("label")["final_accuracy"].mean()
    return float(means[SCHEDULE_LABEL] - means.drop(SCHEDULE_LABEL).max())


def schedule_beats_fixed(schedule_runs: pd.DataFrame, settings: Settings) -> Decision:
    """Does the p/lr schedule end with a higher final test accuracy than each fixed-p Padam it is compared
    with? Paired t-tests over seeds, α = 0.05 over the comparisons; a diverged run counts as 0%."""
    runs = accuracy_counting_divergence(schedule_runs)
    return decide_best(SCHEDULE_LABEL, {name: seed_values(runs, name, "final_accuracy") for name in dict.fromkeys(runs["label"])},
                       describe=_points)


STUDY = Study(
    name="study2_padam",
    prefix="s2",
    title="Study 2 — Padam and its partial-adaptivity parameter p",
    reports=("001",),
    question="How does Padam's partial adaptivity p trade off against the learning rate, and does Padam beat SGD, Adam and AMSGrad "
             "on three networks?",
    settings=Settings,
    planned_runs=planned_runs,
    figures=("fig-s2-baselines", "fig-s2-official", "fig-s2-grid-heatmaps", "fig-s2-grid-curves", "fig-s2-search", "fig-s2-decay",
             "fig-s2-schedule", "fig-s2-sensitivity"),
    tables=("tbl-s2-settings", "tbl-s2-baselines", "tbl-s2-weight-decay", "tbl-s2-best-lr", "tbl-s2-search", "tbl-s2-fractions",
            "tbl-s2-decay", "tbl-s2-schedule", "tbl-s2-sensitivity", "tbl-s2-claims"),
    claims=("C11", "C12", "C13", "C14", "C15"),
)


def workload_table(frame_base: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """The chapter's workloads for the summary's performance profiles: the four optimizers' baselines on each
    architecture (the report's hyperparameters), one row per run (:func:`optbench.chapter_results.workload_runs`)."""
    from ..chapter_results import workload_runs

    return pd.concat([
        workload_runs(frame_base[frame_base["architecture"] == name], f"{TITLES[name]} (study 2) on {settings.dataset}")
        for name in ARCHITECTURES if name in set(frame_base["architecture"])
    ], ignore_index=True)


def headlines(best: dict, search_best: str) -> dict[str, str]:
    """The chapter's findings the summary shows: the best cell of the p × lr grid and the p search's winner."""
    return {
        "best p × lr cell on ResNet-18 (mean final test accuracy)": f"p = {p_text(best['p'])}, lr {best['lr']:g} ({100 * best['final_accuracy']:.1f}%)",
        "best p at the search lr on VGG-16": search_best,
    }
