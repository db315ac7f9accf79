"""Study 1: optimizer comparison on ResNet-18 (reports 000 and 004) — the worked example of a chapter.

Protocol A ("as reported"): report 000's uniform lr for every optimizer, Padam with its own settings.
Protocol B ("fair"): each optimizer's lr chosen from a log grid by the mean final validation accuracy over
the selection seeds, on a held-out split of the training set, then rerun with every seed. The report-004
experiment: a fully connected network, Adam with scheduled betas against Adam, RMSprop and AdaGrad at
their torch.optim default learning rates. Cost is measured by interleaved step timing
(:mod:`optbench.timing`). Claims C1–C10 are decided by :mod:`optbench.verdicts`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .. import optim, styles
from ..config import RunConfig
from ..verdicts import LEVEL, Claim, all_of, decide_above, decide_best, decide_equivalent, decide_greater, not_testable
from . import Study
from ..statistics import format_number
from .common import RunGroups, all_configs, ranking, seed_values, select_by_mean
from .common import check_list, describe_points, describe_ratio, is_positive_number, is_seed

#: registry names in the chapter's order
OPTIMIZERS = ("sgd", "adam", "adamw", "nadam", "amsgrad", "padam", "radam", "adabelief", "lookahead",
              "adam_scheduled_betas", "adagrad", "rmsprop")
#: the five optimizers of report 000's first part; Padam came in its second part
REPORT_000 = ("sgd", "adam", "adamw", "nadam", "amsgrad")
FC_OPTIMIZERS = ("adam_scheduled_betas", "adam", "rmsprop", "adagrad")
#: C8's "markedly": Padam's time per epoch at least this ratio of each other optimizer's
MARKEDLY = 1.10
#: C9's "comparable": final test accuracies within this many percentage points
COMPARABLE_POINTS = 2.0


@dataclass
class Settings:
    """The chapter's parameters; the defaults are the notebook's parameters cell (the ``default`` profile's scale)."""

    dataset: str = "digits"
    image_size: int | None = None
    model_width: float = 0.125
    num_epochs: int = 6
    batch_size: int = 128
    seeds: list = field(default_factory=lambda: [0, 1, 2])
    max_train_examples: int | None = None
    augment: bool = False
    #: protocol A's learning rate for every optimizer but Padam
    uniform_lr: float = 0.001
    #: report 000's settings besides the lr, by registry name (Padam's include its own lr)
    hyperparameters: dict = field(default_factory=lambda: {
        "sgd": {"momentum": 0.9}, "adamw": {"weight_decay": 0.0001}, "padam": {"lr": 0.1, "p": 0.125, "weight_decay": 0.0005}})
    lr_grid: list = field(default_factory=lambda: [0.001, 0.01, 0.1])
    #: protocol B picks each lr by the mean validation accuracy over these seeds
    selection_seeds: list = field(default_factory=lambda: [0, 1])
    validation_fraction: float = 0.2
    fc_hidden_sizes: list = field(default_factory=lambda: [256, 128])
    fc_num_epochs: int = 10
    fc_batch_size: int = 64
    #: rounds of the interleaved step timing behind the cost claims
    timing_rounds: int = 5

    def __post_init__(self):
        check_list("seeds", self.seeds, is_seed, "integers >= 0")
        check_list("selection_seeds", self.selection_seeds, is_seed, "integers >= 0")
        if len(set(self.selection_seeds)) < 2:
            raise ValueError(f"invalid selection_seeds {self.selection_seeds!r}: give at least two different seeds, so that "
                             "the chosen learning rate does not rest on one seed's luck")
        check_list("lr_grid", self.lr_grid, is_positive_number, "a finite number > 0")
        if not is_positive_number(self.uniform_lr):
            raise ValueError(f"invalid uniform_lr {self.uniform_lr!r}: it must be a finite number > 0")
        if not isinstance(self.validation_fraction, (int, float)) or not 0.0 < self.validation_fraction < 1.0:
            raise ValueError(f"invalid validation_fraction {self.validation_fraction!r}: it must lie in (0, 1)")
        if not isinstance(self.timing_rounds, int) or isinstance(self.timing_rounds, bool) or self.timing_rounds < 2:
            raise ValueError(f"invalid timing_rounds {self.timing_rounds!r}: it must be an integer >= 2 (rounds give the timing noise)")
        if not isinstance(self.hyperparameters, dict):
            raise ValueError(f"invalid hyperparameters {self.hyperparameters!r}: give a mapping from optimizer name to its settings")
        unknown = sorted(set(self.hyperparameters) - set(OPTIMIZERS))
        if unknown:
            raise ValueError(f"invalid hyperparameters: unknown optimizer(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(OPTIMIZERS)}")
        for name, values in self.hyperparameters.items():
            if not isinstance(values, dict):
                raise ValueError(f"invalid hyperparameters[{name!r}] {values!r}: give a mapping such as {{'momentum': 0.9}}")
            optim.resolve_hyperparameters(name, **values)

    def base(self) -> dict:
        return {
            "dataset": self.dataset, "image_size": self.image_size, "model": "resnet18",
            "model_options": {"width": self.model_width, "norm": "batch"}, "num_epochs": self.num_epochs,
            "batch_size": self.batch_size, "augment": self.augment, "max_train_examples": self.max_train_examples,
        }

    def protocol_a_hyperparameters(self, name: str) -> dict:
        """Report 000's settings: one lr for all, SGD momentum 0.9, AdamW wd 1e-4, Padam its own settings."""
        return {"lr": self.uniform_lr, **self.hyperparameters.get(name, {})}


def protocol_a(settings: Settings) -> RunGroups:
    """Protocol A's configurations per optimizer label (one per seed)."""
    return {
        styles.label(name): [RunConfig(optimizer=name, seed=seed, hyperparameters=settings.protocol_a_hyperparameters(name), **settings.base())
                             for seed in settings.seeds]
        for name in OPTIMIZERS
    }


def selection_grid(settings: Settings) -> dict[float, RunGroups]:
    """Protocol B's selection runs, per lr of the grid: every optimizer on the validation split, each selection seed."""
    return {
        lr: {
            styles.label(name): [RunConfig(optimizer=name, seed=seed, validation_fraction=settings.validation_fraction,
                                           hyperparameters={**settings.protocol_a_hyperparameters(name), "lr": lr}, **settings.base())
                                 for seed in settings.selection_seeds]
            for name in OPTIMIZERS
        }
        for lr in settings.lr_grid
    }


def protocol_b(settings: Settings, chosen_lr: dict[str, float]) -> RunGroups:
    """Protocol B's final runs: each optimizer at its chosen lr, every seed, evaluated on the test set."""
    groups = {}
    for name in OPTIMIZERS:
        label = styles.label(name)
        hyperparameters = {**settings.protocol_a_hyperparameters(name), "lr": chosen_lr[label]}
        groups[label] = [RunConfig(optimizer=name, seed=seed, hyperparameters=hyperparameters, **settings.base()) for seed in settings.seeds]
    return groups


def fully_connected(settings: Settings) -> RunGroups:
    """Report 004's experiment: a fully connected network, each optimizer at its torch.optim default lr."""
    return {
        styles.label(name): [RunConfig(optimizer=name, seed=seed, dataset=settings.dataset, image_size=settings.image_size, model="mlp",
                                       model_options={"hidden_sizes": list(settings.fc_hidden_sizes)}, num_epochs=settings.fc_num_epochs,
                                       batch_size=settings.fc_batch_size, max_train_examples=settings.max_train_examples)
                             for seed in settings.seeds]
        for name in FC_OPTIMIZERS
    }


def planned_runs(settings: Settings) -> list[RunConfig]:
    """Every configuration known before training (protocol B's final runs depend on the selection)."""
    selection = [config for groups in selection_grid(settings).values() for config in all_configs(groups)]
    return all_configs(protocol_a(settings)) + selection + all_configs(fully_connected(settings))


def timing_configs(settings: Settings) -> dict[str, RunConfig]:
    """What the cost comparison times: protocol A's configuration of each optimizer, first seed."""
    return {label: configs[0] for label, configs in protocol_a(settings).items()}


def selection_table(selection_runs: pd.DataFrame, chosen: pd.DataFrame, lr_grid: list[float]) -> pd.DataFrame:
    """Protocol B's selection as text: per optimizer, the mean final validation accuracy (%) over the selection
    seeds of each lr ("diverged" where a run diverged), and the chosen lr."""
    rows = []
    for label in chosen.index:
        row = {"optimizer": label}
        for lr in lr_grid:
            runs = selection_runs[(selection_runs["label"] == label) & (selection_runs["lr"] == lr)]
            row[f"lr {lr:g} (%)"] = "diverged" if (runs["status"] == "diverged").any() else format_number(100 * runs["final_accuracy"].mean())
        row["chosen lr"] = f"{chosen.loc[label, 'lr']:g}"
        rows.append(row)
    return pd.DataFrame(rows)


def rank_table(table_a: pd.DataFrame, table_b: pd.DataFrame, chosen: pd.DataFrame) -> pd.DataFrame:
    """Ranks by mean final test accuracy under both protocols (1 = best) with the accuracies, sorted by protocol B."""
    ranking_a, ranking_b = ranking(table_a), ranking(table_b)
    order = list(table_a.index)
    return pd.DataFrame({
        "optimizer": order,
        "rank A": [ranking_a.index(label) + 1 for label in order],
        "final accuracy A (%)": [format_number(100 * table_a.loc[label, "final_accuracy"]) for label in order],
        "rank B": [ranking_b.index(label) + 1 for label in order],
        "final accuracy B (%)": [format_number(100 * table_b.loc[label, "final_accuracy"]) for label in order],
        "learning rate B": [f"{chosen.loc[label, 'lr']:g}" for label in order],
    }).sort_values("rank B", kind="stable")


def reported_table(table_a: pd.DataFrame, table_b: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """Report 000's accuracy statement beside this build's final test accuracies, each column headed by its scale."""
    scale = f"{settings.dataset}, width ×{settings.model_width:g}, {settings.num_epochs} epochs"
    return pd.DataFrame({
        "optimizer": [styles.label(name) for name in OPTIMIZERS],
        "reported (report 000: CIFAR-10, full ResNet-18, 200 epochs)": [
            "about 75–80%" if name in REPORT_000 + ("padam",) else "not run" for name in OPTIMIZERS],
        f"this run, protocol A ({scale})": [f"{format_number(100 * table_a.loc[styles.label(name), 'final_accuracy'])}%" for name in OPTIMIZERS],
        f"this run, protocol B ({scale})": [f"{format_number(100 * table_b.loc[styles.label(name), 'final_accuracy'])}%" for name in OPTIMIZERS],
    })


def workload_table(frame_b: pd.DataFrame, frame_fc: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """The chapter's workloads for the summary's performance profiles: ResNet-18 at protocol B (each optimizer at
    its chosen lr, the fairest comparison) and report 004's fully connected network, one row per run
    (:func:`optbench.chapter_results.workload_runs`, each with its default target)."""
    from ..chapter_results import workload_runs

    resnet = f"ResNet-18 ×{settings.model_width:g} on {settings.dataset}"
    fully_connected = f"fully connected {list(settings.fc_hidden_sizes)} on {settings.dataset}"
    return pd.concat([workload_runs(frame_b, resnet), workload_runs(frame_fc, fully_connected)], ignore_index=True)


def headlines(table_a: pd.DataFrame, table_b: pd.DataFrame, table_fc: pd.DataFrame) -> dict[str, str]:
    """The chapter's findings the summary shows: the best optimizer under each protocol and on the fully
    connected network, and how SGD+momentum's rank moves between the protocols."""
    sgd = styles.label("sgd")
    ranking_a, ranking_b, ranking_fc = ranking(table_a), ranking(table_b), ranking(table_fc)
    return {
        "best final test accuracy, protocol A (one shared lr)": f"{ranking_a[0]} ({format_number(100 * table_a.loc[ranking_a[0], 'final_accuracy'])}%)",
        "best final test accuracy, protocol B (each optimizer's own lr)": f"{ranking_b[0]} ({format_number(100 * table_b.loc[ranking_b[0], 'final_accuracy'])}%)",
        "SGD+momentum's rank, protocol A → B": f"{ranking_a.index(sgd) + 1} → {ranking_b.index(sgd) + 1} of {len(ranking_b)}",
        "best final test accuracy, report 004's fully connected network": f"{ranking_fc[0]} ({format_number(100 * table_fc.loc[ranking_fc[0], 'final_accuracy'])}%)",
    }


def choose_learning_rates(selection_runs: pd.DataFrame) -> pd.DataFrame:
    """Per optimizer label: the lr of the grid with the highest mean final validation accuracy over the
    selection seeds (ties: the lower mean validation loss); an lr with a diverged run is never chosen."""
    return select_by_mean(selection_runs, by="lr", score="final_accuracy", tie_break="final_loss")


def settings_rows(settings: Settings, profile: str) -> dict[str, str]:
    """The chapter's settings table, rendered from the parameters actually used."""
    from ..report import describe_data

    report_settings = "; ".join(f"{styles.label(name)}: " + ", ".join(f"{key} {value:g}" if isinstance(value, float) else f"{key} {value}"
                                                                     for key, value in values.items())
                                for name, values in settings.hyperparameters.items())
    return {
        "profile": profile,
        "data": describe_data(settings.dataset, settings.image_size, settings.max_train_examples),
        "network": f"ResNet-18 (CIFAR-style, BatchNorm), width ×{settings.model_width:g}",
        "epochs": settings.num_epochs,
        "batch size": settings.batch_size,
        "seeds": ", ".join(map(str, settings.seeds)),
        "augmentation": "pad-4 crop and flip" if settings.augment else "none",
        "protocol A learning rate": f"{settings.uniform_lr:g} for every optimizer but Padam",
        "report 000's other settings": report_settings,
        "protocol B learning-rate grid": ", ".join(f"{lr:g}" for lr in settings.lr_grid),
        "protocol B selection": f"mean final validation accuracy over seeds {', '.join(map(str, settings.selection_seeds))}, "
                                f"on a stratified {settings.validation_fraction:.0%} of the training split",
        "report 004's network": f"fully connected {list(settings.fc_hidden_sizes)}, {settings.fc_num_epochs} epochs, batch {settings.fc_batch_size}",
        "timing": f"{settings.timing_rounds} interleaved rounds of training steps per optimizer",
    }


def source_settings(settings: Settings) -> list[tuple[str, str, str]]:
    """(setting, report 000, this build) rows of the chapter's scale box."""
    from ..report import describe_data

    width = settings.model_width
    return [
        ("data", "CIFAR-10, 32×32, 50,000 training and 10,000 test images", describe_data(settings.dataset, settings.image_size, settings.max_train_examples)),
        ("network", "ResNet-18, full width (64 base channels)",
         "ResNet-18, full width (64 base channels)" if width == 1 else f"ResNet-18, width ×{width:g} ({max(1, round(64 * width))} base channels)"),
        ("epochs", "200", str(settings.num_epochs)),
        ("batch size", "128", str(settings.batch_size)),
        ("augmentation", "not stated", "pad-4 crop and flip" if settings.augment else "none"),
        ("seeds per optimizer", "one run", f"{len(settings.seeds)} ({', '.join(map(str, settings.seeds))})"),
        ("report 004's network and data", "fully connected, MNIST and CIFAR-10",
         f"fully connected {list(settings.fc_hidden_sizes)}, {settings.fc_num_epochs} epochs, same data as above"),
    ]


# ---- claims ---------------------------------------------------------------------------------------------

def check_claims(runs_a: pd.DataFrame, runs_fc: pd.DataFrame, timing: pd.DataFrame, settings: Settings) -> list[Claim]:
    """Decide claims C1–C10 on protocol A's and the fully connected experiment's per-run summaries and the timing.

    ``runs_*`` are :func:`~optbench.studies.common.per_run_summary` frames; ``timing`` is
    :func:`~optbench.timing.measure_step_seconds`'s frame of protocol A's optimizers.
    """
    label = styles.label
    accuracy = {name: seed_values(runs_a, label(name), "final_accuracy") for name in OPTIMIZERS}
    variation = {name: seed_values(runs_a, label(name), "test_error_variation") for name in OPTIMIZERS}
    seconds = {name: np.log(timing[timing["label"] == label(name)].set_index("round")["seconds_per_epoch"]) for name in OPTIMIZERS}
    report = list(REPORT_000)
    claims = []

    if settings.dataset != "cifar10" or settings.num_epochs < 200:
        c1 = not_testable(f"the claimed 75–80% accuracy is CIFAR-10's after 200 epochs; this build trains on {settings.dataset} "
                          f"for {settings.num_epochs} epochs")
    else:
        c1 = all_of([decide_above(accuracy[name], 0.70, level=LEVEL / len(OPTIMIZERS), describe=describe_points, name=label(name)) for name in OPTIMIZERS])
    claims.append(Claim("C1", "000", "Every optimizer brings training loss and test error low (accuracy about 75–80% on CIFAR-10).",
                        "only on CIFAR-10 after 200 epochs: every optimizer's final test accuracy above 70% (the claim's 75% less 5 pp), "
                        "one-sided t-test per optimizer at α = 0.05/12", c1))

    c2 = all_of([
        decide_best("AMSGrad", {label(name): accuracy[name] for name in report}, describe=describe_points),
        decide_best("AMSGrad", {label(name): variation[name] for name in report}, higher_is_better=False),
    ], joiner=" | robustness: ")
    claims.append(Claim("C2", "000", "AMSGrad performs best overall and is the most robust.",
                        "among report 000's five optimizers, AMSGrad's final test accuracy is higher and its test-error variation "
                        "(mean absolute epoch-to-epoch change over the second half) lower than each other's; paired t-tests over seeds, "
                        "α = 0.05 over the 4 comparisons of each", c2))

    others = [name for name in report if name != "amsgrad"]
    c3 = all_of([decide_greater(seconds["amsgrad"], seconds[name], level=LEVEL / len(others), describe=describe_ratio, name=f"vs {label(name)}")
                 for name in others])
    claims.append(Claim("C3", "000", "AMSGrad takes more time per epoch than the others.",
                        "AMSGrad's seconds per epoch exceed each of the other four report-000 optimizers'; paired t-test on log seconds "
                        f"over {settings.timing_rounds} interleaved timing rounds, α = 0.05/4", c3))

    c4 = all_of([decide_greater(variation[name], variation["amsgrad"], level=LEVEL / 2, name=f"{label(name)} − AMSGrad")
                 for name in ("adam", "nadam")])
    claims.append(Claim("C4", "000", "Adam and Nadam oscillate (less stable curves than AMSGrad).",
                        "Adam's and Nadam's test-error variation each exceed AMSGrad's; paired t-tests over seeds, α = 0.05/2", c4))

    low, high = ("sgd", "adamw"), ("adam", "nadam", "amsgrad")
    c5 = all_of([decide_greater(accuracy[good], accuracy[bad], level=LEVEL / 6, describe=describe_points, name=f"{label(good)} − {label(bad)}")
                 for bad in low for good in high])
    claims.append(Claim("C5", "000", "SGD (lr 0.001) and AdamW have the highest test error and lowest accuracy.",
                        "each of Adam, Nadam and AMSGrad ends with a higher final test accuracy than each of SGD+momentum and AdamW; "
                        "paired t-tests over seeds, α = 0.05/6", c5))

    c6 = all_of([decide_greater(seconds[slow], seconds[fast], level=LEVEL / 6, describe=describe_ratio, name=f"{label(slow)} / {label(fast)}")
                 for fast in low for slow in high])
    claims.append(Claim("C6", "000", "SGD and AdamW have the shortest training time.",
                        "each of Adam, Nadam and AMSGrad takes more seconds per epoch than each of SGD+momentum and AdamW; "
                        f"paired t-tests on log seconds over {settings.timing_rounds} interleaved rounds, α = 0.05/6", c6))

    c7 = decide_best("Padam", {label(name): variation[name] for name in report + ["padam"]}, higher_is_better=False)
    claims.append(Claim("C7", "000", "Padam's test error curve is smoother than the others'.",
                        "Padam's test-error variation is lower than each of report 000's five optimizers'; paired t-tests over seeds, α = 0.05/5", c7))

    c8 = all_of([decide_greater(seconds["padam"], seconds[name], threshold=math.log(MARKEDLY), level=LEVEL / len(report), describe=describe_ratio,
                                name=f"vs {label(name)}") for name in report])
    claims.append(Claim("C8", "000", "Padam's training time is markedly higher than the others'.",
                        f"Padam's seconds per epoch exceed each of report 000's five optimizers' by more than ×{MARKEDLY:.2f}; "
                        f"paired t-tests on log seconds over {settings.timing_rounds} interleaved rounds, α = 0.05/5", c8))

    fc_accuracy = {name: seed_values(runs_fc, label(name), "final_accuracy") for name in FC_OPTIMIZERS}
    c9 = all_of([decide_equivalent(fc_accuracy["adam_scheduled_betas"], fc_accuracy[name], margin=COMPARABLE_POINTS / 100,
                                   level=LEVEL / 2, describe=describe_points, name=f"vs {label(name)}") for name in ("adam", "rmsprop")])
    claims.append(Claim("C9", "004", "Adam with scheduled betas performs comparably to Adam and RMSprop.",
                        f"on the fully connected network, its final test accuracy is within ±{COMPARABLE_POINTS:g} pp of Adam's and of "
                        "RMSprop's; two one-sided paired t-tests (equivalence) each, α = 0.05/2", c9))
    c10 = decide_greater(fc_accuracy["adam_scheduled_betas"], fc_accuracy["adagrad"], describe=describe_points, name="vs AdaGrad")
    claims.append(Claim("C10", "004", "Adam with scheduled betas performs better than AdaGrad.",
                        "on the fully connected network, its final test accuracy exceeds AdaGrad's; paired t-test over seeds, α = 0.05", c10))
    return claims


STUDY = Study(
    name="study1_optimizers",
    prefix="s1",
    title="Study 1 — Optimizer comparison on ResNet-18",
    reports=("000", "004"),
    question="How do SGD, Adam and ten of its successors compare on ResNet-18, at one shared learning rate and at each optimizer's own?",
    settings=Settings,
    planned_runs=planned_runs,
    figures=("fig-s1-a-loss", "fig-s1-a-accuracy", "fig-s1-a-seconds", "fig-s1-cost", "fig-s1-b-loss", "fig-s1-b-accuracy", "fig-s1-fc"),
    tables=("tbl-s1-settings", "tbl-s1-a", "tbl-s1-cost", "tbl-s1-grid", "tbl-s1-b", "tbl-s1-ranks", "tbl-s1-fc",
            "tbl-s1-reported", "tbl-s1-claims"),
    claims=tuple(f"C{number}" for number in range(1, 11)),
)
