"""Study 3: hybrid and second-order optimizers on ResNet-18 (report 002).

Eight optimizers with report 002's settings (its Tables I and II): SGD+momentum, Adam, ATMO and PADAM-SGD
each with constant and with dynamic mixing weights, AdaHessian, and AdaSGD (AdaHessian mixed with SGD
momentum). Profiles smaller than ``paper`` multiply every optimizer's epochs and scheduler milestones by
one fraction, ``epoch_fraction`` (rounded half up), so the schedules keep their shape.

Besides the curves and the best test accuracy beside report 002's Table III, the chapter measures

- cost per epoch by interleaved timing (:mod:`optbench.timing`), AdaHessian also with its Hessian
  estimated every k steps (``hessian_every``) and trained so, for the accuracy that saving costs;
- time to a target accuracy (:func:`~optbench.studies.common.time_to_target`): a fraction
  ``target_fraction`` of the best run's best test accuracy;
- a scheduler ablation: none / CosineAnnealingLR / MultiStepLR for the first-order optimizers;
- the dynamic mixing weights, read from the optimizers' own schedule (``on_epoch_start``);

and decides claims C16–C20 with :mod:`optbench.verdicts`.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from .. import optim, protocol, styles
from ..config import SCHEDULERS, RunConfig
from ..statistics import format_mean_interval, format_number, mean_interval
from ..verdicts import LEVEL, Claim, Decision, all_of, any_of, decide_above, decide_best, decide_equivalent, decide_greater, not_testable
from . import Study
from .common import RunGroups, all_configs, check_list, is_positive_number, is_seed, ranking, seed_values


@dataclass(frozen=True)
class Variant:
    """One optimizer of the chapter: its registry name, display label, and the hyperparameters that select
    its form (the dynamic weights), which the chapter's parameters cannot change."""

    optimizer: str
    label: str
    form: dict = field(default_factory=dict)


styles.register_variant("Dynamic ATMO", "atmo", color="reddish purple", dashes="solid")
styles.register_variant("Dynamic PADAM-SGD", "padam_sgd", color="sky blue", dashes="solid")

#: the chapter's optimizers by parameter key, in report 002's order
VARIANTS = {
    "sgd": Variant("sgd", styles.label("sgd")),
    "adam": Variant("adam", styles.label("adam")),
    "atmo": Variant("atmo", styles.label("atmo"), {"dynamic_weights": False}),
    "dynamic_atmo": Variant("atmo", "Dynamic ATMO", {"dynamic_weights": True}),
    "padam_sgd": Variant("padam_sgd", styles.label("padam_sgd"), {"dynamic_weights": False}),
    "dynamic_padam_sgd": Variant("padam_sgd", "Dynamic PADAM-SGD", {"dynamic_weights": True}),
    "adahessian": Variant("adahessian", styles.label("adahessian")),
    "adasgd": Variant("adasgd", styles.label("adasgd"), {"dynamic_weights": True}),
}
FIRST_ORDER = ("sgd", "adam", "atmo", "dynamic_atmo", "padam_sgd", "dynamic_padam_sgd")
SECOND_ORDER = ("adahessian", "adasgd")

#: report 002's Table I (the registry's defaults fill in betas, eps, p and the constant weights 0.5/0.5)
REPORT_HYPERPARAMETERS = {
    "sgd": {"lr": 0.01, "momentum": 0.95, "weight_decay": 0.0005},
    "adam": {"lr": 0.001, "weight_decay": 0.0005, "betas": [0.9, 0.999]},
    "atmo": {"lr": 0.01, "momentum": 0.95, "weight_decay": 0.0005, "betas": [0.9, 0.999], "sgd_weight": 0.5, "adam_weight": 0.5},
    "dynamic_atmo": {"lr": 0.001, "momentum": 0.95, "weight_decay": 0.0005, "betas": [0.9, 0.999]},
    "padam_sgd": {"lr": 0.01, "momentum": 0.9, "weight_decay": 0.025},
    "dynamic_padam_sgd": {"lr": 0.01, "momentum": 0.9, "weight_decay": 0.025},
    "adahessian": {"lr": 0.15, "weight_decay": 0.0005, "betas": [0.9, 0.999]},
    "adasgd": {"lr": 0.1, "momentum": 0.95, "weight_decay": 0.0005, "betas": [0.9, 0.999]},
}
REPORT_BATCH_SIZES = {"sgd": 256, "adam": 256, "atmo": 256, "dynamic_atmo": 256, "padam_sgd": 128, "dynamic_padam_sgd": 128,
                      "adahessian": 256, "adasgd": 256}
#: report 002's Table II: scheduler, epochs and MultiStepLR milestones (factor 0.1; cosine to 0 over the run)
REPORT_SCHEDULES = {
    "sgd": {"scheduler": "none", "num_epochs": 350},
    "adam": {"scheduler": "none", "num_epochs": 350},
    "atmo": {"scheduler": "none", "num_epochs": 350},
    "dynamic_atmo": {"scheduler": "cosine", "num_epochs": 350},
    "padam_sgd": {"scheduler": "multistep", "num_epochs": 200, "milestones": [100, 150]},
    "dynamic_padam_sgd": {"scheduler": "multistep", "num_epochs": 200, "milestones": [100, 150]},
    "adahessian": {"scheduler": "multistep", "num_epochs": 160, "milestones": [80, 120]},
    "adasgd": {"scheduler": "multistep", "num_epochs": 200, "milestones": [100, 140, 180]},
}
#: report 002's Table III: best test accuracy (one run each, CIFAR-10)
REPORTED_BEST_ACCURACY = {"sgd": 0.8539, "adam": 0.8370, "atmo": 0.8270, "dynamic_atmo": 0.8680, "padam_sgd": 0.8997,
                          "dynamic_padam_sgd": 0.8973, "adahessian": 0.8372, "adasgd": 0.8771}
SCHEDULER_TITLES = {"none": "none", "cosine": "CosineAnnealingLR", "multistep": "MultiStepLR"}
#: the ablation's MultiStepLR for optimizers that report 002 ran without one: decays at these fractions of the
#: run, PADAM-SGD's (epochs 100 and 150 of 200)
ABLATION_MILESTONE_FRACTIONS = (0.5, 0.75)
#: C18: AdaHessian overfits when its final test loss exceeds its minimum by more than this factor
OVERFIT_RISE = 1.10
#: C19: "about 4×", and how far from 4 still counts as about (a factor either way: 3× to 5.3×)
CLAIMED_COST_RATIO = 4.0
COST_RATIO_TOLERANCE = 4.0 / 3.0
SCHEDULE_KEYS = ("scheduler", "num_epochs", "milestones")


def round_half_up(value: float) -> int:
    return int(math.floor(value + 0.5))


def hessian_every_label(every: int) -> str:
    """The display label of AdaHessian estimating its Hessian every ``every`` steps (registered on first use)."""
    if every == 1:
        return VARIANTS["adahessian"].label
    label = f"AdaHessian, Hessian every {every} steps"
    # a fixed colour per k (powers of two apart), so a variant looks the same whatever else a profile times
    colours = ("orange", "reddish purple", "sky blue", "bluish green", "grey")
    styles.register_variant(label, "adahessian", color=colours[(round(math.log2(every)) - 1) % len(colours)], dashes="dotted")
    return label


def _check_keys(name: str, mapping, required: bool) -> None:
    if not isinstance(mapping, dict):
        raise ValueError(f"invalid {name} {mapping!r}: give a mapping from optimizer key ({', '.join(VARIANTS)}) to its settings")
    unknown = sorted(set(mapping) - set(VARIANTS))
    if unknown:
        raise ValueError(f"invalid {name}: unknown optimizer key(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(VARIANTS)}")
    missing = [key for key in VARIANTS if key not in mapping]
    if required and missing:
        raise ValueError(f"invalid {name}: missing {', '.join(map(repr, missing))}; give every optimizer key: {', '.join(VARIANTS)}")


@dataclass
class Settings:
    """The chapter's parameters; the defaults are the notebook's parameters cell (the ``default`` profile's scale)."""

    dataset: str = "digits"
    image_size: int | None = None
    model_width: float = 0.125
    seeds: list = field(default_factory=lambda: [0, 1, 2])
    max_train_examples: int | None = None
    augment: bool = False
    #: every optimizer's epochs and milestones are report 002's times this (rounded half up); 1 in ``paper``
    epoch_fraction: float = 0.028
    #: per optimizer key (:data:`VARIANTS`): report 002's Table I; the registry's defaults fill in the rest
    hyperparameters: dict = field(default_factory=lambda: copy.deepcopy(REPORT_HYPERPARAMETERS))
    batch_sizes: dict = field(default_factory=lambda: dict(REPORT_BATCH_SIZES))
    #: per optimizer key: report 002's Table II at its scale (scheduler, num_epochs, milestones), before epoch_fraction
    schedules: dict = field(default_factory=lambda: copy.deepcopy(REPORT_SCHEDULES))
    #: the optimizers trained with each of ``ablation_schedulers``
    ablation_optimizers: list = field(default_factory=lambda: list(FIRST_ORDER))
    ablation_schedulers: list = field(default_factory=lambda: ["none", "cosine", "multistep"])
    #: AdaHessian also trained and timed with its Hessian estimated every k steps, for each k here
    hessian_every: list = field(default_factory=lambda: [2, 4])
    #: time to target: the target is this fraction of the best run's best test accuracy
    target_fraction: float = 0.95
    timing_rounds: int = 5

    def __post_init__(self):
        check_list("seeds", self.seeds, is_seed, "integers >= 0")
        if not is_positive_number(self.epoch_fraction) or self.epoch_fraction > 1:
            raise ValueError(f"invalid epoch_fraction {self.epoch_fraction!r}: it must lie in (0, 1] (1 trains report 002's epochs)")
        if not is_positive_number(self.target_fraction) or self.target_fraction > 1:
            raise ValueError(f"invalid target_fraction {self.target_fraction!r}: it must lie in (0, 1]")
        if not isinstance(self.timing_rounds, int) or isinstance(self.timing_rounds, bool) or self.timing_rounds < 2:
            raise ValueError(f"invalid timing_rounds {self.timing_rounds!r}: it must be an integer >= 2 (rounds give the timing noise)")
        check_list("hessian_every", self.hessian_every, lambda k: isinstance(k, int) and not isinstance(k, bool) and k >= 1,
                   "an integer >= 1 (estimate AdaHessian's Hessian every k steps)")
        if len(set(self.hessian_every)) < len(self.hessian_every):
            raise ValueError(f"invalid hessian_every {self.hessian_every!r}: every value must appear once")
        self._check_hyperparameters()
        _check_keys("batch_sizes", self.batch_sizes, required=True)
        for key, size in self.batch_sizes.items():
            if not isinstance(size, int) or isinstance(size, bool) or size < 1:
                raise ValueError(f"invalid batch_sizes[{key!r}] {size!r}: a batch size must be an integer > 0")
        self._check_schedules()
        check_list("ablation_optimizers", self.ablation_optimizers, lambda key: key in VARIANTS, f"one of {', '.join(VARIANTS)}")
        if len(set(self.ablation_optimizers)) < len(self.ablation_optimizers):
            raise ValueError(f"invalid ablation_optimizers {self.ablation_optimizers!r}: every optimizer must appear once")
        check_list("ablation_schedulers", self.ablation_schedulers, lambda item: isinstance(item, str), "scheduler names")
        for scheduler in self.ablation_schedulers:
            if scheduler not in SCHEDULERS:
                raise ValueError(f"unknown scheduler {scheduler!r} in ablation_schedulers; available: {', '.join(SCHEDULERS)}")
        if len(set(self.ablation_schedulers)) < len(self.ablation_schedulers):
            raise ValueError(f"invalid ablation_schedulers {self.ablation_schedulers!r}: every scheduler must appear once")
        if "multistep" in self.ablation_schedulers:
            for key in self.ablation_optimizers:
                self.ablation_milestones(key)

    def _check_hyperparameters(self) -> None:
        _check_keys("hyperparameters", self.hyperparameters, required=False)
        for key, values in self.hyperparameters.items():
            if not isinstance(values, dict):
                raise ValueError(f"invalid hyperparameters[{key!r}] {values!r}: give a mapping such as {{'lr': 0.01}}")
            fixed = sorted(set(values) & set(VARIANTS[key].form))
            if fixed:
                raise ValueError(f"invalid hyperparameters[{key!r}]: {', '.join(map(repr, fixed))} selects the optimizer's form and is fixed "
                                 f"({VARIANTS[key].form}); choose another optimizer key instead")
            optim.resolve_hyperparameters(VARIANTS[key].optimizer, **values, **VARIANTS[key].form)

    def _check_schedules(self) -> None:
        _check_keys("schedules", self.schedules, required=True)
        for key, schedule in self.schedules.items():
            if not isinstance(schedule, dict):
                raise ValueError(f"invalid schedules[{key!r}] {schedule!r}: give a mapping with {', '.join(SCHEDULE_KEYS)}")
            unknown = sorted(set(schedule) - set(SCHEDULE_KEYS))
            if unknown:
                raise ValueError(f"invalid schedules[{key!r}]: unknown key(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(SCHEDULE_KEYS)}")
            scheduler, epochs = schedule.get("scheduler"), schedule.get("num_epochs")
            if scheduler not in SCHEDULERS:
                raise ValueError(f"unknown scheduler {scheduler!r} for {key} in schedules; available: {', '.join(SCHEDULERS)}")
            if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
                raise ValueError(f"invalid num_epochs {epochs!r} for {key} in schedules: it must be an integer > 0")
            milestones = schedule.get("milestones")
            if scheduler != "multistep":
                if milestones is not None:
                    raise ValueError(f"invalid milestones {milestones!r} for {key}: only scheduler 'multistep' takes milestones "
                                     f"(its scheduler is {scheduler!r})")
                continue
            _check_milestones(milestones, epochs, f"{key} (report scale, {epochs} epochs)")
            scaled_epochs, scaled = self.scaled_epochs(key), [round_half_up(m * self.epoch_fraction) for m in milestones]
            _check_milestones(scaled, scaled_epochs, f"{key} at epoch_fraction {self.epoch_fraction:g} ({milestones} scaled to {scaled} "
                              f"of {scaled_epochs} epochs; choose a larger epoch_fraction)")

    # ---- what each optimizer trains -------------------------------------------------------------------
    def scaled_epochs(self, key: str) -> int:
        return max(1, round_half_up(self.schedules[key]["num_epochs"] * self.epoch_fraction))

    def milestones(self, key: str) -> list[int]:
        """``key``'s MultiStepLR milestones at this build's scale (empty without MultiStepLR)."""
        return [round_half_up(m * self.epoch_fraction) for m in self.schedules[key].get("milestones") or []]

    def ablation_milestones(self, key: str) -> list[int]:
        """The ablation's MultiStepLR milestones of ``key``: its own, or at :data:`ABLATION_MILESTONE_FRACTIONS` of its epochs."""
        if self.schedules[key]["scheduler"] == "multistep":
            return self.milestones(key)
        epochs = self.scaled_epochs(key)
        milestones = [round_half_up(fraction * epochs) for fraction in ABLATION_MILESTONE_FRACTIONS]
        _check_milestones(milestones, epochs, f"{key}'s ablation MultiStepLR ({epochs} epochs at epoch_fraction {self.epoch_fraction:g}; "
                                              "choose a larger epoch_fraction or leave 'multistep' out of ablation_schedulers)")
        return milestones

    def base(self) -> dict:
        return {"dataset": self.dataset, "image_size": self.image_size, "model": "resnet18",
                "model_options": {"width": self.model_width, "norm": "batch"}, "augment": self.augment,
                "max_train_examples": self.max_train_examples}

    def config(self, key: str, seed: int, scheduler: str | None = None, **extra) -> RunConfig:
        """``key``'s run with ``seed``: its hyperparameters (plus ``extra``), batch size, epochs and scheduler
        (its own, or ``scheduler`` for the ablation)."""
        variant = VARIANTS[key]
        scheduler = scheduler or self.schedules[key]["scheduler"]
        options = {}
        if scheduler == "multistep":
            options = {"milestones": self.ablation_milestones(key)}
        return RunConfig(optimizer=variant.optimizer, seed=seed, num_epochs=self.scaled_epochs(key), batch_size=self.batch_sizes[key],
                         hyperparameters={**self.hyperparameters.get(key, {}), **extra, **variant.form},
                         scheduler=scheduler, scheduler_options=options, **self.base())


def _check_milestones(milestones, epochs: int, where: str) -> None:
    valid = (isinstance(milestones, list) and milestones and all(isinstance(m, int) and not isinstance(m, bool) for m in milestones)
             and all(1 <= m < epochs for m in milestones) and all(a < b for a, b in zip(milestones, milestones[1:])))
    if not valid:
        raise ValueError(f"invalid milestones {milestones!r} for {where}: give increasing epoch numbers from 1 to {epochs - 1}, "
                         f"each before the run's last epoch")


# ---- the runs ---------------------------------------------------------------------------------------------

def labels() -> list[str]:
    return [variant.label for variant in VARIANTS.values()]


def main_runs(settings: Settings) -> RunGroups:
    """The eight optimizers with report 002's settings, one configuration per seed."""
    return {variant.label: [settings.config(key, seed) for seed in settings.seeds] for key, variant in VARIANTS.items()}


def ablation_grid(settings: Settings) -> dict[str, RunGroups]:
    """Per scheduler, the ablation's optimizers with it (each at its own epochs; runs equal to the main ones share their ids)."""
    return {scheduler: {VARIANTS[key].label: [settings.config(key, seed, scheduler=scheduler) for seed in settings.seeds]
                        for key in settings.ablation_optimizers}
            for scheduler in settings.ablation_schedulers}


def hessian_every_runs(settings: Settings) -> RunGroups:
    """AdaHessian with its Hessian estimated every k steps, k from ``hessian_every`` (k = 1 is the main run)."""
    return {hessian_every_label(every): [settings.config("adahessian", seed, hessian_every=every) for seed in settings.seeds]
            for every in sorted(set([1] + list(settings.hessian_every)))}


def planned_runs(settings: Settings) -> list[RunConfig]:
    configs = all_configs(main_runs(settings)) + all_configs(hessian_every_runs(settings))
    configs += [config for groups in ablation_grid(settings).values() for config in all_configs(groups)]
    return list({config.run_id: config for config in configs}.values())


def timing_configs(settings: Settings) -> dict[str, RunConfig]:
    """What the cost comparison times: each optimizer's first-seed run, then AdaHessian every k steps."""
    configs = {label: group[0] for label, group in main_runs(settings).items()}
    configs.update({label: group[0] for label, group in hessian_every_runs(settings).items()})
    return configs


def curve_panels() -> list[tuple[str, list[str]]]:
    """The curve figures' columns: report 002's three groups, each in colour against the others in grey."""
    return [("SGD, Adam and ATMO", [VARIANTS[key].label for key in ("sgd", "adam", "atmo", "dynamic_atmo")]),
            ("PADAM-SGD", [VARIANTS[key].label for key in ("padam_sgd", "dynamic_padam_sgd")]),
            ("second order", [VARIANTS[key].label for key in SECOND_ORDER])]


def mixing_weights(settings: Settings) -> pd.DataFrame:
    """The mixing weights of every optimizer whose weights are dynamic, per epoch (from 1), as its own
    ``on_epoch_start`` sets them: columns ``label``, ``epoch``, ``adaptive_weight`` (λ of Adam, Padam or
    AdaHessian) and ``sgd_weight``."""
    rows = []
    for key, variant in VARIANTS.items():
        config = settings.config(key, settings.seeds[0])
        optimizer = optim.make_optimizer(config.optimizer, [torch.nn.Parameter(torch.zeros(1))], **config.hyperparameters)
        if not any(group.get("dynamic_weights", False) for group in optimizer.param_groups):
            continue
        for epoch in range(config.num_epochs):
            protocol.call_epoch_hook(optimizer, epoch, config.num_epochs)
            group = optimizer.param_groups[0]
            rows.append({"label": variant.label, "epoch": epoch + 1, "adaptive_weight": group["adam_weight"], "sgd_weight": group["sgd_weight"]})
    return pd.DataFrame(rows)


# ---- tables -----------------------------------------------------------------------------------------------

def _scale(settings: Settings) -> str:
    return f"{settings.dataset}, width ×{settings.model_width:g}, epochs ×{settings.epoch_fraction:g}, mean of {len(settings.seeds)} seeds"


def _percent(mean: float, low: float, high: float) -> str:
    return format_mean_interval(100 * mean, 100 * low, 100 * high, 1)


def reported_table(table: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """Report 002's Table III beside this build's best test accuracy (mean [95% interval]), with each side's
    epochs and ranks; report 002's numbers only in the column headed "reported"."""
    keys = list(VARIANTS)
    reported_rank = {key: rank for rank, key in enumerate(sorted(keys, key=lambda key: -REPORTED_BEST_ACCURACY[key]), start=1)}
    ours = {key: table.loc[VARIANTS[key].label, "best_accuracy"] for key in keys}
    our_rank = {key: rank for rank, key in enumerate(sorted(keys, key=lambda key: -ours[key]), start=1)}
    return pd.DataFrame({
        "optimizer": [VARIANTS[key].label for key in keys],
        "reported (report 002, CIFAR-10, full ResNet-18, one run) (%)": [format_number(100 * REPORTED_BEST_ACCURACY[key], 2) for key in keys],
        f"this run ({_scale(settings)}) (%)": [_percent(*(table.loc[VARIANTS[key].label, f"best_accuracy{suffix}"]
                                                        for suffix in ("", "_low", "_high"))) for key in keys],
        "epochs, reported → this run": [f"{REPORT_SCHEDULES[key]['num_epochs']} → {settings.scaled_epochs(key)}" for key in keys],
        "rank, reported → this run": [f"{reported_rank[key]} → {our_rank[key]}" for key in keys],
    })


def hessian_every_table(runs_table: pd.DataFrame, costs_to_sgd: pd.DataFrame, costs_to_adahessian: pd.DataFrame,
                        grad_evals_per_epoch: dict[str, float], settings: Settings) -> pd.DataFrame:
    """What estimating AdaHessian's Hessian every k steps saves and costs: gradient evaluations and timed
    seconds per epoch (ratios to SGD and to every step), best and final test accuracy."""
    rows = []
    for every in sorted(set([1] + list(settings.hessian_every))):
        label = hessian_every_label(every)
        rows.append({
            "Hessian every": f"{every} step{'s' if every > 1 else ''}",
            "gradient evaluations per epoch": format_number(grad_evals_per_epoch[label], 0),
            "ratio to SGD+momentum": format_mean_interval(*costs_to_sgd.loc[label, ["ratio", "ratio_low", "ratio_high"]], 2),
            "ratio to every step": format_mean_interval(*costs_to_adahessian.loc[label, ["ratio", "ratio_low", "ratio_high"]], 2),
            "best test accuracy (%)": _percent(*runs_table.loc[label, ["best_accuracy", "best_accuracy_low", "best_accuracy_high"]]),
            "final test accuracy (%)": _percent(*runs_table.loc[label, ["final_accuracy", "final_accuracy_low", "final_accuracy_high"]]),
        })
    return pd.DataFrame(rows)


def ablation_table(ablation_runs: pd.DataFrame, settings: Settings, metric: str = "final_accuracy") -> pd.DataFrame:
    """Per ablation optimizer: ``metric`` (%) with each scheduler, mean [95% interval] over seeds; report 002's
    own scheduler is marked with a dagger (†)."""
    rows = []
    for key in settings.ablation_optimizers:
        label = VARIANTS[key].label
        row = {"optimizer": label}
        for scheduler in settings.ablation_schedulers:
            runs = ablation_runs[(ablation_runs["label"] == label) & (ablation_runs["scheduler"] == scheduler)]
            diverged = int((runs["status"] == "diverged").sum())
            text = _percent(*mean_interval(runs[metric]))
            mark = " †" if scheduler == settings.schedules[key]["scheduler"] else ""
            row[SCHEDULER_TITLES[scheduler] + " (%)"] = text + mark + (f" ({diverged} diverged)" if diverged else "")
        rows.append(row)
    return pd.DataFrame(rows)


def loss_minimum(frame: pd.DataFrame, label: str) -> pd.DataFrame:
    """Per seed of ``label``: the epoch of the minimum test loss, that minimum, the final test loss, and the
    training loss at both epochs (the C18 statistics)."""
    rows = []
    for seed, run in frame[frame["label"] == label].groupby("seed"):
        run = run.sort_values("epoch")
        test_loss = run["test_loss"].to_numpy(dtype=float)
        at_minimum = int(np.nanargmin(test_loss))
        rows.append({"seed": int(seed), "minimum_epoch": int(run["epoch"].iloc[at_minimum]), "epochs": int(run["epoch"].iloc[-1]),
                     "minimum_test_loss": float(test_loss[at_minimum]), "final_loss": float(test_loss[-1]),
                     "train_loss_at_minimum": float(run["train_loss"].iloc[at_minimum]), "final_train_loss": float(run["train_loss"].iloc[-1])})
    return pd.DataFrame(rows)


def overfitting_table(minimum: pd.DataFrame) -> pd.DataFrame:
    """:func:`loss_minimum` as text, one row per seed."""
    return pd.DataFrame({
        "seed": minimum["seed"],
        "epoch of minimum test loss": [f"{m} of {n}" for m, n in zip(minimum["minimum_epoch"], minimum["epochs"])],
        "minimum test loss": [format_number(value, 3) for value in minimum["minimum_test_loss"]],
        "final test loss": [format_number(value, 3) for value in minimum["final_loss"]],
        "final / minimum": [f"×{final / low:.2f}" for final, low in zip(minimum["final_loss"], minimum["minimum_test_loss"])],
        "training loss at the minimum → final": [f"{a:.3f} → {b:.3f}" for a, b in zip(minimum["train_loss_at_minimum"], minimum["final_train_loss"])],
    })


def decay_jumps(ablation_frame: pd.DataFrame, labels: list[str]) -> pd.DataFrame:
    """C20's statistic per (label, seed): the test accuracy change over the first epoch after the first lr
    decay of the MultiStepLR run (found in the records' ``lr``), and over the same epoch of the run without
    a scheduler."""
    rows = []
    for label in labels:
        for seed in sorted(set(ablation_frame.loc[ablation_frame["label"] == label, "seed"])):
            def run(scheduler):
                selected = ablation_frame[(ablation_frame["label"] == label) & (ablation_frame["seed"] == seed)
                                          & (ablation_frame["scheduler"] == scheduler)]
                return selected.sort_values("epoch").set_index("epoch")

            decayed, plain = run("multistep"), run("none")
            if decayed.empty or plain.empty:
                continue
            drops = [epoch for epoch in decayed.index[1:] if decayed.loc[epoch, "lr"] < decayed.loc[epoch - 1, "lr"]]
            if not drops or drops[0] not in plain.index:
                continue
            epoch = drops[0]
            rows.append({"label": label, "seed": int(seed), "epoch": int(epoch),
                         "jump": float(decayed.loc[epoch, "test_accuracy"] - decayed.loc[epoch - 1, "test_accuracy"]),
                         "change_without": float(plain.loc[epoch, "test_accuracy"] - plain.loc[epoch - 1, "test_accuracy"])})
    return pd.DataFrame(rows, columns=["label", "seed", "epoch", "jump", "change_without"])


def settings_rows(settings: Settings, profile: str) -> dict[str, str]:
    """The chapter's settings table, rendered from the parameters actually used."""
    from ..report import describe_data

    def hyperparameters(key):
        values = settings.hyperparameters.get(key, {})
        return ", ".join(f"{name} {value:g}" if isinstance(value, float) else f"{name} {value}" for name, value in values.items())

    def schedule(key):
        scheduler = settings.schedules[key]["scheduler"]
        milestones = settings.milestones(key)
        return SCHEDULER_TITLES[scheduler] + (f"({', '.join(map(str, milestones))})" if milestones else "")

    rows = {"profile": profile,
            "data": describe_data(settings.dataset, settings.image_size, settings.max_train_examples),
            "network": f"ResNet-18 (CIFAR-style, BatchNorm), width ×{settings.model_width:g}",
            "seeds": ", ".join(map(str, settings.seeds)),
            "augmentation": "pad-4 crop and flip" if settings.augment else "none",
            "epochs and milestones": f"report 002's × {settings.epoch_fraction:g}, rounded half up"}
    for key, variant in VARIANTS.items():
        rows[variant.label] = (f"{hyperparameters(key) or 'registry defaults'}; batch {settings.batch_sizes[key]}; "
                               f"{settings.scaled_epochs(key)} epochs; {schedule(key)}"
                               + ("; dynamic weights" if variant.form.get("dynamic_weights") else ""))
    rows["scheduler ablation"] = (f"{', '.join(SCHEDULER_TITLES[s] for s in settings.ablation_schedulers)} for "
                                  f"{', '.join(VARIANTS[key].label for key in settings.ablation_optimizers)}; MultiStepLR at each one's "
                                  f"own milestones, else at {' and '.join(f'{f:g}' for f in ABLATION_MILESTONE_FRACTIONS)} of its epochs; "
                                  "CosineAnnealingLR to 0 over the run")
    rows["AdaHessian's Hessian every"] = ", ".join(f"{k} steps" for k in settings.hessian_every)
    rows["time to target"] = f"{settings.target_fraction:.0%} of the best run's best test accuracy"
    rows["timing"] = f"{settings.timing_rounds} interleaved rounds of training steps per optimizer"
    return rows


def source_settings(settings: Settings) -> list[tuple[str, str, str]]:
    """(setting, report 002, this build) rows of the chapter's scale box."""
    from ..report import describe_data

    def per_optimizer(function):
        return "; ".join(f"{VARIANTS[key].label} {function(key)}" for key in VARIANTS)

    def report_milestones(key):
        return ", ".join(map(str, REPORT_SCHEDULES[key].get("milestones") or [])) or "–"

    width = settings.model_width
    return [
        ("data", "CIFAR-10, 32×32, 50,000 training and 10,000 test images",
         describe_data(settings.dataset, settings.image_size, settings.max_train_examples)),
        ("network", "ResNet-18, full width (64 base channels)",
         "ResNet-18, full width (64 base channels)" if width == 1 else f"ResNet-18, width ×{width:g} ({max(1, round(64 * width))} base channels)"),
        ("epochs", per_optimizer(lambda key: REPORT_SCHEDULES[key]["num_epochs"]), per_optimizer(settings.scaled_epochs)),
        ("MultiStepLR milestones", per_optimizer(report_milestones),
         per_optimizer(lambda key: ", ".join(map(str, settings.milestones(key))) or "–")),
        ("batch size", per_optimizer(lambda key: REPORT_BATCH_SIZES[key]), per_optimizer(lambda key: settings.batch_sizes[key])),
        ("augmentation", "not stated", "pad-4 crop and flip" if settings.augment else "none"),
        ("seeds per optimizer", "one run", f"{len(settings.seeds)} ({', '.join(map(str, settings.seeds))})"),
    ]


# ---- figures ----------------------------------------------------------------------------------------------

#: how the scheduler ablation draws each scheduler (schedulers are not optimizers: colours of their own)
SCHEDULER_LOOK = {"none": ("black", "o"), "cosine": ("blue", "s"), "multistep": ("vermillion", "^")}


def cost_figure(timing: pd.DataFrame, reference: str, order: list[str]):
    """Seconds per epoch (left) and the ratio to ``reference`` within each round (right), mean over rounds with a 95% interval."""
    import matplotlib.pyplot as plt

    from ..plotting import cost_bars
    from ..timing import ratio_to

    fig, (seconds_ax, ratio_ax) = plt.subplots(1, 2, figsize=(10, 0.42 * len(order) + 1.4), sharey=True)
    cost_bars(timing, ax=seconds_ax, order=order)
    cost_bars(ratio_to(timing, reference), y="ratio", ax=ratio_ax, order=order, reference_line=1.0)
    ratio_ax.set_xlabel(f"ratio to {reference} (same round)")
    fig.tight_layout()
    return fig


def weights_figure(weights: pd.DataFrame, frame: pd.DataFrame):
    """The dynamic optimizers' mixing weights per epoch (adaptive branch, SGD branch) and their learning rate
    from the run records, as steps: each value holds for a whole epoch."""
    import matplotlib.pyplot as plt

    shown = list(dict.fromkeys(weights["label"]))
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.6))
    lr = frame[frame["label"].isin(shown)].groupby(["label", "epoch"], sort=False)["lr"].mean().reset_index()
    for ax, (data, column, title) in zip(axes, ((weights, "adaptive_weight", "λ of the adaptive branch"),
                                                (weights, "sgd_weight", "λ of SGD momentum"),
                                                (lr, "lr", "learning rate (from the records)"))):
        for label in shown:
            look = styles.style(label)
            values = data[data["label"] == label].sort_values("epoch")
            # a value holds from the start of its epoch to the start of the next: steps, ending at the run's end
            x = list(values["epoch"] - 1) + [int(values["epoch"].iloc[-1])]
            y = list(values[column]) + [values[column].iloc[-1]]
            ax.step(x, y, where="post", color=look.color, linestyle=look.linestyle, linewidth=1.8, label=label)
            ax.plot(values["epoch"] - 0.5, values[column], linestyle="none", marker=look.marker, color=look.color, markersize=5)
        ax.set_xlabel("epoch")
        ax.set_title(title, fontsize="medium")
    axes[2].set_yscale("log")
    for ax in axes[:2]:
        ax.set_ylim(-0.05, 1.05)
    handles = [plt.Line2D([], [], color=styles.style(label).color, linestyle=styles.style(label).linestyle,
                          marker=styles.style(label).marker, label=label) for label in shown]
    fig.legend(handles=handles, loc="lower center", ncol=len(shown), frameon=False, fontsize="small")
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return fig


def overfitting_figure(frame: pd.DataFrame, label: str, minimum: pd.DataFrame):
    """``label``'s test loss (its colour) and training loss (grey) per seed on a log scale, each seed's test-loss
    minimum marked, and its test accuracy; one line style per seed."""
    import matplotlib.pyplot as plt
    import matplotlib.ticker as mticker

    look = styles.style(label)
    runs = frame[frame["label"] == label]
    fig, (loss_ax, accuracy_ax) = plt.subplots(1, 2, figsize=(10, 4.2))
    seed_dashes = [styles.DASHES[name] for name in ("solid", "dashed", "dotted", "dashdot")]
    handles = [plt.Line2D([], [], color=look.color, linewidth=1.8, label="test loss / accuracy"),
               plt.Line2D([], [], color=styles.OKABE_ITO["grey"], linewidth=1.2, label="training loss")]
    for position, (seed, run) in enumerate(runs.groupby("seed")):
        run = run.sort_values("epoch")
        dashes = seed_dashes[position % len(seed_dashes)]
        linestyle = "-" if dashes == "" else (0, dashes)
        loss_ax.plot(run["epoch"], run["test_loss"], color=look.color, linestyle=linestyle, linewidth=1.8)
        loss_ax.plot(run["epoch"], run["train_loss"], color=styles.OKABE_ITO["grey"], linestyle=linestyle, linewidth=1.2)
        accuracy_ax.plot(run["epoch"], 100 * run["test_accuracy"], color=look.color, linestyle=linestyle, linewidth=1.8)
        handles.append(plt.Line2D([], [], color="black", linestyle=linestyle, linewidth=1.2, label=f"seed {seed}"))
    loss_ax.plot(minimum["minimum_epoch"], minimum["minimum_test_loss"], linestyle="none", marker="v", markersize=9, color="black")
    handles.append(plt.Line2D([], [], linestyle="none", marker="v", markersize=9, color="black", label="lowest test loss"))
    loss_ax.set_yscale("log")
    plain = mticker.FuncFormatter(lambda value, _: f"{value:g}")
    loss_ax.yaxis.set_major_formatter(plain)
    low, high = loss_ax.get_ylim()
    # within one decade the minor ticks carry the only labels
    loss_ax.yaxis.set_minor_formatter(plain if math.log10(high / low) < 1 else mticker.NullFormatter())
    for ax, title in ((loss_ax, "loss"), (accuracy_ax, "test accuracy (%)")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(title)
        ax.xaxis.set_major_locator(mticker.MaxNLocator(integer=True))
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), frameon=False, fontsize="small")
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return fig


def ablation_figure(ablation_runs: pd.DataFrame, settings: Settings):
    """Best and final test accuracy (%) of each ablation optimizer under each scheduler: mean over seeds with a 95% interval."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    from ..plotting import band

    order = [VARIANTS[key].label for key in settings.ablation_optimizers]
    data = ablation_runs.assign(scheduler=ablation_runs["scheduler"].map(SCHEDULER_TITLES),
                                best=100 * ablation_runs["best_accuracy"], final=100 * ablation_runs["final_accuracy"])
    hue_order = [SCHEDULER_TITLES[name] for name in settings.ablation_schedulers]
    palette = {SCHEDULER_TITLES[name]: styles.OKABE_ITO[SCHEDULER_LOOK[name][0]] for name in settings.ablation_schedulers}
    markers = [SCHEDULER_LOOK[name][1] for name in settings.ablation_schedulers]
    fig, axes = plt.subplots(1, 2, figsize=(10, 0.55 * len(order) + 1.6), sharey=True)
    for ax, column, title in zip(axes, ("best", "final"), ("best test accuracy (%)", "final test accuracy (%)")):
        sns.pointplot(data=data, x=column, y="label", hue="scheduler", order=order, hue_order=hue_order, palette=palette, markers=markers,
                      linestyles="none", dodge=0.5, errorbar=band, ax=ax)
        ax.set_xlabel(title)
        ax.set_ylabel("")
        ax.get_legend().remove()
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=len(names), frameon=False, title="scheduler")
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    return fig


# ---- claims -----------------------------------------------------------------------------------------------

def _points(value: float) -> str:
    return f"{100 * value:+.1f} pp"


def _named(name: str, decision: Decision) -> Decision:
    """``decision`` with its evidence prefixed by ``name`` (whose comparisons they are)."""
    return Decision(decision.verdict, f"{name} {decision.evidence}")


def _ratio(log_value: float) -> str:
    return f"×{math.exp(log_value):.2f}"


def check_claims(runs: pd.DataFrame, frame: pd.DataFrame, timing: pd.DataFrame, ablation_frame: pd.DataFrame,
                 settings: Settings) -> list[Claim]:
    """Decide claims C16–C20.

    ``runs`` is :func:`~optbench.studies.common.per_run_summary` of the main runs and ``frame`` their
    per-epoch frame; ``timing`` is :func:`~optbench.timing.measure_step_seconds`'s frame (labels as in
    :data:`VARIANTS`); ``ablation_frame`` the ablation's per-epoch frame with its ``scheduler`` column.
    """
    label = {key: variant.label for key, variant in VARIANTS.items()}
    best = {key: seed_values(runs, label[key], "best_accuracy") for key in VARIANTS}
    claims = []

    candidates = ("padam_sgd", "dynamic_padam_sgd")
    others = [key for key in VARIANTS if key not in candidates]
    c16 = all_of([_named(label[candidate], decide_best(label[candidate], {label[key]: best[key] for key in (candidate, *others)},
                                                        level=LEVEL / len(candidates), describe=_points))
                  for candidate in candidates], joiner=" | ")
    claims.append(Claim("C16", "002", "PADAM-SGD and Dynamic PADAM-SGD reach the best test accuracy.",
                        f"each of the two has a higher best test accuracy (over epochs) than each of the {len(others)} other optimizers; "
                        f"paired t-tests over seeds, α = 0.05/{len(candidates) * len(others)}", c16))

    c17 = all_of([
        decide_greater(best["dynamic_atmo"], best["sgd"], level=LEVEL / 4, describe=_points, name="Dynamic ATMO − SGD"),
        decide_greater(best["dynamic_atmo"], best["adam"], level=LEVEL / 4, describe=_points, name="Dynamic ATMO − Adam"),
        any_of([decide_greater(best["sgd"], best["atmo"], level=LEVEL / 4, describe=_points, name="SGD − ATMO"),
                decide_greater(best["adam"], best["atmo"], level=LEVEL / 4, describe=_points, name="Adam − ATMO")]),
    ])
    claims.append(Claim("C17", "002", "ATMO improves on SGD and Adam only in its dynamic form.",
                        "Dynamic ATMO's best test accuracy exceeds SGD's and Adam's, and constant ATMO's falls below SGD's or Adam's "
                        "(it does not improve on both); paired t-tests over seeds, α = 0.05/4", c17))

    minimum = loss_minimum(frame, label["adahessian"]).set_index("seed")
    if not (minimum["minimum_epoch"] < minimum["epochs"]).any():
        # nothing can rise after a minimum that every run is still approaching
        c18 = not_testable(f"AdaHessian's test loss is lowest in the last epoch of every seed's {int(minimum['epochs'].max())}-epoch run: "
                           "this profile trains too briefly to pass the minimum the claim starts from "
                           f"(report 002: {REPORT_SCHEDULES['adahessian']['num_epochs']} epochs)")
    else:
        c18 = all_of([
            decide_above(np.log(minimum["final_loss"] / minimum["minimum_test_loss"]), math.log(OVERFIT_RISE), level=LEVEL / 2,
                         describe=lambda value: f"final/minimum ×{math.exp(value) * OVERFIT_RISE:.2f}, ×{math.exp(value):.2f}", name="test loss"),
            decide_above(np.log(minimum["train_loss_at_minimum"] / minimum["final_train_loss"]), 0.0, level=LEVEL / 2,
                         describe=lambda value: f"÷{math.exp(value):.2f} after the test-loss minimum, log ratio {value:+.2f}", name="training loss"),
        ])
    claims.append(Claim("C18", "002", "AdaHessian overfits: its test loss rises after its minimum.",
                        f"per seed, AdaHessian's final test loss exceeds its minimum over epochs by more than ×{OVERFIT_RISE:.2f} while its "
                        "training loss keeps falling (final below its value at the test-loss minimum); one-sample t-tests on the log "
                        "ratios over seeds, α = 0.05/2; not testable when every seed's test loss is lowest in its last epoch", c18))

    seconds = {key: np.log(timing[timing["label"] == label[key]].set_index("round")["seconds_per_epoch"]) for key in VARIANTS}
    first_order = pd.concat([seconds[key] for key in FIRST_ORDER], axis=1).mean(axis=1)
    c19 = all_of([decide_equivalent(seconds[key] - math.log(CLAIMED_COST_RATIO), first_order, margin=math.log(COST_RATIO_TOLERANCE),
                                    level=LEVEL / len(SECOND_ORDER), name=f"{label[key]} ÷ first order ÷ {CLAIMED_COST_RATIO:g}",
                                    describe=_ratio)
                  for key in SECOND_ORDER])
    claims.append(Claim("C19", "002", "Second-order methods take about 4× the time per epoch of first-order ones.",
                        f"the ratio of AdaHessian's and of AdaSGD's seconds per epoch to the geometric mean of the six first-order "
                        f"optimizers' lies between ×{CLAIMED_COST_RATIO / COST_RATIO_TOLERANCE:.1f} and ×{CLAIMED_COST_RATIO * COST_RATIO_TOLERANCE:.1f}; "
                        f"two one-sided paired t-tests on log seconds over {settings.timing_rounds} interleaved rounds each, α = 0.05/2", c19))

    decayed = [key for key in settings.ablation_optimizers if REPORT_SCHEDULES[key]["scheduler"] == "multistep"]
    if not decayed or not {"none", "multistep"} <= set(settings.ablation_schedulers):
        c20 = not_testable("the scheduler ablation lacks a report-002 MultiStepLR optimizer with and without its scheduler")
    else:
        jumps = decay_jumps(ablation_frame, [label[key] for key in decayed])
        c20 = all_of([decide_greater(jumps.loc[jumps["label"] == label[key]].set_index("seed")["jump"],
                                     jumps.loc[jumps["label"] == label[key]].set_index("seed")["change_without"],
                                     level=LEVEL / len(decayed), describe=_points, name=label[key]) for key in decayed])
    claims.append(Claim("C20", "002", "The lr decays produce jumps in test accuracy.",
                        "for each optimizer report 002 ran with MultiStepLR and the ablation trains "
                        f"({', '.join(label[key] for key in decayed) or 'none'}): the test accuracy gained over the first epoch after "
                        "the first lr decay exceeds the gain over the same epoch without a scheduler; paired t-tests over seeds, "
                        f"α = 0.05/{max(1, len(decayed))}", c20))
    return claims


STUDY = Study(
    name="study3_hybrid",
    prefix="s3",
    title="Study 3 — Hybrid and second-order optimizers",
    reports=("002",),
    question="Do hybrids of Adam and SGD (ATMO, PADAM-SGD) and second-order methods (AdaHessian, AdaSGD) beat SGD and Adam, "
             "and what does the Hessian cost?",
    settings=Settings,
    planned_runs=planned_runs,
    figures=("fig-s3-epochs", "fig-s3-grad-evals", "fig-s3-seconds", "fig-s3-cost", "fig-s3-weights", "fig-s3-overfitting",
             "fig-s3-ablation"),
    tables=("tbl-s3-settings", "tbl-s3-results", "tbl-s3-reported", "tbl-s3-cost", "tbl-s3-hessian-every", "tbl-s3-target",
            "tbl-s3-overfitting", "tbl-s3-ablation", "tbl-s3-claims"),
    claims=tuple(f"C{number}" for number in range(16, 21)),
)


def workload_table(frame: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """The chapter's workload for the summary's performance profiles: the eight optimizers at report 002's
    settings on ResNet-18, one row per run (:func:`optbench.chapter_results.workload_runs`)."""
    from ..chapter_results import workload_runs

    return workload_runs(frame, f"ResNet-18 ×{settings.model_width:g} (study 3) on {settings.dataset}")


def headlines(table: pd.DataFrame, costs: pd.DataFrame) -> dict[str, str]:
    """The chapter's findings the summary shows: the best optimizer by best test accuracy, and AdaHessian's
    cost per epoch as a ratio to SGD's."""
    from ..statistics import format_number

    best = ranking(table, "best_accuracy")[0]
    adahessian = VARIANTS["adahessian"].label
    return {
        "best test accuracy, report 002's settings": f"{best} ({format_number(100 * table.loc[best, 'best_accuracy'])}%)",
        "AdaHessian's seconds per epoch, ratio to SGD+momentum": f"×{costs.loc[adahessian, 'ratio']:.2f}",
    }
