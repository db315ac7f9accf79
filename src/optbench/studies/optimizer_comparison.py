"""Study 1: optimizer comparison on ResNet-18 (reports 000 and 004).

Protocol A ("as reported"): report 000's uniform lr for every optimizer, Padam with its own settings.
Protocol B ("fair"): each optimizer's lr chosen on a held-out validation split from a log grid, then
rerun with every seed. The report-004 experiment: a fully connected network, Adam with scheduled betas
against Adam, RMSprop and AdaGrad at their torch.optim default learning rates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .. import data, optim
from ..config import RunConfig
from ..statistics import mean_interval

#: display label → registry name, in the chapter's order
OPTIMIZERS = {
    "SGD+momentum": "sgd",
    "Adam": "adam",
    "AdamW": "adamw",
    "Nadam": "nadam",
    "AMSGrad": "amsgrad",
    "Padam": "padam",
    "RAdam": "radam",
    "AdaBelief": "adabelief",
    "Lookahead(Adam)": "lookahead",
    "Adam (scheduled betas)": "adam_scheduled_betas",
    "AdaGrad": "adagrad",
    "RMSprop": "rmsprop",
}
#: the five optimizers of report 000's first part
REPORT_000 = ("SGD+momentum", "Adam", "AdamW", "Nadam", "AMSGrad")
FC_OPTIMIZERS = ("Adam (scheduled betas)", "Adam", "RMSprop", "AdaGrad")


@dataclass
class Settings:
    """The study's parameters (the notebook's parameters cell, validated)."""

    dataset: str = "digits"
    image_size: int | None = 16
    model_width: float = 0.125
    num_epochs: int = 6
    batch_size: int = 128
    seeds: list = field(default_factory=lambda: [0, 1, 2])
    max_train_examples: int | None = None
    augment: bool = False
    uniform_lr: float = 0.001
    sgd_momentum: float = 0.9
    adamw_weight_decay: float = 1e-4
    padam_lr: float = 0.1
    padam_p: float = 0.125
    padam_weight_decay: float = 5e-4
    lr_grid: list = field(default_factory=lambda: [1e-4, 1e-3, 1e-2, 1e-1])
    validation_fraction: float = 0.2
    fc_hidden_sizes: list = field(default_factory=lambda: [256, 128])
    fc_num_epochs: int = 10
    fc_batch_size: int = 64

    def __post_init__(self):
        if not isinstance(self.seeds, (list, tuple)) or not self.seeds:
            raise ValueError(f"invalid seeds {self.seeds!r}: give a non-empty list of integers >= 0")
        if not isinstance(self.lr_grid, (list, tuple)) or not self.lr_grid:
            raise ValueError(f"invalid lr_grid {self.lr_grid!r}: give a non-empty list of learning rates > 0")
        for lr in self.lr_grid:
            if not isinstance(lr, (int, float)) or isinstance(lr, bool) or not lr > 0:
                raise ValueError(f"invalid lr_grid {self.lr_grid!r}: every learning rate must be a number > 0, got {lr!r}")
        for seed in self.seeds:
            if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
                raise ValueError(f"invalid seeds {self.seeds!r}: every seed must be an integer >= 0, got {seed!r}")
        if not 0.0 < self.validation_fraction < 1.0:
            raise ValueError(f"invalid validation_fraction {self.validation_fraction!r}: it must lie in (0, 1)")

    def base(self) -> dict:
        return {
            "dataset": self.dataset, "image_size": self.image_size, "model": "resnet18",
            "model_options": {"width": self.model_width, "norm": "batch"}, "num_epochs": self.num_epochs,
            "batch_size": self.batch_size, "augment": self.augment, "max_train_examples": self.max_train_examples,
        }

    def protocol_a_hyperparameters(self, label: str) -> dict:
        """Report 000's settings: one lr for all, SGD momentum 0.9, AdamW wd 1e-4, Padam its own settings."""
        name = OPTIMIZERS[label]
        if name == "padam":
            return {"lr": self.padam_lr, "p": self.padam_p, "weight_decay": self.padam_weight_decay}
        hyperparameters = {"lr": self.uniform_lr}
        if name == "sgd":
            hyperparameters["momentum"] = self.sgd_momentum
        if name == "adamw":
            hyperparameters["weight_decay"] = self.adamw_weight_decay
        return hyperparameters


def protocol_a(settings: Settings) -> dict[str, list[RunConfig]]:
    """Protocol A's configurations per optimizer label (one per seed)."""
    return {
        label: [RunConfig(optimizer=name, seed=seed, hyperparameters=settings.protocol_a_hyperparameters(label), **settings.base())
                for seed in settings.seeds]
        for label, name in OPTIMIZERS.items()
    }


def selection_grid(settings: Settings) -> dict[str, list[RunConfig]]:
    """Protocol B's selection runs: every lr of the grid on the validation split, first seed only."""
    grid = {}
    for label, name in OPTIMIZERS.items():
        fixed = {key: value for key, value in settings.protocol_a_hyperparameters(label).items() if key != "lr"}
        grid[label] = [
            RunConfig(optimizer=name, seed=settings.seeds[0], validation_fraction=settings.validation_fraction,
                      hyperparameters={**fixed, "lr": lr}, **settings.base())
            for lr in settings.lr_grid
        ]
    return grid


def select_learning_rates(selection: pd.DataFrame) -> pd.DataFrame:
    """Per optimizer, the lr with the highest final validation accuracy (ties: lower validation loss).

    Diverged runs are never selected.
    """
    final = selection.sort_values("epoch").groupby("run_id").tail(1)
    final = final.assign(
        score_accuracy=final["test_accuracy"].where(final["status"] == "finished", -math.inf),
        score_loss=final["test_loss"].where(final["status"] == "finished", math.inf),
    )
    best = final.sort_values(["label", "score_accuracy", "score_loss"], ascending=[True, False, True]).groupby("label").head(1)
    return best[["label", "lr", "test_accuracy", "test_loss"]].rename(
        columns={"test_accuracy": "validation_accuracy", "test_loss": "validation_loss"}
    ).set_index("label")


def protocol_b(settings: Settings, chosen_lr: dict[str, float]) -> dict[str, list[RunConfig]]:
    """Protocol B's final runs: each optimizer at its chosen lr, every seed, evaluated on the test set."""
    runs = {}
    for label, name in OPTIMIZERS.items():
        hyperparameters = {**settings.protocol_a_hyperparameters(label), "lr": chosen_lr[label]}
        runs[label] = [RunConfig(optimizer=name, seed=seed, hyperparameters=hyperparameters, **settings.base()) for seed in settings.seeds]
    return runs


def fully_connected(settings: Settings) -> dict[str, list[RunConfig]]:
    """Report 004's experiment: a fully connected network, each optimizer at its torch.optim default lr."""
    return {
        label: [RunConfig(optimizer=OPTIMIZERS[label], seed=seed, dataset=settings.dataset, image_size=None, model="mlp",
                          model_options={"hidden_sizes": list(settings.fc_hidden_sizes)}, num_epochs=settings.fc_num_epochs,
                          batch_size=settings.fc_batch_size, max_train_examples=settings.max_train_examples)
                for seed in settings.seeds]
        for label in FC_OPTIMIZERS
    }


def all_configs(groups: dict[str, list[RunConfig]]) -> list[RunConfig]:
    return [config for configs in groups.values() for config in configs]


def label_frame(frame: pd.DataFrame, groups: dict[str, list[RunConfig]], protocol: str | None = None) -> pd.DataFrame:
    """Add the optimizer's display ``label`` (and ``protocol``) to a store DataFrame of these runs."""
    labels = {config.run_id: label for label, configs in groups.items() for config in configs}
    frame = frame[frame["run_id"].isin(labels)].assign(label=lambda df: df["run_id"].map(labels))
    order = {label: index for index, label in enumerate(groups)}
    frame = frame.sort_values(["label", "seed", "epoch"], key=lambda column: column.map(order) if column.name == "label" else column)
    return frame.assign(protocol=protocol) if protocol is not None else frame


# ---- summaries -------------------------------------------------------------------------------------

def per_run_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per run: final and best test accuracy, epoch of best, seconds per epoch, test-error variation."""
    rows = []
    for run_id, run in frame.groupby("run_id", sort=False):
        run = run.sort_values("epoch")
        accuracy = run["test_accuracy"].to_numpy()
        finite = np.isfinite(accuracy)
        best_index = int(np.nanargmax(np.where(finite, accuracy, -np.inf))) if finite.any() else 0
        error = run["test_error"].to_numpy()
        second_half = error[len(error) // 2:]
        rows.append({
            "run_id": run_id,
            "label": run["label"].iloc[0],
            "seed": run["seed"].iloc[0],
            "status": run["status"].iloc[0],
            "final_accuracy": accuracy[-1],
            "best_accuracy": accuracy[best_index],
            "best_epoch": int(run["epoch"].iloc[best_index]),
            # the median resists the odd epoch slowed by other work on a shared machine
            "seconds_per_epoch": float(run["seconds"].median()),
            "final_train_loss": float(run["train_loss"].iloc[-1]),
            "first_train_loss": float(run["train_loss"].iloc[0]),
            # mean absolute epoch-to-epoch change of the test error over the second half: oscillation
            "test_error_variation": float(np.mean(np.abs(np.diff(second_half)))) if len(second_half) > 1 else math.nan,
        })
    return pd.DataFrame(rows)


SUMMARY_METRICS = {
    "final_accuracy": "final test accuracy",
    "best_accuracy": "best test accuracy",
    "best_epoch": "epoch of best",
    "seconds_per_epoch": "seconds per epoch",
}


def results_table(runs: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    """Mean, interval half-width per optimizer for each summary metric (columns ``<metric>`` and ``<metric>_ci``)."""
    rows = []
    for label in order:
        group = runs[runs["label"] == label]
        row = {"optimizer": label, "diverged runs": int((group["status"] == "diverged").sum())}
        for metric in SUMMARY_METRICS:
            mean, low, high = mean_interval(group[metric])
            row[metric] = mean
            row[f"{metric}_ci"] = (high - low) / 2 if math.isfinite(low) else math.nan
        rows.append(row)
    return pd.DataFrame(rows).set_index("optimizer")


def ranking(table: pd.DataFrame) -> list[str]:
    """Optimizers by mean final test accuracy, best first."""
    return list(table["final_accuracy"].sort_values(ascending=False, kind="stable").index)


# ---- claims ------------------------------------------------------------------------------------------

@dataclass
class Verdict:
    claim: str
    source: str
    text: str
    rule: str
    measured: str
    verdict: str


SUPPORTED, CONTRADICTED, NOT_TESTABLE = "supported", "contradicted", "not testable at this profile"


def _verdict(condition: bool | None) -> str:
    if condition is None:
        return NOT_TESTABLE
    return SUPPORTED if condition else CONTRADICTED


def check_claims(runs_a: pd.DataFrame, runs_fc: pd.DataFrame, num_seeds: int) -> pd.DataFrame:
    """Decide claims C1–C10 on protocol A's and the fully connected experiment's per-run summaries."""
    table = results_table(runs_a, list(OPTIMIZERS))
    table = table[table.index.isin(runs_a["label"].unique())]
    variation = runs_a.groupby("label")["test_error_variation"].mean()
    loss_ratio = (runs_a.groupby("label")["final_train_loss"].mean() / runs_a.groupby("label")["first_train_loss"].mean())
    accuracy, seconds = table["final_accuracy"], table["seconds_per_epoch"]
    report = [label for label in REPORT_000 if label in table.index]
    verdicts = []

    worst_ratio, lowest = loss_ratio.max(), accuracy.min()
    verdicts.append(Verdict("C1", "000", "Every optimizer brings training loss and test error low (accuracy about 75–80%).",
                            "every optimizer's final training loss is below 25% of its first-epoch value and its mean final test accuracy is at least 75%",
                            f"largest final/first training-loss ratio {worst_ratio:.2f}; lowest mean final accuracy {lowest:.1%} ({accuracy.idxmin()})",
                            _verdict(bool(worst_ratio < 0.25 and lowest >= 0.75))))

    best = accuracy.idxmax()
    amsgrad_low = table.loc["AMSGrad", "final_accuracy"] - table.loc["AMSGrad", "final_accuracy_ci"]
    amsgrad_high = table.loc["AMSGrad", "final_accuracy"] + table.loc["AMSGrad", "final_accuracy_ci"]
    c2 = None if num_seeds < 2 else bool(amsgrad_high >= accuracy.max() and variation.get("AMSGrad", math.inf) <= variation.median())
    verdicts.append(Verdict("C2", "000", "AMSGrad performs best overall and is the most robust.",
                            "AMSGrad's 95% interval of final test accuracy reaches the best mean, and its test-error variation is at most the median (needs ≥ 2 seeds)",
                            f"best: {best} ({accuracy.max():.1%}); AMSGrad {accuracy['AMSGrad']:.1%} (interval {amsgrad_low:.1%}–{amsgrad_high:.1%}); "
                            f"variation AMSGrad {variation.get('AMSGrad', math.nan):.4f}, median {variation.median():.4f}", _verdict(c2)))

    others = seconds.drop("AMSGrad")
    verdicts.append(Verdict("C3", "000", "AMSGrad takes more time per epoch than the others.",
                            "AMSGrad's mean seconds per epoch exceed the median of the other optimizers' by more than 5%",
                            f"AMSGrad {seconds['AMSGrad']:.3f} s; median of the others {others.median():.3f} s",
                            _verdict(bool(seconds["AMSGrad"] > 1.05 * others.median()))))

    c4 = None if pd.isna(variation.get("AMSGrad")) else bool(variation["Adam"] > variation["AMSGrad"] and variation["Nadam"] > variation["AMSGrad"])
    verdicts.append(Verdict("C4", "000", "Adam and Nadam oscillate (less stable than AMSGrad).",
                            "the mean absolute epoch-to-epoch change of test error over the second half of training is larger for both Adam and Nadam than for AMSGrad",
                            f"Adam {variation['Adam']:.4f}, Nadam {variation['Nadam']:.4f}, AMSGrad {variation['AMSGrad']:.4f}", _verdict(c4)))

    lowest_two = set(accuracy[report].nsmallest(2).index)
    verdicts.append(Verdict("C5", "000", "SGD (lr 0.001) and AdamW have the highest test error and lowest accuracy.",
                            "SGD+momentum and AdamW have the two lowest mean final test accuracies among report 000's five optimizers",
                            f"two lowest: {', '.join(sorted(lowest_two))}", _verdict(lowest_two == {"SGD+momentum", "AdamW"})))

    fastest_two = set(seconds[report].nsmallest(2).index)
    verdicts.append(Verdict("C6", "000", "SGD and AdamW have the shortest training time.",
                            "SGD+momentum and AdamW have the two lowest mean seconds per epoch among report 000's five optimizers",
                            f"two fastest: {', '.join(sorted(fastest_two))}", _verdict(fastest_two == {"SGD+momentum", "AdamW"})))

    smoothest = variation[report + ["Padam"]].idxmin() if not variation[report + ["Padam"]].isna().all() else None
    verdicts.append(Verdict("C7", "000", "Padam's test error curve is smoother than the others'.",
                            "Padam has the smallest test-error variation among report 000's optimizers and Padam",
                            f"smoothest: {smoothest}; Padam {variation['Padam']:.4f}", _verdict(None if smoothest is None else smoothest == "Padam")))

    others = seconds[report]
    verdicts.append(Verdict("C8", "000", "Padam's training time is markedly higher than the others'.",
                            "Padam's mean seconds per epoch exceed the median of report 000's five optimizers by more than 20%",
                            f"Padam {seconds['Padam']:.3f} s; median {others.median():.3f} s", _verdict(bool(seconds["Padam"] > 1.2 * others.median()))))

    fc = results_table(runs_fc, list(FC_OPTIMIZERS))["final_accuracy"]
    scheduled = fc["Adam (scheduled betas)"]
    gaps = {label: scheduled - fc[label] for label in ("Adam", "RMSprop")}
    verdicts.append(Verdict("C9", "004", "Adam with scheduled betas performs comparably to Adam and RMSprop.",
                            "its mean final test accuracy is within 2 percentage points of both Adam's and RMSprop's (fully connected network)",
                            "; ".join(f"minus {label}: {gap:+.1%}" for label, gap in gaps.items()),
                            _verdict(all(abs(gap) <= 0.02 for gap in gaps.values()))))
    verdicts.append(Verdict("C10", "004", "Adam with scheduled betas performs better than AdaGrad.",
                            "its mean final test accuracy is higher than AdaGrad's (fully connected network)",
                            f"scheduled betas {scheduled:.1%}, AdaGrad {fc['AdaGrad']:.1%}", _verdict(bool(scheduled > fc["AdaGrad"]))))
    return pd.DataFrame([vars(verdict) for verdict in verdicts]).set_index("claim")


def settings_from_parameters(parameters: dict) -> Settings:
    """The study's settings from a notebook's parameters (other names, such as ``profile``, are ignored)."""
    names = Settings.__dataclass_fields__
    return Settings(**{name: value for name, value in parameters.items() if name in names})


def validate_parameters(parameters: dict, check_data: bool = True) -> None:
    """Build every configuration the study would run from these parameters, raising on a bad value.

    With ``check_data`` the dataset must also be on disk or downloadable.
    """
    settings = settings_from_parameters(parameters)
    if check_data:
        data.ensure_available(settings.dataset)
    for groups in (protocol_a(settings), selection_grid(settings), fully_connected(settings)):
        all_configs(groups)
