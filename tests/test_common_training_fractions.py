"""Shared chapter helpers: values at fractions of training and the learning-rate sensitivity width, on
hand-made runs whose answers are worked out by hand."""

import math

import pandas as pd
import pytest

from optbench.studies import common


def test_epoch_at_fraction_is_the_first_epoch_at_or_after_it():
    assert [common.epoch_at_fraction(fraction, 100) for fraction in (0.25, 0.5, 0.75, 1.0)] == [25, 50, 75, 100]
    assert [common.epoch_at_fraction(fraction, 6) for fraction in (0.25, 0.5, 0.75, 1.0)] == [2, 3, 5, 6]
    assert common.epoch_at_fraction(0.3, 10) == 3  # 0.3·10 is 3.0000000000000004 in floating point
    assert common.epoch_at_fraction(0.01, 4) == 1
    with pytest.raises(ValueError, match=r"invalid fraction 0: a fraction of training lies in \(0, 1\]"):
        common.epoch_at_fraction(0, 10)


def _frame():
    rows = []
    for label, seeds in (("Adam", (0, 1)), ("SGD", (0,))):
        for seed in seeds:
            epochs = 3 if (label, seed) == ("Adam", 1) else 8  # Adam seed 1 diverged after epoch 3
            for epoch in range(1, epochs + 1):
                rows.append({"label": label, "run_id": f"{label}{seed}", "seed": seed, "num_epochs": 8, "epoch": epoch,
                             "test_accuracy": epoch / 10 + seed / 100, "architecture": "vgg16"})
    return pd.DataFrame(rows)


def test_values_at_fractions_reads_each_run_at_its_epochs():
    values = common.values_at_fractions(_frame(), [0.25, 0.5, 1.0], keep=["architecture"])
    adam0 = values[values["run_id"] == "Adam0"]
    assert list(adam0["epoch"]) == [2, 4, 8] and list(adam0["test_accuracy"]) == pytest.approx([0.2, 0.4, 0.8])
    # the diverged run has its epoch 2 but no epoch 4 or 8
    adam1 = values[values["run_id"] == "Adam1"]["test_accuracy"].tolist()
    assert adam1[0] == pytest.approx(0.21) and math.isnan(adam1[1]) and math.isnan(adam1[2])
    assert set(values["architecture"]) == {"vgg16"} and len(values) == 9


def _final(label, table, status=None):
    """Runs of ``label``: {lr: [accuracy per seed]}; ``status``: {lr: status} (default finished)."""
    return [{"label": label, "lr": lr, "seed": seed, "final_accuracy": accuracy, "status": (status or {}).get(lr, "finished")}
            for lr, accuracies in table.items() for seed, accuracy in enumerate(accuracies)]


def test_lr_sensitivity_measures_the_contiguous_range_within_the_tolerance():
    rows = (
        # best 0.01 (mean 0.90); 0.003 (0.895) and 0.03 (0.891) stay within 1 pp, 0.1 (0.85) does not, 0.001 (0.893) is cut off by 0.1?
        _final("Adam", {0.001: [0.80, 0.80], 0.003: [0.89, 0.90], 0.01: [0.90, 0.90], 0.03: [0.89, 0.892], 0.1: [0.85, 0.85]})
        # SGD: 0.1 best (0.95); 0.03 at 0.945 inside; 0.3 diverged ends the range; 0.01 at 0.93 outside
        + _final("SGD", {0.01: [0.93, 0.93], 0.03: [0.945, 0.945], 0.1: [0.95, 0.95], 0.3: [0.99, math.nan]}, status={0.3: "diverged"})
        # AMSGrad: every lr within the tolerance: the range reaches both ends of the grid
        + _final("AMSGrad", {0.001: [0.9, 0.9], 0.01: [0.905, 0.905], 0.1: [0.899, 0.899]})
    )
    result = common.lr_sensitivity(pd.DataFrame(rows), tolerance=0.01)
    adam, sgd, amsgrad = result.loc["Adam"], result.loc["SGD"], result.loc["AMSGrad"]
    assert (adam["best_lr"], adam["low"], adam["high"]) == (0.01, 0.003, 0.03)
    assert adam["decades"] == pytest.approx(math.log10(0.03 / 0.003)) and not adam["open_low"] and not adam["open_high"]
    # the diverged lr is never best, though one seed scored 0.99, and it ends the range
    assert (sgd["best_lr"], sgd["low"], sgd["high"]) == (0.1, 0.03, 0.1) and not sgd["open_high"]
    assert sgd["best_score"] == pytest.approx(0.95) and sgd["decades"] == pytest.approx(math.log10(0.1 / 0.03))
    assert amsgrad["decades"] == pytest.approx(2.0) and amsgrad["open_low"] and amsgrad["open_high"]


def test_lr_sensitivity_of_a_single_best_value_and_of_all_diverged():
    rows = _final("Adam", {0.001: [0.5, 0.5], 0.01: [0.9, 0.9], 0.1: [0.7, 0.7]}) + _final("SGD", {0.1: [math.nan]}, status={0.1: "diverged"})
    result = common.lr_sensitivity(pd.DataFrame(rows), tolerance=0.01)
    assert result.loc["Adam", "decades"] == 0.0 and result.loc["Adam", "low"] == result.loc["Adam", "high"] == 0.01
    assert math.isnan(result.loc["SGD", "decades"]) and math.isnan(result.loc["SGD", "best_lr"])
    # a wider tolerance takes in the neighbours: 0.7 is within 0.25 of 0.9, 0.5 is not
    assert common.lr_sensitivity(pd.DataFrame(rows), tolerance=0.25).loc["Adam", "decades"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="invalid tolerance -0.1"):
        common.lr_sensitivity(pd.DataFrame(rows), tolerance=-0.1)
