"""Study 4: variance reduction, batch normalization and MetaInit (report 003).

The shallow benchmark: LeNet, each optimizer's hyperparameters chosen from report 003's grids by k-fold
cross-validation (scikit-learn's ``StratifiedKFold``, :class:`~optbench.config.RunConfig`'s ``num_folds`` and
``fold``) on the mean final held-out loss, then rerun with every seed on the test set and compared against
gradient evaluations. The deep benchmarks: ResNet-18 and ResNet-101 with and without BatchNorm, the
hyperparameters chosen on a held-out 5% of the training split by the final validation loss, STORM added.
The report's hypothesis, that BatchNorm breaks SVRG's variance reduction, measured directly
(:mod:`optbench.gradient_variance`); MetaInit's gradient quotient and its effect on training
(:mod:`optbench.metainit`). Claims C21–C27 are decided by :mod:`optbench.verdicts`.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import matplotlib.pyplot as plt
import matplotlib.ticker as mticker
import numpy as np
import pandas as pd

from .. import models, optim, plotting, styles
from ..config import RunConfig
from ..statistics import format_mean_interval, format_number, format_spread, mean_interval, spread
from ..verdicts import LEVEL, Claim, Decision, all_of, decide_above, decide_equivalent, decide_greater, not_testable
from . import Study
from .common import RunGroups, all_configs, is_positive_number, is_seed, seed_values, select_by_mean

#: registry names in the chapter's order
LENET_OPTIMIZERS = ("adam", "sgd", "adagrad", "svrg", "storm")
DEEP_OPTIMIZERS = ("adam", "sgd", "svrg", "storm")
#: the report's comparisons: STORM joins them on the deep networks here, but its claims are about these
REPORT_DEEP_OPTIMIZERS = ("adam", "sgd", "svrg")
DEEP_NETWORKS = ("resnet18", "resnet101")
#: with and without BatchNorm, in the order the chapter shows them
NORMS = ("batch", "none")
NETWORK_TITLES = {"lenet5": "LeNet", "resnet18": "ResNet-18", "resnet101": "ResNet-101"}
NORM_TITLES = {"batch": "with BN", "none": "without BN"}
#: which hyperparameters each optimizer's grid must span (every axis of the report's grids)
GRID_AXES = {"adam": ("lr",), "sgd": ("lr",), "adagrad": ("lr",), "svrg": ("lr",), "storm": ("c", "k")}

#: C23, C24: SVRG "beats" another method when its final test loss is lower by more than this factor
BEAT_RATIO = 1.05
#: C27: MetaInit has "little effect" when the final test losses with and without it are within this factor
LITTLE_EFFECT_RATIO = 1.10
#: C26: high learning rates "give NaN" when more than this share of the runs at the grid's highest SGD lr diverge
DIVERGED_SHARE = 0.5
#: C23–C25, C27 compare how well methods train a network; a benchmark where no method's mean final test accuracy
#: reaches chance plus this many percentage points says nothing about that, and leaves the comparison
LEARNED_POINTS = 10.0

#: report 003's selected hyperparameters (Tables 4.2, 4.4, 4.5, 4.7, 4.8); STORM was not tuned on the deep networks
REPORTED_SELECTION = {
    ("lenet5", None): {"adam": {"lr": 1e-4}, "sgd": {"lr": 0.1}, "adagrad": {"lr": 0.1}, "svrg": {"lr": 0.01},
                       "storm": {"c": 100, "k": 0.1}},
    ("resnet18", "batch"): {"adam": {"lr": 1e-4}, "sgd": {"lr": 0.05}, "svrg": {"lr": 0.01}},
    ("resnet18", "none"): {"adam": {"lr": 1e-5}, "sgd": {"lr": 0.01}, "svrg": {"lr": 0.005}},
    ("resnet101", "batch"): {"adam": {"lr": 1e-4}, "sgd": {"lr": 0.05}, "svrg": {"lr": 0.005}},
    ("resnet101", "none"): {"adam": {"lr": 1e-4}, "sgd": {"lr": 0.005}, "svrg": {"lr": 0.005}},
}

# report 003's SGD has no momentum: a variant of the registry's SGD+momentum, drawn dashed
SGD_LABEL = "SGD"
styles.register_variant(SGD_LABEL, "sgd", dashes="dashed")
METAINIT_LABELS = {"svrg": "SVRG + MetaInit", "sgd": "SGD + MetaInit"}
styles.register_variant(METAINIT_LABELS["svrg"], "svrg", color="vermillion", dashes="solid")
styles.register_variant(METAINIT_LABELS["sgd"], "sgd", color="orange", dashes="solid")


def label(name: str) -> str:
    """The display label of optimizer ``name`` in this chapter (report 003's SGD is plain SGD)."""
    return SGD_LABEL if name == "sgd" else styles.label(name)


def setting_title(network: str, norm: str | None) -> str:
    """"LeNet", "ResNet-18 with BN", ..."""
    return NETWORK_TITLES[network] + (f" {NORM_TITLES[norm]}" if norm else "")


# the variance measurement's curves: one look per network, registered as variants of SVRG
VARIANCE_LOOKS = {("lenet5", None): ("black", "solid", "o"), ("resnet18", "batch"): ("blue", "solid", "s"),
                  ("resnet18", "none"): ("vermillion", "dashed", "^"), ("resnet101", "batch"): ("sky blue", "solid", "D"),
                  ("resnet101", "none"): ("orange", "dashed", "v")}
for (_network, _norm), (_color, _dashes, _marker) in VARIANCE_LOOKS.items():
    styles.register_variant(setting_title(_network, _norm), "svrg", color=_color, dashes=_dashes, marker=_marker)


def _check_seeds(name: str, values) -> None:
    if not isinstance(values, (list, tuple)) or not values:
        raise ValueError(f"invalid {name} {values!r}: give a non-empty list of integers >= 0")
    for value in values:
        if not is_seed(value):
            raise ValueError(f"invalid {name} {values!r}: every entry must be an integer >= 0, got {value!r}")
    if len(set(values)) != len(values):
        raise ValueError(f"invalid {name} {values!r}: the seeds must differ")


def _check_count(name: str, value, minimum: int, why: str = "") -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"invalid {name} {value!r}: it must be an integer >= {minimum}{why}")


def _check_grids(name: str, grids, optimizers) -> None:
    """Every optimizer of the benchmark has a grid along each of its axes, each a non-empty list of numbers > 0."""
    if not isinstance(grids, dict):
        raise ValueError(f"invalid {name} {grids!r}: give a mapping from optimizer to its grid, e.g. {{'adam': {{'lr': [0.001]}}}}")
    missing, unknown = [item for item in optimizers if item not in grids], sorted(set(grids) - set(optimizers))
    if missing or unknown:
        raise ValueError(f"invalid {name}: {'missing ' + ', '.join(map(repr, missing)) if missing else ''}"
                         f"{'; ' if missing and unknown else ''}{'unknown ' + ', '.join(map(repr, unknown)) if unknown else ''}; "
                         f"give a grid for each of {', '.join(optimizers)}")
    for optimizer in optimizers:
        grid = grids[optimizer]
        axes = GRID_AXES[optimizer]
        if not isinstance(grid, dict) or sorted(grid) != sorted(axes):
            raise ValueError(f"invalid {name}[{optimizer!r}] {grid!r}: give a list of values for each of its axes "
                             f"{', '.join(axes)} (every axis of report 003's grid)")
        for axis, values in grid.items():
            if not isinstance(values, (list, tuple)) or not values:
                raise ValueError(f"invalid {name}[{optimizer!r}][{axis!r}] {values!r}: an empty grid; give a non-empty "
                                 "list of numbers > 0")
            for value in values:
                if not is_positive_number(value):
                    raise ValueError(f"invalid {name}[{optimizer!r}][{axis!r}] {values!r}: every entry must be a finite "
                                     f"number > 0, got {value!r}")
            if len(set(values)) != len(values):
                raise ValueError(f"invalid {name}[{optimizer!r}][{axis!r}] {values!r}: the values must differ")


@dataclass
class Settings:
    """The chapter's parameters; the defaults are the notebook's parameters cell (the ``default`` profile's scale)."""

    #: seeds of the final runs of every benchmark
    seeds: list = field(default_factory=lambda: [0, 1, 2])
    #: seeds of the selection runs (the cross-validation's folds are run for each)
    selection_seeds: list = field(default_factory=lambda: [0])
    # ---- the shallow benchmark: LeNet ----
    shallow_dataset: str = "digits"
    #: LeNet needs images of at least 12×12 pixels
    shallow_image_size: int | None = 16
    shallow_max_train_examples: int | None = 800
    shallow_num_epochs: int = 8
    shallow_batch_size: int = 32
    num_folds: int = 4
    shallow_grids: dict = field(default_factory=lambda: {
        "adam": {"lr": [0.0001, 0.001, 0.01]}, "sgd": {"lr": [0.01, 0.1]}, "adagrad": {"lr": [0.01, 0.1]},
        "svrg": {"lr": [0.01, 0.1]}, "storm": {"c": [10, 100], "k": [0.1, 1]}})
    # ---- the deep benchmarks: ResNet-18 and ResNet-101, with and without BatchNorm ----
    resnet18_dataset: str = "digits"
    resnet101_dataset: str = "digits"
    deep_image_size: int | None = None
    resnet18_width: float = 0.125
    resnet101_width: float = 0.0625
    deep_num_epochs: int = 4
    #: report 003 trained SVRG for 150 epochs where the others had 200
    svrg_num_epochs: int = 3
    deep_batch_size: int = 128
    resnet18_max_train_examples: int | None = None
    resnet101_max_train_examples: int | None = 256
    augment: bool = False
    validation_fraction: float = 0.05
    resnet18_grids: dict = field(default_factory=lambda: {
        "adam": {"lr": [0.0001, 0.001]}, "sgd": {"lr": [0.01, 0.1]}, "svrg": {"lr": [0.001, 0.01]},
        "storm": {"c": [10, 100], "k": [0.1]}})
    resnet101_grids: dict = field(default_factory=lambda: {
        "adam": {"lr": [0.0001]}, "sgd": {"lr": [0.005, 0.05]}, "svrg": {"lr": [0.005]}, "storm": {"c": [100], "k": [0.1]}})
    #: report 003's settings besides the grids: plain SGD, STORM's w
    fixed_hyperparameters: dict = field(default_factory=lambda: {"sgd": {"momentum": 0.0}, "storm": {"w": 0.1}})
    # ---- the variance measurement and MetaInit ----
    #: deep networks whose SVRG runs (with and without BN) are measured, besides LeNet
    variance_networks: list = field(default_factory=lambda: ["resnet18"])
    variance_points_per_epoch: int = 2
    variance_batches: int = 8
    #: the network and normalization MetaInit is tried on (report 003: ResNet-101 without BN)
    metainit_network: str = "resnet18"
    metainit_norm: str = "none"
    #: report 003 ran MetaInit's descent for 200 steps
    metainit_steps: int = 20

    def __post_init__(self):
        _check_seeds("seeds", self.seeds)
        _check_seeds("selection_seeds", self.selection_seeds)
        _check_count("num_folds", self.num_folds, 2, " (cross-validation holds out one of at least 2 folds)")
        for name in ("shallow_num_epochs", "deep_num_epochs", "svrg_num_epochs", "shallow_batch_size", "deep_batch_size"):
            _check_count(name, getattr(self, name), 1)
        _check_count("variance_points_per_epoch", self.variance_points_per_epoch, 1)
        _check_count("variance_batches", self.variance_batches, 2, " (a variance needs 2 batches)")
        _check_count("metainit_steps", self.metainit_steps, 1)
        if not isinstance(self.validation_fraction, (int, float)) or not 0.0 < self.validation_fraction < 1.0:
            raise ValueError(f"invalid validation_fraction {self.validation_fraction!r}: it must lie in (0, 1)")
        for name in ("resnet18_width", "resnet101_width"):
            if not is_positive_number(getattr(self, name)):
                raise ValueError(f"invalid {name} {getattr(self, name)!r}: the width multiplier must be a number > 0")
        _check_grids("shallow_grids", self.shallow_grids, LENET_OPTIMIZERS)
        _check_grids("resnet18_grids", self.resnet18_grids, DEEP_OPTIMIZERS)
        _check_grids("resnet101_grids", self.resnet101_grids, DEEP_OPTIMIZERS)
        if not isinstance(self.fixed_hyperparameters, dict):
            raise ValueError(f"invalid fixed_hyperparameters {self.fixed_hyperparameters!r}: give a mapping from optimizer to settings")
        unknown = sorted(set(self.fixed_hyperparameters) - set(LENET_OPTIMIZERS))
        if unknown:
            raise ValueError(f"invalid fixed_hyperparameters: unknown optimizer(s) {', '.join(map(repr, unknown))}; "
                             f"allowed: {', '.join(LENET_OPTIMIZERS)}")
        for name, values in self.fixed_hyperparameters.items():
            if not isinstance(values, dict):
                raise ValueError(f"invalid fixed_hyperparameters[{name!r}] {values!r}: give a mapping such as {{'momentum': 0.0}}")
            clash = sorted(set(values) & set(GRID_AXES[name]))
            if clash:
                raise ValueError(f"invalid fixed_hyperparameters[{name!r}]: {', '.join(clash)} is searched by the grid; "
                                 "set it in the grid instead")
            optim.resolve_hyperparameters(name, **values)
        if not isinstance(self.variance_networks, (list, tuple)) or any(item not in DEEP_NETWORKS for item in self.variance_networks):
            raise ValueError(f"invalid variance_networks {self.variance_networks!r}: give a list of deep networks from "
                             f"{', '.join(DEEP_NETWORKS)} (or an empty list: LeNet only)")
        if self.metainit_network not in DEEP_NETWORKS:
            raise ValueError(f"invalid metainit_network {self.metainit_network!r}: allowed {', '.join(DEEP_NETWORKS)}")
        if self.metainit_norm not in models.NORMS:
            raise ValueError(f"invalid metainit_norm {self.metainit_norm!r}: allowed {', '.join(models.NORMS)}")

    def shallow_base(self) -> dict:
        return {"dataset": self.shallow_dataset, "image_size": self.shallow_image_size, "model": "lenet5",
                "num_epochs": self.shallow_num_epochs, "batch_size": self.shallow_batch_size,
                "max_train_examples": self.shallow_max_train_examples}

    def deep_base(self, network: str, norm: str, optimizer: str) -> dict:
        return {"dataset": getattr(self, f"{network}_dataset"), "image_size": self.deep_image_size, "model": network,
                "model_options": {"norm": norm, "width": getattr(self, f"{network}_width")},
                "num_epochs": self.svrg_num_epochs if optimizer == "svrg" else self.deep_num_epochs,
                "batch_size": self.deep_batch_size, "augment": self.augment,
                "max_train_examples": getattr(self, f"{network}_max_train_examples")}

    def deep_grids(self, network: str) -> dict:
        return getattr(self, f"{network}_grids")

    def chance_accuracy(self, network: str) -> float:
        """The test accuracy of guessing on ``network``'s dataset (classes are balanced): 1 / classes."""
        from ..data import DATASET_INFO

        dataset = self.shallow_dataset if network == "lenet5" else getattr(self, f"{network}_dataset")
        return 1.0 / DATASET_INFO[dataset]["classes"]

    def fixed(self, optimizer: str) -> dict:
        return dict(self.fixed_hyperparameters.get(optimizer, {}))


def deep_settings() -> list[tuple[str, str]]:
    """(network, norm) of every deep benchmark, in the chapter's order."""
    return [(network, norm) for network in DEEP_NETWORKS for norm in NORMS]


def grid_points(grid: dict) -> list[dict]:
    """Every combination of a grid's axes, as hyperparameter dicts (axes in the given order)."""
    axes = list(grid)
    return [dict(zip(axes, values)) for values in itertools.product(*(grid[axis] for axis in axes))]


def setting_text(point: dict) -> str:
    """A grid point as the selection tables show it: "lr 0.001", "c 100, k 0.1"."""
    return ", ".join(f"{axis} {value:g}" for axis, value in point.items())


def _add(grid: dict[str, RunGroups], text: str, name: str, configs: list[RunConfig]) -> None:
    grid.setdefault(text, {})[label(name)] = configs


def shallow_grid(settings: Settings) -> dict[str, RunGroups]:
    """The cross-validation runs: {grid point: {optimizer label: one run per (selection seed, fold)}}."""
    grid: dict[str, RunGroups] = {}
    for name in LENET_OPTIMIZERS:
        for point in grid_points(settings.shallow_grids[name]):
            configs = [RunConfig(optimizer=name, hyperparameters={**settings.fixed(name), **point}, seed=seed,
                                 num_folds=settings.num_folds, fold=fold, **settings.shallow_base())
                       for seed in settings.selection_seeds for fold in range(settings.num_folds)]
            _add(grid, setting_text(point), name, configs)
    return grid


def deep_grid(settings: Settings, network: str, norm: str) -> dict[str, RunGroups]:
    """The selection runs of one deep benchmark, on the held-out validation split: {grid point: {label: one run per selection seed}}."""
    grid: dict[str, RunGroups] = {}
    for name in DEEP_OPTIMIZERS:
        for point in grid_points(settings.deep_grids(network)[name]):
            configs = [RunConfig(optimizer=name, hyperparameters={**settings.fixed(name), **point}, seed=seed,
                                 validation_fraction=settings.validation_fraction, **settings.deep_base(network, norm, name))
                       for seed in settings.selection_seeds]
            _add(grid, setting_text(point), name, configs)
    return grid


def choose(selection_runs: pd.DataFrame) -> pd.DataFrame:
    """Per optimizer label: the grid point with the lowest mean final held-out loss over its runs (folds and
    seeds); ties: the higher mean held-out accuracy. A point with a diverged run is never chosen."""
    runs = selection_runs.assign(neg_accuracy=-selection_runs["final_accuracy"])
    return select_by_mean(runs, by="setting", score="final_loss", tie_break="neg_accuracy", higher_is_better=False)


def chosen_hyperparameters(grid: dict[str, RunGroups], chosen: pd.DataFrame) -> dict[str, dict]:
    """label → the hyperparameters of its chosen grid point. Where every point diverged, the grid's first point
    is run (:func:`selection_table` says so)."""
    result = {}
    for text, groups in grid.items():
        for group_label, configs in groups.items():
            if group_label not in result:
                result[group_label] = dict(configs[0].hyperparameters)  # the first point, unless chosen below
    for group_label in result:
        setting = chosen.loc[group_label, "setting"] if group_label in chosen.index else math.nan
        if isinstance(setting, str):
            result[group_label] = dict(grid[setting][group_label][0].hyperparameters)
    return result


def shallow_final(settings: Settings, hyperparameters: dict[str, dict]) -> RunGroups:
    """LeNet at each optimizer's chosen hyperparameters, trained on the whole training split, every seed."""
    return {label(name): [RunConfig(optimizer=name, hyperparameters=hyperparameters[label(name)], seed=seed, **settings.shallow_base())
                          for seed in settings.seeds]
            for name in LENET_OPTIMIZERS}


def deep_final(settings: Settings, network: str, norm: str, hyperparameters: dict[str, dict]) -> RunGroups:
    """One deep benchmark at each optimizer's chosen hyperparameters, on the whole training split, every seed."""
    return {label(name): [RunConfig(optimizer=name, hyperparameters=hyperparameters[label(name)], seed=seed,
                                    **settings.deep_base(network, norm, name))
                          for seed in settings.seeds]
            for name in DEEP_OPTIMIZERS}


def metainit_groups(settings: Settings, hyperparameters: dict[str, dict]) -> RunGroups:
    """SVRG and SGD on the MetaInit benchmark at their chosen hyperparameters, with the default initialization
    (the deep benchmark's own runs) and with MetaInit (``metainit_steps`` steps, lr 0.1, momentum 0.9, ε = 1e-5)."""
    network, norm = settings.metainit_network, settings.metainit_norm
    groups = {}
    for name in ("svrg", "sgd"):
        for init, group_label in (("default", label(name)), ("metainit", METAINIT_LABELS[name])):
            steps = {"metainit_steps": settings.metainit_steps} if init == "metainit" else {}
            groups[group_label] = [RunConfig(optimizer=name, hyperparameters=hyperparameters[label(name)], seed=seed, init=init,
                                             **steps, **settings.deep_base(network, norm, name)) for seed in settings.seeds]
    return groups


def variance_configs(settings: Settings, shallow: RunGroups, deep: dict[tuple[str, str], RunGroups]) -> dict[str, RunConfig]:
    """The SVRG runs whose gradient variance is measured along training (first seed): LeNet's, then each of
    ``variance_networks`` with and without BN, at their chosen learning rates."""
    configs = {setting_title("lenet5", None): shallow[label("svrg")][0]}
    for network in settings.variance_networks:
        for norm in NORMS:
            configs[setting_title(network, norm)] = deep[(network, norm)][label("svrg")][0]
    return configs


def planned_runs(settings: Settings) -> list[RunConfig]:
    """Every configuration known before training (the final runs depend on the selection)."""
    configs = [config for groups in shallow_grid(settings).values() for config in all_configs(groups)]
    for network, norm in deep_settings():
        configs += [config for groups in deep_grid(settings, network, norm).values() for config in all_configs(groups)]
    return configs


# ---- tables ---------------------------------------------------------------------------------------------

def selection_table(selection_runs: pd.DataFrame, chosen: pd.DataFrame, order: list[str], held_out: str) -> pd.DataFrame:
    """Per optimizer and grid point: the mean final held-out loss over its runs with their range, the diverged
    runs (with their epochs) and the chosen point (✓; where every point diverged, the first is run and marked so)."""
    rows = []
    for group_label in order:
        runs = selection_runs[selection_runs["label"] == group_label]
        choice = chosen.loc[group_label, "setting"] if group_label in chosen.index else math.nan
        if not isinstance(choice, str) and len(runs):
            choice = runs["setting"].iloc[0]
            mark = "none finished: this one is run"
        else:
            mark = "✓"
        for setting, group in runs.groupby("setting", sort=False):
            diverged = group[group["status"] == "diverged"]
            finished = group["final_loss"].to_numpy(dtype=float)
            smallest, largest = spread(finished)
            rows.append({
                "optimizer": group_label, "setting": setting,
                f"mean final {held_out} loss": format_number(float(np.nanmean(finished)) if np.isfinite(finished).any() else math.nan, 3),
                "range over runs": format_spread(smallest, largest, 3),
                "diverged": (f"{len(diverged)} of {len(group)} (epoch {', '.join(str(int(e)) for e in diverged['diverged_epoch'])})"
                             if len(diverged) else f"0 of {len(group)}"),
                "chosen": mark if setting == choice else "",
            })
    return pd.DataFrame(rows)


def _format_point(point: dict | None) -> str:
    return setting_text(point) if point else "not tuned"


def selected_vs_reported(selections: dict[tuple[str, str | None], dict[str, dict]], settings: Settings) -> pd.DataFrame:
    """The hyperparameters this build chose beside report 003's, per benchmark and optimizer; ``selections`` maps
    (network, norm) (norm None for LeNet) to label → chosen hyperparameters."""
    rows = []
    for (network, norm), chosen in selections.items():
        reported = REPORTED_SELECTION[(network, norm)]
        for name in (LENET_OPTIMIZERS if network == "lenet5" else DEEP_OPTIMIZERS):
            axes = GRID_AXES[name]
            ours = {axis: chosen[label(name)][axis] for axis in axes}
            rows.append({
                "benchmark": setting_title(network, norm), "optimizer": label(name),
                "reported (report 003, MNIST or CIFAR)": _format_point(reported.get(name)),
                "this build": setting_text(ours),
                "chosen by": (f"{settings.num_folds}-fold cross-validation" if network == "lenet5"
                              else f"a {settings.validation_fraction:.0%} validation split"),
            })
    return pd.DataFrame(rows)


def results_display(table: pd.DataFrame) -> pd.DataFrame:
    """A results table (:func:`~optbench.studies.common.results_table` with final test loss and accuracy) as text."""
    shown = pd.DataFrame({"optimizer": list(table.index)})
    shown["final test loss, mean [95% interval]"] = [format_mean_interval(m, lo, hi, 3) for m, lo, hi in
                                                     zip(table["final_loss"], table["final_loss_low"], table["final_loss_high"])]
    shown["range over seeds"] = [format_spread(lo, hi, 3) for lo, hi in zip(table["final_loss_min"], table["final_loss_max"])]
    shown["final test accuracy (%), mean [95% interval]"] = [
        format_mean_interval(100 * m, 100 * lo, 100 * hi, 1)
        for m, lo, hi in zip(table["final_accuracy"], table["final_accuracy_low"], table["final_accuracy_high"])]
    shown["diverged runs"] = [f"{d} of {n}" for d, n in zip(table["diverged"], table["runs"])]
    return shown


def variance_summary(measurements: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per measured network: the geometric mean over measurement points of Var(SVRG)/Var(SGD) with a 95%
    bootstrap interval, its first and last values, the share of points where SVRG's variance is lower and the
    median drift of the iterate from its snapshot (relative)."""
    rows = []
    for network, frame in measurements.items():
        ratios = frame["ratio"].to_numpy(dtype=float)
        finite = ratios[np.isfinite(ratios) & (ratios > 0)]
        mean, low, high = mean_interval(np.log(finite))
        rows.append({"network": network, "points": len(finite), "ratio": math.exp(mean) if finite.size else math.nan,
                     "ratio_low": math.exp(low) if math.isfinite(low) else math.nan,
                     "ratio_high": math.exp(high) if math.isfinite(high) else math.nan,
                     "first": float(finite[0]) if finite.size else math.nan, "last": float(finite[-1]) if finite.size else math.nan,
                     "share_below_one": float(np.mean(finite < 1.0)) if finite.size else math.nan,
                     "drift": float(frame["drift"].median())})
    return pd.DataFrame(rows).set_index("network")


def variance_display(summary: pd.DataFrame) -> pd.DataFrame:
    """:func:`variance_summary` as text: the ratio's geometric mean with its interval, its first and last values,
    how often SVRG's variance was the lower and the median drift."""
    return pd.DataFrame({
        "SVRG on": list(summary.index),
        "Var(SVRG) / Var(SGD), geometric mean [95% interval]": [
            format_mean_interval(m, lo, hi, 3) for m, lo, hi in zip(summary["ratio"], summary["ratio_low"], summary["ratio_high"])],
        "first → last": [f"{format_number(first, 3)} → {format_number(last, 3)}" for first, last in zip(summary["first"], summary["last"])],
        "SVRG's variance lower": [f"{round(share * count)} of {count}" if count else "–"
                                  for share, count in zip(summary["share_below_one"], summary["points"])],
        "median drift (%)": [format_number(100 * value, 2) for value in summary["drift"]],
    })


def quotient_table(traces: pd.DataFrame) -> pd.DataFrame:
    """The gradient quotient before and after MetaInit, per seed and as a mean over seeds."""
    rows = []
    for seed, trace in traces.groupby("seed", sort=True):
        trace = trace.sort_values("step")
        rows.append({"seed": str(seed), "before": trace["gradient_quotient"].iloc[0], "after": trace["gradient_quotient"].iloc[-1]})
    frame = pd.DataFrame(rows)
    shown = frame.assign(**{column: [format_number(value, 3) for value in frame[column]] for column in ("before", "after")})
    mean_before, mean_after = mean_interval(frame["before"]), mean_interval(frame["after"])
    shown.loc[len(shown)] = {"seed": "mean [95% interval]", "before": format_mean_interval(*mean_before, 3),
                             "after": format_mean_interval(*mean_after, 3)}
    return shown.rename(columns={"before": "gradient quotient before MetaInit", "after": "after MetaInit"})


# ---- figures --------------------------------------------------------------------------------------------

def early_budget(frame: pd.DataFrame) -> float:
    """The early comparison point of C22: the gradient evaluations of the costliest method's first epoch (mean
    over its runs), so every method has been measured by then."""
    first = frame[frame["epoch"] == 1].groupby("label")["grad_evals"].mean()
    return float(first.max())


def epoch_cost_ratio(frame: pd.DataFrame, label: str, reference: str = SGD_LABEL) -> float:
    """``label``'s gradient evaluations in its first epoch over ``reference``'s (means over their runs): what
    an epoch costs it, counted as in the figures, relative to SGD's."""
    first = frame[frame["epoch"] == 1].groupby("label")["grad_evals"].mean()
    return float(first[label] / first[reference])


def _legend_below(fig, axes, ncol: int = 4) -> None:
    handles, names = {}, []
    for ax in axes:
        for handle, name in zip(*ax.get_legend_handles_labels()):
            if name not in handles:
                handles[name] = handle
                names.append(name)
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    fig.legend([handles[name] for name in names], names, loc="lower center", ncol=min(ncol, len(names)), frameon=False,
               fontsize="small")


def cross_validation_figure(selection_runs: pd.DataFrame, storm_label: str = "STORM"):
    """Mean final held-out loss over folds against the learning rate (one line per optimizer, crosses where a run
    diverged), and STORM's c × k grid as a heatmap."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(9.5, 3.8), gridspec_kw={"width_ratios": [1.3, 1]})
    lr_runs = selection_runs[selection_runs["label"] != storm_label]
    for group_label, runs in lr_runs.groupby("label", sort=False):
        runs = runs.assign(lr=runs["setting"].str.replace("lr ", "", regex=False).astype(float))
        finished = runs[runs["status"] != "diverged"].groupby("lr")["final_loss"].mean()
        look = styles.style(group_label)
        left.plot(finished.index, finished.to_numpy(), color=look.color, linestyle=look.linestyle, marker=look.marker, label=group_label)
        diverged = sorted(set(runs.loc[runs["status"] == "diverged", "lr"]))
        if diverged:
            left.plot(diverged, [left.get_ylim()[1]] * len(diverged), marker="X", linestyle="none", color=look.color,
                      markersize=9, clip_on=False)
    left.set_xscale("log")
    left.set_xlabel("learning rate")
    left.set_ylabel("final held-out loss (mean over folds)")
    left.legend(fontsize="small", frameon=False)
    storm = selection_runs[selection_runs["label"] == storm_label]
    if len(storm):
        parts = storm["setting"].str.extract(r"c (?P<c>[^,]+), k (?P<k>.+)").astype(float)
        storm = storm.assign(c=parts["c"], k=parts["k"])
        table = storm[storm["status"] != "diverged"].pivot_table(index="c", columns="k", values="final_loss", aggfunc="mean")
        table = table.reindex(index=sorted(set(storm["c"])), columns=sorted(set(storm["k"])))
        notes = table.map(lambda value: format_number(value, 2))
        for (c, k), runs in storm.groupby(["c", "k"]):
            if (runs["status"] == "diverged").any():
                notes.loc[c, k] = "diverged"
        plotting.heatmap(table, ax=right, annotations=notes, cbar_kws={"label": "mean final held-out loss"})
        right.set_xticklabels([f"{value:g}" for value in table.columns])
        right.set_yticklabels([f"{value:g}" for value in table.index], rotation=0)
        right.set_xlabel("STORM's k")
        right.set_ylabel("STORM's c")
    fig.tight_layout()
    return fig


def deep_figure(frames: dict[tuple[str, str], pd.DataFrame], metric: str = "test_loss"):
    """One panel per deep benchmark: ``metric`` (log scale) against gradient evaluations, mean over seeds with a
    95% band, diverged runs crossed out at their last finite point."""
    networks = list(dict.fromkeys(network for network, _ in frames))
    fig, axes = plt.subplots(len(networks), len(NORMS), figsize=(4.2 * len(NORMS), 3.1 * len(networks) + 0.6), squeeze=False)
    for row, network in enumerate(networks):
        for column, norm in enumerate(NORMS):
            ax = axes[row][column]
            frame = frames[(network, norm)]
            plotting.metric_curves(frame, metric, x="grad_evals", ax=ax, log_y=True)
            plotting.mark_diverged(ax, frame, metric, x="grad_evals")
            ax.set_title(setting_title(network, norm), fontsize="medium")
            ax.xaxis.set_major_locator(mticker.MaxNLocator(nbins=4))
            if row < len(networks) - 1:
                ax.set_xlabel("")
    for row in axes:  # losses of one network compare across the BN divide: one y range per row
        low = min(ax.get_ylim()[0] for ax in row)
        high = max(ax.get_ylim()[1] for ax in row)
        for ax in row:
            ax.set_ylim(low, high)
            plotting.label_log_axis(ax)
    _legend_below(fig, [ax for row in axes for ax in row])
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig


def variance_figure(measurements: dict[str, pd.DataFrame]):
    """Along SVRG's training, per network: the variance of the plain minibatch gradient (solid) and of SVRG's estimate
    (dotted); their ratio, with 1 (no reduction) marked; and the iterate's drift from its snapshot."""
    fig, axes = plt.subplots(2, 2, figsize=(8.4, 6.4))
    variances, ratios, drift, legend = axes[0][0], axes[0][1], axes[1][0], axes[1][1]
    for network, frame in measurements.items():
        look = styles.style(network)
        variances.plot(frame["epochs_done"], frame["variance_sgd"], color=look.color, marker=look.marker, markersize=4, linestyle="-")
        variances.plot(frame["epochs_done"], frame["variance_svrg"], color=look.color, marker=look.marker, markersize=4, linestyle=":")
        ratios.plot(frame["epochs_done"], frame["ratio"], color=look.color, linestyle=look.linestyle, marker=look.marker, markersize=5,
                    label=network)
        drift.plot(frame["epochs_done"], 100 * frame["drift"], color=look.color, linestyle=look.linestyle, marker=look.marker,
                   markersize=5)
    for ax, title in ((variances, "variance (trace of covariance)"), (ratios, "Var(SVRG) / Var(minibatch)"),
                      (drift, "drift from the snapshot (%)")):
        ax.set_yscale("log")
        ax.set_xlabel("epochs of training")
        ax.set_ylabel(title)
    ratios.axhline(1.0, color="black", linewidth=0.8, linestyle=(0, (4, 2)))
    handles, names = ratios.get_legend_handles_labels()
    handles += [plt.Line2D([], [], color="black", linestyle="-"), plt.Line2D([], [], color="black", linestyle=":")]
    names += ["minibatch gradient (left)", "SVRG's estimate (left)"]
    legend.axis("off")
    legend.legend(handles, names, loc="center", frameon=False)
    fig.tight_layout()
    return fig


def quotient_figure(traces: pd.DataFrame, title: str):
    """The gradient quotient along MetaInit's steps: mean over seeds with a 95% band (log scale)."""
    import seaborn as sns

    fig, ax = plt.subplots(figsize=(6, 3.4))
    ax.set_yscale("log")  # first: seaborn then averages and bands the logarithms
    sns.lineplot(data=traces, x="step", y="gradient_quotient", errorbar=plotting.band,
                 color=styles.style(METAINIT_LABELS["svrg"]).color, ax=ax)
    plotting.label_log_axis(ax)
    ax.xaxis.set_major_locator(mticker.MaxNLocator(integer=True))
    ax.set_xlabel("MetaInit step")
    ax.set_ylabel("gradient quotient")
    ax.set_title(title, fontsize="medium")
    fig.tight_layout()
    return fig


# ---- claims ---------------------------------------------------------------------------------------------

def _ratio(log_value: float) -> str:
    return f"×{math.exp(log_value):.2f}"


def _log_loss(runs: pd.DataFrame, group_label: str, column: str = "final_loss") -> pd.Series:
    values = seed_values(runs, group_label, column)
    return np.log(values.where(values > 0))


def trained_beyond_chance(runs: pd.DataFrame, chance: float) -> bool:
    """Whether some method's mean final test accuracy over its runs reaches ``chance`` + :data:`LEARNED_POINTS` pp."""
    means = runs.groupby("label")["final_accuracy"].mean()
    return bool((means >= chance + LEARNED_POINTS / 100).any())


def high_lr_divergence(selection_runs: pd.DataFrame, settings: Settings, network: str) -> pd.Series:
    """1 for each selection run of SGD at the highest learning rate of ``network``'s grid that diverged, else 0
    (indexed by seed)."""
    highest = max(settings.deep_grids(network)["sgd"]["lr"])
    runs = selection_runs[(selection_runs["label"] == label("sgd")) & (selection_runs["setting"] == setting_text({"lr": highest}))]
    return (runs["status"] == "diverged").astype(float).set_axis(runs["seed"].to_numpy())


def check_claims(lenet_runs: pd.DataFrame, lenet_early: pd.DataFrame, deep_runs: dict[tuple[str, str], pd.DataFrame],
                 deep_selection: dict[tuple[str, str], pd.DataFrame], metainit_runs: pd.DataFrame, settings: Settings) -> list[Claim]:
    """Decide claims C21–C27.

    ``lenet_runs`` and the values of ``deep_runs`` (keyed by (network, norm)) and ``metainit_runs`` are
    :func:`~optbench.studies.common.per_run_summary` frames of the final runs; ``lenet_early`` is
    :func:`~optbench.studies.common.value_at`'s test loss of LeNet's final runs at :func:`early_budget`;
    ``deep_selection`` the per-run summaries of the deep selection runs (with their ``setting``).
    Losses are compared on a log scale (thresholds are ratios); a diverged run has no final loss and leaves
    its comparison (the chapter names it).
    """
    claims = []
    leaders, reducers = ("sgd", "adam", "adagrad"), ("svrg", "storm")
    pairs = [(reducer, leader) for reducer in reducers for leader in leaders]

    c21 = all_of([decide_greater(_log_loss(lenet_runs, label(leader)), _log_loss(lenet_runs, label(reducer)), level=LEVEL / len(pairs),
                                 describe=_ratio, name=f"{label(leader)} / {label(reducer)}") for reducer, leader in pairs])
    claims.append(Claim("C21", "003", "On LeNet, SVRG and STORM end with lower test loss than SGD, Adam and AdaGrad.",
                        "each of SGD's, Adam's and AdaGrad's final test loss exceeds each of SVRG's and STORM's (after the same "
                        "epochs, as in the report); paired t-tests on log loss over seeds, α = 0.05/6", c21))

    early = lenet_early.assign(value=np.log(lenet_early["value"].where(lenet_early["value"] > 0)))
    c22 = all_of([decide_greater(seed_values(early, label(reducer), "value"), seed_values(early, label(leader), "value"),
                                 level=LEVEL / len(pairs), describe=_ratio, name=f"{label(reducer)} / {label(leader)}")
                  for reducer, leader in pairs])
    claims.append(Claim("C22", "003", "On LeNet, SGD, Adam and AdaGrad lead early (per gradient evaluation).",
                        "at the gradient evaluations of SVRG's first epoch, each of SVRG's and STORM's test loss (interpolated "
                        "between epochs) exceeds each of SGD's, Adam's and AdaGrad's; paired t-tests on log loss, α = 0.05/6", c22))

    margin = math.log(BEAT_RATIO)
    learned = {key: trained_beyond_chance(runs, settings.chance_accuracy(key[0])) for key, runs in deep_runs.items()}
    untrained = f"no method's mean final test accuracy reached chance + {LEARNED_POINTS:g} pp on"
    others = ("sgd", "adam")

    def svrg_against_others(norm: str, beats: bool) -> Decision:
        keys = [(network, norm) for network in DEEP_NETWORKS if learned[(network, norm)]]
        if not keys:
            return not_testable(f"{untrained} {' or '.join(setting_title(network, norm) for network in DEEP_NETWORKS)} at this scale")
        level = LEVEL / (len(keys) * len(others))
        if beats:  # C24: the others' loss is not below SVRG's by more than the margin
            return all_of([decide_greater(_log_loss(deep_runs[key], label(other)), _log_loss(deep_runs[key], label("svrg")), threshold=-margin,
                                          level=level, describe=_ratio, name=f"{setting_title(*key)}: {label(other)} / SVRG")
                           for key in keys for other in others])
        return all_of([decide_greater(_log_loss(deep_runs[key], label("svrg")), _log_loss(deep_runs[key], label(other)), threshold=-margin,
                                      level=level, describe=_ratio, name=f"{setting_title(*key)}: SVRG / {label(other)}")
                       for key in keys for other in others])

    skipped = f"; networks no method trained past chance + {LEARNED_POINTS:g} pp are left out"
    claims.append(Claim("C23", "003", "With BN, SVRG does not beat SGD and Adam (ResNet-18 and ResNet-101).",
                        f"on each network with BN, SVRG's final test loss is above ×{1 / BEAT_RATIO:.3f} of SGD's and of Adam's "
                        f"(not lower by more than {BEAT_RATIO - 1:.0%}); one-sided paired t-tests on log loss, α = 0.05 over the "
                        f"comparisons{skipped}", svrg_against_others("batch", beats=False)))
    claims.append(Claim("C24", "003", "Without BN, SVRG matches or beats SGD and Adam.",
                        f"on each network without BN, SVRG's final test loss is below ×{BEAT_RATIO:.2f} of SGD's and of Adam's "
                        f"(not higher by more than {BEAT_RATIO - 1:.0%}); one-sided paired t-tests on log loss, α = 0.05 over the "
                        f"comparisons{skipped}", svrg_against_others("none", beats=True)))

    networks = [network for network in DEEP_NETWORKS if learned[(network, "batch")] or learned[(network, "none")]]
    if networks:
        comparisons = [(network, name) for network in networks for name in REPORT_DEEP_OPTIMIZERS]
        c25 = all_of([decide_greater(_log_loss(deep_runs[(network, "none")], label(name)), _log_loss(deep_runs[(network, "batch")], label(name)),
                                     level=LEVEL / len(comparisons), describe=_ratio, name=f"{NETWORK_TITLES[network]} {label(name)}: no BN / BN")
                      for network, name in comparisons])
    else:
        c25 = not_testable(f"{untrained} either ResNet, with or without BN, at this scale")
    claims.append(Claim("C25", "003", "Every method does worse without BN than with it.",
                        "for SGD, Adam and SVRG on each network, the final test loss without BN exceeds the one with BN; paired "
                        "t-tests on log loss over seeds, α = 0.05 over the comparisons; a network no method trained past chance + "
                        f"{LEARNED_POINTS:g} pp, with or without BN, is left out", c25))

    without_bn = [(network, "none") for network in DEEP_NETWORKS]
    divergence = pd.concat([high_lr_divergence(deep_selection[key], settings, key[0]) for key in without_bn], ignore_index=True)
    c26 = decide_above(divergence, DIVERGED_SHARE, name="SGD at the highest learning rate",
                       describe=lambda excess: f"{int(divergence.sum())} of {len(divergence)} runs diverged, {excess:+.2f}")
    claims.append(Claim("C26", "003", "Without BN, high SGD learning rates diverge (NaN).",
                        f"among the selection runs without BN of SGD at the highest learning rate of each network's grid, the share "
                        f"that diverged (a non-finite loss) exceeds {DIVERGED_SHARE:g}; one-sample t-test on the 0/1 outcomes, "
                        "α = 0.05 (no spread: all or none decides)", c26))

    metainit_svrg = metainit_runs[metainit_runs["label"].isin([label("svrg"), METAINIT_LABELS["svrg"]])]
    if settings.metainit_norm != "none":
        c27 = not_testable(f"the claim is about the network without BN; this build applies MetaInit to "
                           f"{setting_title(settings.metainit_network, settings.metainit_norm)}")
    elif not trained_beyond_chance(metainit_svrg, settings.chance_accuracy(settings.metainit_network)):
        c27 = not_testable(f"SVRG's mean final test accuracy reached chance + {LEARNED_POINTS:g} pp on "
                           f"{setting_title(settings.metainit_network, 'none')} neither with nor without MetaInit at this scale")
    else:
        c27 = decide_equivalent(_log_loss(metainit_runs, METAINIT_LABELS["svrg"]), _log_loss(metainit_runs, label("svrg")),
                                margin=math.log(LITTLE_EFFECT_RATIO), describe=_ratio, name="SVRG + MetaInit / SVRG")
    claims.append(Claim("C27", "003", "MetaInit has little effect on SVRG without BN.",
                        f"on {setting_title(settings.metainit_network, 'none')}, SVRG's final test loss with MetaInit is within "
                        f"×{1 / LITTLE_EFFECT_RATIO:.2f}–×{LITTLE_EFFECT_RATIO:.2f} of the loss without it; two one-sided paired "
                        f"t-tests on log loss (equivalence), α = 0.05; not testable where SVRG reached chance + {LEARNED_POINTS:g} pp "
                        "neither way", c27))
    return claims


# ---- the scale box and the settings table ---------------------------------------------------------------

def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _seeds(seeds) -> str:
    return ("seed " if len(seeds) == 1 else "seeds ") + ", ".join(map(str, seeds))


def _grid_text(grids: dict, names) -> str:
    return "; ".join(f"{label(name)} " + " × ".join(f"{axis} {{{', '.join(f'{value:g}' for value in values)}}}"
                                                    for axis, values in grids[name].items()) for name in names)


def settings_rows(settings: Settings, profile: str) -> dict[str, str]:
    """The chapter's settings table, rendered from the parameters actually used."""
    from ..report import describe_data

    fixed = "; ".join(f"{label(name)}: " + ", ".join(f"{key} {value:g}" for key, value in values.items())
                      for name, values in settings.fixed_hyperparameters.items())
    return {
        "profile": profile,
        "LeNet data": describe_data(settings.shallow_dataset, settings.shallow_image_size, settings.shallow_max_train_examples),
        "LeNet training": f"{_count(settings.shallow_num_epochs, 'epoch')}, batch {settings.shallow_batch_size}",
        "LeNet selection": f"{settings.num_folds}-fold stratified cross-validation on the training split, lowest mean final "
                           f"held-out loss, {_seeds(settings.selection_seeds)}",
        "LeNet grids": _grid_text(settings.shallow_grids, LENET_OPTIMIZERS),
        "ResNet-18 data": describe_data(settings.resnet18_dataset, settings.deep_image_size, settings.resnet18_max_train_examples),
        "ResNet-101 data": describe_data(settings.resnet101_dataset, settings.deep_image_size, settings.resnet101_max_train_examples),
        "deep networks": f"ResNet-18 width ×{settings.resnet18_width:g}, ResNet-101 width ×{settings.resnet101_width:g}, "
                         "each with BatchNorm and without normalization",
        "deep training": f"{_count(settings.deep_num_epochs, 'epoch')} (SVRG {settings.svrg_num_epochs}), batch {settings.deep_batch_size}, "
                         f"augmentation {'pad-4 crop and flip' if settings.augment else 'none'}",
        "deep selection": f"lowest final loss on a stratified {settings.validation_fraction:.0%} of the training split, "
                          f"{_seeds(settings.selection_seeds)}",
        "ResNet-18 grids": _grid_text(settings.resnet18_grids, DEEP_OPTIMIZERS),
        "ResNet-101 grids": _grid_text(settings.resnet101_grids, DEEP_OPTIMIZERS),
        "fixed hyperparameters": fixed or "none",
        "final runs": f"{_seeds(settings.seeds)}, on the whole training split, evaluated on the test set",
        "variance measurement": f"SVRG's runs on LeNet and {', '.join(NETWORK_TITLES[n] for n in settings.variance_networks) or 'no deep network'} "
                                f"(first seed): {settings.variance_batches} minibatches at "
                                f"{_count(settings.variance_points_per_epoch, 'point')} per epoch",
        "MetaInit": f"{setting_title(settings.metainit_network, settings.metainit_norm)}: {settings.metainit_steps} steps, lr 0.1, "
                    "momentum 0.9, ε = 1e-5, on batches of 32 random N(0, 1) images with random labels",
    }


def source_settings(settings: Settings) -> list[tuple[str, str, str]]:
    """(setting, report 003, this build) rows of the chapter's scale box."""
    from ..report import describe_data

    return [
        ("LeNet data", "MNIST, 28×28, 60,000 training and 10,000 test images",
         describe_data(settings.shallow_dataset, settings.shallow_image_size, settings.shallow_max_train_examples)),
        ("LeNet training", "100 epochs, batch 32", f"{_count(settings.shallow_num_epochs, 'epoch')}, batch {settings.shallow_batch_size}"),
        ("LeNet selection", "4-fold cross-validation, seed 1",
         f"{settings.num_folds}-fold cross-validation, {_seeds(settings.selection_seeds)}"),
        ("LeNet grids", _grid_text(REPORT_SHALLOW_GRIDS, LENET_OPTIMIZERS), _grid_text(settings.shallow_grids, LENET_OPTIMIZERS)),
        ("ResNet-18 data", "CIFAR-10, 32×32, 50,000 training and 10,000 test images",
         describe_data(settings.resnet18_dataset, settings.deep_image_size, settings.resnet18_max_train_examples)),
        ("ResNet-101 data", "CIFAR-100, 32×32, 50,000 training and 10,000 test images",
         describe_data(settings.resnet101_dataset, settings.deep_image_size, settings.resnet101_max_train_examples)),
        ("network widths", "full (64 base channels)", f"ResNet-18 ×{settings.resnet18_width:g}, ResNet-101 ×{settings.resnet101_width:g}"),
        ("deep training", "200 epochs (SVRG 150), batch 128, pad-4 crop and flip",
         f"{_count(settings.deep_num_epochs, 'epoch')} (SVRG {settings.svrg_num_epochs}), batch {settings.deep_batch_size}, "
         f"{'pad-4 crop and flip' if settings.augment else 'no augmentation'}"),
        ("deep grids", f"ResNet-18: {_grid_text(REPORT_DEEP_GRIDS['resnet18'], REPORT_DEEP_OPTIMIZERS)}; ResNet-101: "
                       f"{_grid_text(REPORT_DEEP_GRIDS['resnet101'], REPORT_DEEP_OPTIMIZERS)}; STORM not tuned",
         f"ResNet-18: {_grid_text(settings.resnet18_grids, DEEP_OPTIMIZERS)}; ResNet-101: {_grid_text(settings.resnet101_grids, DEEP_OPTIMIZERS)}"),
        ("seeds", "one run (seed 1)", f"{len(settings.seeds)} ({', '.join(map(str, settings.seeds))})"),
        ("MetaInit", "ResNet-101 without BN, 200 steps",
         f"{setting_title(settings.metainit_network, settings.metainit_norm)}, {settings.metainit_steps} steps"),
    ]


#: report 003's grids (Tables 4.1, 4.3, 4.6; its SVRG grids print 0.010 where 0.001 is meant)
REPORT_SHALLOW_GRIDS = {
    "adam": {"lr": [1e-5, 1e-4, 1e-3, 0.01, 0.1]}, "sgd": {"lr": [1e-5, 1e-4, 1e-3, 0.01, 0.1]}, "adagrad": {"lr": [1e-4, 1e-3, 0.01, 0.1]},
    "svrg": {"lr": [1e-5, 1e-4, 1e-3, 0.01, 0.1]}, "storm": {"c": [0.1, 1, 10, 100, 1000], "k": [1e-3, 0.01, 0.1, 1]}}
REPORT_DEEP_GRIDS = {
    "resnet18": {"adam": {"lr": [1e-5, 1e-4, 1e-3]}, "sgd": {"lr": [0.005, 0.01, 0.05, 0.1]}, "svrg": {"lr": [0.0005, 0.001, 0.005, 0.01]}},
    "resnet101": {"adam": {"lr": [1e-6, 1e-5, 1e-4]}, "sgd": {"lr": [0.005, 0.01, 0.05]}, "svrg": {"lr": [0.0005, 0.001, 0.005]}},
}


STUDY = Study(
    name="study4_variance_reduction",
    prefix="s4",
    title="Study 4 — Variance reduction, batch normalization and MetaInit",
    reports=("003",),
    question="Do SVRG and STORM beat SGD and Adam on a shallow network, does batch normalization break SVRG's variance "
             "reduction on deep ones, and does MetaInit help without it?",
    settings=Settings,
    planned_runs=planned_runs,
    figures=("fig-s4-cv", "fig-s4-lenet", "fig-s4-deep", "fig-s4-variance", "fig-s4-quotient", "fig-s4-metainit"),
    tables=("tbl-s4-settings", "tbl-s4-cv", "tbl-s4-lenet", "tbl-s4-deep-grid", "tbl-s4-selected", "tbl-s4-deep",
            "tbl-s4-variance", "tbl-s4-quotient", "tbl-s4-metainit", "tbl-s4-claims"),
    claims=tuple(f"C{number}" for number in range(21, 28)),
)


def workload_table(lenet_frame: pd.DataFrame, deep_frames: dict, settings: Settings) -> pd.DataFrame:
    """The chapter's workloads for the summary's performance profiles: LeNet and each deep benchmark at the chosen
    hyperparameters, one row per run (:func:`optbench.chapter_results.workload_runs`)."""
    from ..chapter_results import workload_runs

    parts = [workload_runs(lenet_frame, f"{setting_title('lenet5', None)} (study 4) on {settings.shallow_dataset}")]
    parts += [workload_runs(frame, f"{setting_title(network, norm)} (study 4) on {getattr(settings, f'{network}_dataset')}")
              for (network, norm), frame in deep_frames.items()]
    return pd.concat(parts, ignore_index=True)


def headlines(lenet_table: pd.DataFrame, deep_tables: dict) -> dict[str, str]:
    """The chapter's findings the summary shows: the lowest final test loss on LeNet and on each deep benchmark."""
    from ..statistics import format_number

    found = {f"lowest final test loss, {setting_title('lenet5', None)}":
             f"{lenet_table['final_loss'].idxmin()} ({format_number(lenet_table['final_loss'].min(), 3)})"}
    for (network, norm), table in deep_tables.items():
        found[f"lowest final test loss, {setting_title(network, norm)}"] = (
            f"{table['final_loss'].idxmin()} ({format_number(table['final_loss'].min(), 3)})")
    return found
