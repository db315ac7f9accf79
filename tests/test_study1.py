"""Study 1's logic: the runs it plans, the lr selection and the claim rules, on hand-made numbers."""

import math

import pandas as pd
import pytest

from optbench.studies import optimizer_comparison as study


def _runs(final_accuracy, seconds, variation=None, seeds=(0, 1), loss_ratio=0.1):
    rows = []
    for label in final_accuracy:
        for seed in seeds:
            rows.append({
                "run_id": f"{label}-{seed}", "label": label, "seed": seed, "status": "finished",
                "final_accuracy": final_accuracy[label] + 0.001 * seed, "best_accuracy": final_accuracy[label] + 0.01,
                "best_epoch": 3, "seconds_per_epoch": seconds[label], "first_train_loss": 2.0,
                "final_train_loss": 2.0 * loss_ratio,
                "test_error_variation": (variation or {}).get(label, 0.01),
            })
    return pd.DataFrame(rows)


LABELS = list(study.OPTIMIZERS)


def _report_like():
    accuracy = {label: 0.80 for label in LABELS}
    accuracy.update({"AMSGrad": 0.90, "SGD+momentum": 0.76, "AdamW": 0.77, "AdaGrad": 0.78})
    seconds = {label: 1.0 for label in LABELS}
    seconds.update({"AMSGrad": 1.2, "SGD+momentum": 0.8, "AdamW": 0.85, "Padam": 1.5})
    variation = {label: 0.02 for label in LABELS}
    variation.update({"Adam": 0.05, "Nadam": 0.06, "AMSGrad": 0.015, "Padam": 0.005})
    fc = {label: 0.9 for label in study.FC_OPTIMIZERS}
    fc["AdaGrad"] = 0.8
    return _runs(accuracy, seconds, variation), _runs(fc, {label: 1.0 for label in fc})


def test_numbers_shaped_like_the_reports_support_every_claim():
    runs_a, runs_fc = _report_like()
    claims = study.check_claims(runs_a, runs_fc, num_seeds=2)
    assert list(claims.index) == [f"C{number}" for number in range(1, 11)]
    assert (claims["verdict"] == study.SUPPORTED).all(), claims[["measured", "verdict"]]


def test_contrary_numbers_contradict_and_one_seed_is_not_testable():
    runs_a, runs_fc = _report_like()
    runs_a.loc[runs_a["label"] == "AMSGrad", "final_accuracy"] = 0.5
    runs_a.loc[runs_a["label"] == "Padam", "seconds_per_epoch"] = 0.5
    runs_fc.loc[runs_fc["label"] == "AdaGrad", "final_accuracy"] = 0.95
    claims = study.check_claims(runs_a, runs_fc, num_seeds=2)["verdict"]
    assert claims["C2"] == claims["C8"] == claims["C10"] == study.CONTRADICTED
    assert claims["C1"] == study.CONTRADICTED  # AMSGrad now ends below 75%
    single = study.check_claims(runs_a[runs_a["seed"] == 0], runs_fc[runs_fc["seed"] == 0], num_seeds=1)
    assert single.loc["C2", "verdict"] == study.NOT_TESTABLE


def test_lr_selection_takes_the_best_validation_accuracy_and_never_a_diverged_run():
    frame = pd.DataFrame([
        {"run_id": "a1", "label": "Adam", "lr": 0.001, "epoch": 2, "test_accuracy": 0.8, "test_loss": 0.5, "status": "finished"},
        {"run_id": "a2", "label": "Adam", "lr": 0.01, "epoch": 2, "test_accuracy": 0.8, "test_loss": 0.4, "status": "finished"},
        {"run_id": "s1", "label": "SGD+momentum", "lr": 0.1, "epoch": 1, "test_accuracy": math.nan, "test_loss": math.nan, "status": "diverged"},
        {"run_id": "s2", "label": "SGD+momentum", "lr": 0.01, "epoch": 2, "test_accuracy": 0.3, "test_loss": 2.0, "status": "finished"},
    ])
    chosen = study.select_learning_rates(frame)
    assert chosen.loc["Adam", "lr"] == 0.01  # tie on accuracy, lower loss wins
    assert chosen.loc["SGD+momentum", "lr"] == 0.01


def test_protocols_plan_every_optimizer_with_the_reported_settings():
    settings = study.Settings(seeds=[0, 1, 2], lr_grid=[0.001, 0.01])
    a = study.protocol_a(settings)
    assert list(a) == LABELS and all(len(configs) == 3 for configs in a.values())
    assert {config.hyperparameters["lr"] for label, configs in a.items() if label != "Padam" for config in configs} == {0.001}
    padam = a["Padam"][0].hyperparameters
    assert (padam["lr"], padam["p"], padam["weight_decay"]) == (0.1, 0.125, 5e-4)
    assert a["AdamW"][0].hyperparameters["weight_decay"] == 1e-4 and a["SGD+momentum"][0].hyperparameters["momentum"] == 0.9
    grid = study.selection_grid(settings)
    assert all(len(configs) == 2 and configs[0].validation_fraction == 0.2 for configs in grid.values())
    b = study.protocol_b(settings, {label: 0.001 for label in LABELS})
    # where the chosen lr is protocol A's, protocol B reuses protocol A's runs (same configuration, same id)
    assert b["Adam"][0].run_id == a["Adam"][0].run_id
    assert [config.model for config in study.all_configs(study.fully_connected(settings))] == ["mlp"] * 12


def test_bad_study_parameters_are_named():
    with pytest.raises(ValueError, match="invalid seeds \\[\\]"):
        study.validate_parameters({"seeds": []})
    with pytest.raises(ValueError, match="invalid lr_grid \\[0.1, -1\\].*got -1"):
        study.validate_parameters({"lr_grid": [0.1, -1]})
    with pytest.raises(ValueError, match="invalid seeds \\[0, -1\\]"):
        study.validate_parameters({"seeds": [0, -1]})
    with pytest.raises(ValueError, match="invalid num_epochs 0"):
        study.validate_parameters({"num_epochs": 0})
