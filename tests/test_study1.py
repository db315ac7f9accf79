"""Study 1's logic: the runs it plans, the lr selection, its tables and the claim rules, on hand-made numbers."""

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest

from optbench import book, styles
from optbench.studies import STUDIES, common
from optbench.studies import optimizer_comparison as study
from optbench.verdicts import CONTRADICTED, INCONCLUSIVE, NOT_TESTABLE, SUPPORTED
from study_helpers import interleaved_timing

LABELS = [styles.label(name) for name in study.OPTIMIZERS]


def _runs(final_accuracy, variation=None, seeds=(0, 1, 2), spread=0.004):
    rows = []
    for label, accuracy in final_accuracy.items():
        for seed in seeds:
            rows.append({
                "run_id": f"{label}-{seed}", "label": label, "seed": seed, "status": "finished", "collapsed": False,
                # a shared seed effect, as when seeds share initialization and data order
                "final_accuracy": accuracy + spread * (seed - 1) + 0.001 * (seed == 2),
                "best_accuracy": accuracy + 0.01, "best_epoch": 3, "seconds_per_epoch": 1.0,
                "first_train_loss": 2.0, "final_train_loss": 0.2,
                "test_error_variation": (variation or {}).get(label, 0.02) * (1 + 0.05 * seed),
            })
    return pd.DataFrame(rows)


def _report_like():
    accuracy = {label: 0.80 for label in LABELS}
    accuracy.update({"AMSGrad": 0.90, "SGD+momentum": 0.74, "AdamW": 0.75, "AdaGrad": 0.78})
    seconds = {label: 1.0 for label in LABELS}
    seconds.update({"AMSGrad": 1.3, "SGD+momentum": 0.8, "AdamW": 0.85, "Padam": 1.8})
    variation = {label: 0.02 for label in LABELS}
    variation.update({"Adam": 0.05, "Nadam": 0.06, "AMSGrad": 0.015, "Padam": 0.005})
    fc = {styles.label(name): 0.9 for name in study.FC_OPTIMIZERS}
    fc["AdaGrad"] = 0.8
    return _runs(accuracy, variation), _runs(fc), interleaved_timing(seconds)


def _verdicts(runs_a, runs_fc, timing, settings=None):
    claims = study.check_claims(runs_a, runs_fc, timing, settings or study.Settings())
    return {claim.id: claim.decision.verdict for claim in claims}


def test_numbers_shaped_like_the_reports_support_every_relative_claim():
    result = _verdicts(*_report_like())
    assert list(result) == list(study.STUDY.claims)
    assert result["C1"] == NOT_TESTABLE  # an accuracy level on CIFAR-10 after 200 epochs
    assert all(verdict == SUPPORTED for claim, verdict in result.items() if claim != "C1"), result


def test_c1_is_decided_at_the_paper_scale():
    runs_a, runs_fc, timing = _report_like()
    paper = study.Settings(dataset="cifar10", num_epochs=200)
    assert _verdicts(runs_a, runs_fc, timing, paper)["C1"] == SUPPORTED
    runs_a.loc[runs_a["label"] == "AdaGrad", "final_accuracy"] = 0.5
    assert _verdicts(runs_a, runs_fc, timing, paper)["C1"] == CONTRADICTED


def test_contrary_numbers_contradict():
    runs_a, runs_fc, timing = _report_like()
    runs_a.loc[runs_a["label"] == "AMSGrad", "final_accuracy"] -= 0.4
    timing.loc[timing["label"] == "Padam", "seconds_per_epoch"] *= 0.3
    runs_fc.loc[runs_fc["label"] == "AdaGrad", "final_accuracy"] += 0.15
    result = _verdicts(runs_a, runs_fc, timing)
    assert result["C2"] == result["C8"] == result["C10"] == CONTRADICTED


def test_differences_inside_the_noise_are_inconclusive():
    runs_a, runs_fc, timing = _report_like()
    # C10: scheduled betas 0.2 points above AdaGrad, with seeds scattered by several points
    fc = runs_fc.copy()
    fc.loc[fc["label"] == "AdaGrad", "final_accuracy"] = fc.loc[fc["label"] == "Adam (scheduled betas)", "final_accuracy"].to_numpy() - 0.002
    fc.loc[fc["label"] == "AdaGrad", "final_accuracy"] += np.array([0.04, -0.05, 0.02])
    # C3: AMSGrad's timing gap far smaller than its round-to-round noise
    noisy = timing.copy()
    noisy.loc[noisy["label"] == "AMSGrad", "seconds_per_epoch"] = (
        noisy.loc[noisy["label"] == "Adam", "seconds_per_epoch"].to_numpy() * np.array([1.3, 0.8, 1.25, 0.78, 1.2, 0.85]))
    result = _verdicts(runs_a, fc, noisy)
    assert result["C10"] == INCONCLUSIVE and result["C3"] == INCONCLUSIVE


def test_one_seed_decides_nothing_about_accuracy():
    runs_a, runs_fc, timing = _report_like()
    one = _verdicts(runs_a[runs_a["seed"] == 0], runs_fc[runs_fc["seed"] == 0], timing)
    for claim in ("C2", "C4", "C5", "C7", "C9", "C10"):
        assert one[claim] == INCONCLUSIVE, claim


def test_lr_selection_uses_the_mean_over_seeds_and_never_a_diverged_lr():
    rows = []
    for lr, accuracies, status in ((0.001, [0.80, 0.80], "finished"), (0.01, [0.95, 0.60], "finished"),
                                   (0.1, [0.99, math.nan], "diverged")):
        for seed, accuracy in enumerate(accuracies):
            rows.append({"label": "Adam", "lr": lr, "seed": seed, "final_accuracy": accuracy, "final_loss": 0.5,
                         "status": status if math.isnan(accuracy) else "finished"})
    chosen = study.choose_learning_rates(pd.DataFrame(rows))
    # 0.01 wins on seed 0 alone, 0.001 on the mean; 0.1 had a diverged run
    assert chosen.loc["Adam", "lr"] == 0.001 and chosen.loc["Adam", "seeds"] == 2


def test_protocols_plan_every_optimizer_with_the_reported_settings():
    settings = study.Settings(seeds=[0, 1, 2], lr_grid=[0.001, 0.01])
    a = study.protocol_a(settings)
    assert list(a) == LABELS and all(len(configs) == 3 for configs in a.values())
    assert {config.hyperparameters["lr"] for label, configs in a.items() if label != "Padam" for config in configs} == {0.001}
    padam = a["Padam"][0].hyperparameters
    assert (padam["lr"], padam["p"], padam["weight_decay"]) == (0.1, 0.125, 5e-4)
    assert a["AdamW"][0].hyperparameters["weight_decay"] == 1e-4 and a["SGD+momentum"][0].hyperparameters["momentum"] == 0.9
    # defaults the chapter does not set come from the optimizer registry
    assert a["Adam"][0].hyperparameters["betas"] == [0.9, 0.999]
    grid = study.selection_grid(settings)
    assert list(grid) == [0.001, 0.01]
    assert all(len(configs) == 2 and configs[0].validation_fraction == 0.2 for groups in grid.values() for configs in groups.values())
    b = study.protocol_b(settings, {label: 0.001 for label in LABELS})
    # where the chosen lr is protocol A's, protocol B reuses protocol A's runs (same configuration, same id)
    assert b["Adam"][0].run_id == a["Adam"][0].run_id
    assert [config.model for config in common.all_configs(study.fully_connected(settings))] == ["mlp"] * 12
    assert len(study.planned_runs(settings)) == 36 + 2 * 2 * 12 + 12


def test_the_parameters_cell_equals_the_settings_defaults_and_the_notebook_passes_every_one():
    import ast

    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    for name, registered in STUDIES.items():
        defaults = book.notebook_parameters(root / registered.source)
        assert defaults.pop("profile") == "default"
        assert defaults == dataclasses.asdict(registered.settings()), name
        # the settings cell names every parameter, so none silently keeps its default
        source = (root / registered.source).read_text()
        call = next(node for node in ast.walk(ast.parse(_code_cells(source)))
                    if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "Settings")
        assert {keyword.arg for keyword in call.keywords} == set(defaults), name


def _code_cells(markdown: str) -> str:
    cells, inside, lines = [], False, markdown.splitlines()
    for line in lines:
        if line.startswith("```{code-cell}"):
            inside, cell = True, []
        elif inside and line.startswith("```"):
            inside = False
            cells.append("\n".join(line for line in cell if not line.startswith(":tags:")))
        elif inside:
            cell.append(line)
    return "\n".join(cells)


def test_bad_study_parameters_are_named():
    with pytest.raises(ValueError, match=r"invalid seeds \[\]"):
        study.STUDY.validate({"seeds": []}, check_data=False)
    with pytest.raises(ValueError, match=r"invalid lr_grid \[0.1, -1\].*got -1"):
        study.STUDY.validate({"lr_grid": [0.1, -1]}, check_data=False)
    with pytest.raises(ValueError, match=r"invalid selection_seeds \[0\]: give at least two"):
        study.STUDY.validate({"selection_seeds": [0]}, check_data=False)
    with pytest.raises(ValueError, match=r"unknown optimizer\(s\) 'adamm'"):
        study.STUDY.validate({"hyperparameters": {"adamm": {"lr": 0.1}}}, check_data=False)
    with pytest.raises(ValueError, match="invalid num_epochs 0"):
        study.STUDY.validate({"num_epochs": 0}, check_data=False)


def test_collapsed_runs_are_flagged_and_named():
    frame = pd.DataFrame([
        {"label": "Nadam", "run_id": "n2", "seed": 2, "status": "finished", "diverged_epoch": None, "epoch": epoch,
         "test_accuracy": accuracy, "test_loss": 0.3, "train_loss": 0.1, "seconds": 1.0}
        for epoch, accuracy in ((1, 0.90), (2, 0.971), (3, 0.238))
    ])
    runs = common.per_run_summary(frame)
    assert bool(runs.loc[0, "collapsed"]) and runs.loc[0, "best_epoch"] == 2
    assert common.unusual_runs(runs) == ["Nadam seed 2 collapsed from 97.1% (epoch 2) to 23.8% at the end"]
    table = common.results_table(runs)
    assert table.loc["Nadam", "collapsed"] == 1 and table.loc["Nadam", "diverged"] == 0
    shown = common.display_results(table)
    assert shown["diverged / collapsed runs"].tolist() == ["0 / 1 of 1"]
    assert shown.iloc[0, 1] == "23.8"  # one seed: the mean alone, in percent


def test_results_intervals_stay_inside_the_accuracy_range():
    runs = _runs({"Adam": 0.5}, spread=0.45)  # seeds at 5%, 50% and 95%
    table = common.results_table(runs)
    assert 0.0 <= table.loc["Adam", "final_accuracy_low"] <= table.loc["Adam", "final_accuracy_high"] <= 1.0


def test_the_hand_over_names_both_workloads_and_the_headline_findings():
    def frame(labels, errors):
        return pd.DataFrame([{"label": label, "run_id": f"{label}-{seed}", "seed": seed, "epoch": epoch, "status": "finished",
                              "test_error": error - 0.01 * seed, "elapsed_seconds": 2.0 * epoch, "grad_evals": 64 * epoch}
                             for label, error in zip(labels, errors) for seed in (0, 1) for epoch in (1, 2)])

    settings = study.Settings(model_width=0.25, fc_hidden_sizes=[32])
    workloads = study.workload_table(frame(LABELS, np.linspace(0.1, 0.6, len(LABELS))),
                                     frame([styles.label(name) for name in study.FC_OPTIMIZERS], [0.2, 0.3, 0.4, 0.5]), settings)
    assert list(dict.fromkeys(workloads["workload"])) == ["ResNet-18 ×0.25 on digits", "fully connected [32] on digits"]
    assert len(workloads) == 2 * len(LABELS) + 2 * len(study.FC_OPTIMIZERS)
    runs_a, runs_fc, _ = _report_like()
    runs_b = runs_a.assign(final_accuracy=np.where(runs_a["label"] == "SGD+momentum", 0.95, runs_a["final_accuracy"]))
    table_a, table_b, table_fc = (common.results_table(runs, order) for runs, order in
                                  ((runs_a, LABELS), (runs_b, LABELS), (runs_fc, None)))
    headlines = study.headlines(table_a, table_b, table_fc)
    assert headlines["best final test accuracy, protocol A (one shared lr)"].startswith("AMSGrad (90.")
    assert headlines["best final test accuracy, protocol B (each optimizer's own lr)"].startswith("SGD+momentum (95.")
    assert headlines["SGD+momentum's rank, protocol A → B"] == f"{len(LABELS)} → 1 of {len(LABELS)}"
