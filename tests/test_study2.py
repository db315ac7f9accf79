"""Study 2's logic: the runs it plans (and shares between sections), its tables and the claim rules, on
hand-made numbers."""

import math

import numpy as np
import pandas as pd
import pytest

from optbench import styles
from optbench.studies import STUDIES, common
from optbench.studies import padam_partial_adaptivity as study
from optbench.verdicts import CONTRADICTED, INCONCLUSIVE, NOT_TESTABLE, SUPPORTED

LABELS = [styles.label(name) for name in study.OPTIMIZERS]
SEEDS = (0, 1, 2)
P_GRID = (0.0625, 0.125, 0.25, 0.5)
LR_GRID = (0.001, 0.01, 0.1)


def _noise(seed, salt):
    # a shared seed effect plus a small per-comparison wobble, so paired differences are not exactly constant
    return 0.004 * (seed - 1) + 0.001 * math.sin(3 * seed + salt)


def _baseline_runs(accuracy=None, final_loss=None, early_loss=None):
    accuracy = {"Padam": 0.88, "SGD+momentum": 0.80, "Adam": 0.88, "AMSGrad": 0.89, **(accuracy or {})}
    final_loss = {"Padam": 0.05, "SGD+momentum": 0.2, "Adam": 0.2, "AMSGrad": 0.2, **(final_loss or {})}
    early_loss = {"Padam": 0.5, "SGD+momentum": 0.8, "Adam": 1.0, "AMSGrad": 1.0, **(early_loss or {})}
    rows = []
    for architecture in study.ARCHITECTURES:
        for salt, label in enumerate(LABELS):
            for seed in SEEDS:
                rows.append({"run_id": f"{architecture}-{label}-{seed}", "label": label, "architecture": architecture, "seed": seed,
                             "status": "finished", "collapsed": False,
                             "final_accuracy": accuracy[label] + _noise(seed, salt),
                             "final_train_loss": final_loss[label] * (1 + 10 * _noise(seed, salt)),
                             "early_train_loss": early_loss[label] * (1 + 10 * _noise(seed, salt))})
    return pd.DataFrame(rows)


def _grid_runs(accuracy):
    """``accuracy(p, lr)`` → mean final accuracy (NaN: the cell diverged)."""
    rows = []
    for p in P_GRID:
        for lr in LR_GRID:
            for seed in SEEDS:
                value = accuracy(p, lr)
                diverged = math.isnan(value)
                rows.append({"run_id": f"{p}-{lr}-{seed}", "label": study.p_label(p), "p": p, "lr": lr, "seed": seed,
                             "status": "diverged" if diverged else "finished", "collapsed": False,
                             "final_accuracy": math.nan if diverged else value + _noise(seed, 10 * p + lr),
                             "final_train_loss": math.nan if diverged else 1.0 - value})
    return pd.DataFrame(rows)


def _report_grid(p, lr):
    # small p likes a large lr, large p a small one
    best = {0.0625: 0.1, 0.125: 0.1, 0.25: 0.01, 0.5: 0.001}[p]
    return 0.9 - 0.1 * abs(math.log10(lr) - math.log10(best))


def _search_runs(accuracy):
    rows = []
    for p in P_GRID:
        for seed in SEEDS:
            rows.append({"run_id": f"s{p}-{seed}", "label": study.p_label(p), "p": p, "seed": seed, "status": "finished",
                         "collapsed": False, "final_accuracy": accuracy[p] + _noise(seed, p)})
    return pd.DataFrame(rows)


REPORT_SEARCH = {0.0625: 0.92, 0.125: 0.86, 0.25: 0.85, 0.5: 0.80}


def _verdicts(baseline_runs, grid_runs, search_runs, settings=None):
    claims = study.check_claims(baseline_runs, grid_runs, search_runs, settings or study.Settings())
    return {claim.id: claim.decision.verdict for claim in claims}


def test_numbers_shaped_like_the_report_support_every_claim():
    result = _verdicts(_baseline_runs(), _grid_runs(_report_grid), _search_runs(REPORT_SEARCH))
    assert list(result) == list(study.STUDY.claims)
    assert set(result.values()) == {SUPPORTED}, result


def test_contrary_numbers_contradict_every_claim():
    baseline = _baseline_runs(accuracy={"SGD+momentum": 0.95}, final_loss={"Padam": 0.5}, early_loss={"Padam": 2.0})

    def reversed_grid(p, lr):  # small p likes a small lr, large p a large one
        return 0.9 - 0.1 * abs(math.log10(lr) - math.log10({0.0625: 0.001, 0.125: 0.001, 0.25: 0.01, 0.5: 0.1}[p]))

    search = {**REPORT_SEARCH, 0.0625: 0.70}
    result = _verdicts(baseline, _grid_runs(reversed_grid), _search_runs(search))
    assert set(result.values()) == {CONTRADICTED}, result


def test_differences_inside_the_noise_are_inconclusive():
    rng = np.random.default_rng(0)
    baseline = _baseline_runs(accuracy={"Padam": 0.88, "SGD+momentum": 0.879, "Adam": 0.88, "AMSGrad": 0.88},
                              final_loss={label: 0.2 for label in LABELS}, early_loss={label: 1.0 for label in LABELS})
    for column in ("final_accuracy", "final_train_loss", "early_train_loss"):
        baseline[column] *= 1 + 0.05 * rng.standard_normal(len(baseline))
    grid = _grid_runs(lambda p, lr: 0.85)
    grid["final_accuracy"] += 0.03 * rng.standard_normal(len(grid))
    search = _search_runs({p: 0.85 for p in P_GRID})
    search["final_accuracy"] += 0.03 * rng.standard_normal(len(search))
    result = _verdicts(baseline, grid, search)
    assert set(result.values()) == {INCONCLUSIVE}, result


def test_one_seed_decides_nothing():
    baseline, grid, search = _baseline_runs(), _grid_runs(_report_grid), _search_runs(REPORT_SEARCH)
    result = _verdicts(baseline[baseline["seed"] == 0], grid[grid["seed"] == 0], search[search["seed"] == 0])
    assert set(result.values()) == {INCONCLUSIVE}, result


def test_a_diverged_cell_counts_as_the_worst_accuracy():
    # p = 1/2 at lr 0.1 diverges: the smaller lr is then clearly better for large p
    grid = _grid_runs(lambda p, lr: math.nan if (p, lr) == (0.5, 0.1) else _report_grid(p, lr))
    assert _verdicts(_baseline_runs(), grid, _search_runs(REPORT_SEARCH))["C13"] == SUPPORTED
    best = study.best_lr_per_p(grid).set_index("p")
    assert best.loc[0.5, "lr"] == 0.001 and best.loc[0.0625, "lr"] == 0.1


def test_claims_about_settings_this_build_lacks_are_not_testable():
    baseline, grid, search = _baseline_runs(), _grid_runs(_report_grid), _search_runs(REPORT_SEARCH)
    # C14 is about lr 0.1 and p = 1/16
    assert _verdicts(baseline, grid, search, study.Settings(search_lr=0.01))["C14"] == NOT_TESTABLE
    assert _verdicts(baseline, grid, search[search["p"] != 0.0625])["C14"] == NOT_TESTABLE
    # C13 needs a p near 0 and a p near 1/2
    assert _verdicts(baseline, grid[grid["p"] >= 0.25], search)["C13"] == NOT_TESTABLE


def test_runs_shared_between_sections_have_one_configuration():
    settings = study.Settings()
    baselines = study.baselines(settings)
    grid = study.p_lr_grid(settings)
    ids = lambda configs: [config.run_id for config in configs]
    # the report's Padam on ResNet-18 is the grid's (1/8, 0.1) cell and the sensitivity's Padam at 0.1
    assert ids(grid[0.1]["Padam p=1/8"]) == ids(baselines["resnet18"]["Padam"])
    assert ids(study.sensitivity_grid(settings)[0.1]["Padam"]) == ids(grid[0.1]["Padam p=1/8"])[:2]
    assert ids(study.sensitivity_grid(settings)[0.001]["Adam"]) == ids(baselines["resnet18"]["Adam"])[:2]
    # the p search's p = 1/8 is the VGG-16 baseline
    assert ids(study.p_search(settings)["Padam p=1/8"]) == ids(baselines["vgg16"]["Padam"])
    # the decay comparison's constant runs are the baselines' secondary seeds
    decay = study.decay_comparison(settings)["wideresnet"]
    assert ids(decay[study.CONSTANT]["SGD+momentum"]) == ids(baselines["wideresnet"]["SGD+momentum"])[:2]
    # the schedule's fixed comparisons are grid cells
    schedule = study.schedule_comparison(settings)
    assert ids(schedule["Padam p=1/2, lr 0.001"]) == ids(grid[0.001]["Padam p=1/2"])[:2]
    assert ids(schedule["Padam p=1/16, lr 0.1"]) == ids(grid[0.1]["Padam p=1/16"])[:2]
    planned = study.planned_runs(settings)
    assert len(planned) == len({config.run_id for config in planned})
    # 36 baselines, 33 new grid cells, 9 new search runs at 3 seeds; 24 weight-decay variants, 8 decays,
    # 2 schedules and 12 new sensitivity runs at 2 seeds
    assert len(planned) == 36 + 33 + 9 + 24 + 8 + 2 + 12


def test_runs_carry_the_reports_settings():
    settings = study.Settings(num_epochs=8)
    baselines = study.baselines(settings)
    for architecture, groups in baselines.items():
        assert list(groups) == LABELS
        for configs in groups.values():
            assert [config.seed for config in configs] == [0, 1, 2]
            assert all(config.model == architecture and config.hyperparameters["weight_decay"] == 0.005 for config in configs)
    padam = baselines["vgg16"]["Padam"][0].hyperparameters
    assert (padam["lr"], padam["p"], padam["betas"]) == (0.1, 0.125, [0.9, 0.999])
    assert baselines["vgg16"]["SGD+momentum"][0].hyperparameters["momentum"] == 0.9
    assert baselines["vgg16"]["Adam"][0].hyperparameters["lr"] == 0.001
    official = study.official_weight_decay(settings)
    assert {config.hyperparameters["weight_decay"] for config in common.all_configs(official["resnet18"])} == {0.0005}
    decayed = study.decay_comparison(settings)["wideresnet"][study.STEP_DECAY]["Adam"][0]
    # ×0.1 after epochs 4 and 6 of 8: the original's 100 and 150 of 200
    assert decayed.scheduler == "multistep" and decayed.scheduler_options == {"milestones": [4, 6], "gamma": 0.1}
    scheduled = study.schedule_comparison(settings)[study.SCHEDULE_LABEL][0].hyperparameters
    assert (scheduled["p"], scheduled["p_final"], scheduled["lr"], scheduled["lr_final"]) == (0.5, 0.0625, 0.001, 0.1)
    assert [config.hyperparameters["p"] for config in common.all_configs(study.p_search(settings))][::3] == list(P_GRID)


@pytest.mark.parametrize("parameters, message", [
    ({"p_grid": [0.125, 0.7]}, r"invalid p_grid \[0.125, 0.7\]: every entry must be a number in \(0, 1/2\].*got 0.7"),
    ({"p_grid": [0, 0.125]}, r"invalid p_grid \[0, 0.125\].*\(0, 1/2\].*got 0"),
    ({"p_grid": []}, r"invalid p_grid \[\]: give a non-empty list"),
    ({"lr_grid": []}, r"invalid lr_grid \[\]: give a non-empty list"),
    ({"architectures": {**study.Settings().architectures, "resnet50": {}}}, r"unknown architecture\(s\) 'resnet50'; allowed: vgg16, resnet18, wideresnet"),
    ({"architectures": {"vgg16": {}, "resnet18": {}}}, r"'wideresnet' missing"),
    ({"decay_architectures": ["alexnet"]}, r"invalid decay_architectures \['alexnet'\].*vgg16"),
    ({"schedule_p_start": 0.75}, r"invalid schedule_p_start 0.75: schedule_p_start must lie in \(0, 1/2\]"),
    ({"decay_milestones": [0.4, 0.5]}, r"invalid decay_milestones \[0.4, 0.5\]: at 6 epochs they fall after epochs \[3, 3\]"),
    ({"decay_milestones": [0.5, 0.5]}, r"invalid decay_milestones \[0.5, 0.5\]: the entries must differ"),
    ({"num_epochs": 2}, r"invalid decay_milestones \[0.5, 0.75\]: at 2 epochs"),
    ({"hyperparameters": {"padam": {}, "sgd": {}, "adam": {}}}, r"invalid hyperparameters \['adam', 'padam', 'sgd'\]: give the settings of exactly"),
    ({"hyperparameters": {"padam": {"p": 0.9}, "sgd": {}, "adam": {}, "amsgrad": {}}}, r"invalid p 0.9: p must lie in \(0, 1/2\]"),
    ({"architectures": {"vgg16": {"width": -1}, "resnet18": {}, "wideresnet": {}}}, r"invalid width -1"),
])
def test_bad_parameters_stop_before_anything_trains(parameters, message):
    with pytest.raises(ValueError, match=message):
        STUDIES["study2_padam"].validate(parameters, check_data=False)


def test_p_is_written_as_the_report_writes_it():
    assert [study.p_text(p) for p in (0.0625, 0.125, 0.25, 0.5, 0.3)] == ["1/16", "1/8", "1/4", "1/2", "0.3"]


def test_grid_tables_give_means_ranges_and_diverged_cells():
    grid = _grid_runs(lambda p, lr: math.nan if (p, lr) == (0.5, 0.1) else _report_grid(p, lr))
    values, notes = study.grid_tables(grid, "final_accuracy", scale=100.0)
    # p grows upwards: the first row is the largest p
    assert list(values.index) == ["1/2", "1/4", "1/8", "1/16"] and list(values.columns) == ["0.001", "0.01", "0.1"]
    cell = grid[(grid["p"] == 0.0625) & (grid["lr"] == 0.01)]["final_accuracy"] * 100
    assert values.loc["1/16", "0.01"] == pytest.approx(cell.mean())
    assert notes.loc["1/16", "0.01"] == f"{cell.mean():.1f}\n{cell.min():.1f}–{cell.max():.1f}"
    assert math.isnan(values.loc["1/2", "0.1"]) and notes.loc["1/2", "0.1"] == "diverged"


def test_best_cell_and_best_lr_per_p_follow_the_means():
    grid = _grid_runs(_report_grid)
    grid.loc[(grid["p"] == 0.25) & (grid["lr"] == 0.01), "final_accuracy"] += 0.05
    assert study.best_cell(grid) == pytest.approx({"p": 0.25, "lr": 0.01, "final_accuracy": 0.95 + np.mean([_noise(s, 10 * 0.25 + 0.01) for s in SEEDS])})
    assert list(study.best_lr_per_p(grid)["lr"]) == [0.1, 0.1, 0.01, 0.001]


def test_early_training_loss_is_the_geometric_mean_over_the_first_30_percent():
    frame = pd.DataFrame({"run_id": ["a"] * 10, "epoch": range(1, 11), "train_loss": [4.0, 1.0, 0.5] + [0.1] * 7})
    runs = study.add_early_train_loss(pd.DataFrame({"run_id": ["a"]}), frame, num_epochs=10)
    assert study.early_epochs(10) == 3 and study.early_epochs(100) == 30 and study.early_epochs(2) == 1
    assert runs.loc[0, "early_train_loss"] == pytest.approx((4.0 * 1.0 * 0.5) ** (1 / 3))


def test_fractions_table_puts_the_reported_numbers_beside_this_builds():
    frame = pd.DataFrame([{"label": label, "run_id": f"{label}{seed}", "seed": seed, "num_epochs": 6, "epoch": epoch,
                           "test_accuracy": 0.1 * epoch + 0.01 * seed}
                          for label in LABELS for seed in (0, 1) for epoch in range(1, 7)])
    values = common.values_at_fractions(frame, study.FRACTIONS)
    table = study.fractions_table(values, study.Settings())
    sgd = table[table["optimizer"] == "SGD+momentum"]
    assert list(sgd["reported (CIFAR-10): test accuracy (%)"]) == ["81.39", "82.13", "78.46", "81.78"]
    assert list(sgd["this build (digits): epoch"]) == ["2 of 6", "3 of 6", "5 of 6", "6 of 6"]
    # epoch 2: accuracies 20% and 21% over the two seeds
    assert sgd["this build (digits): test accuracy (%), mean (range)"].iloc[0] == "20.5 (20.0–21.0)"


def test_sensitivity_table_marks_ranges_that_reach_the_grids_end():
    rows = [{"label": "Adam", "lr": lr, "seed": seed, "status": "finished", "final_accuracy": accuracy}
            for lr, accuracy in ((0.001, 0.90), (0.01, 0.895), (0.1, 0.5)) for seed in (0, 1)]
    shown = study.sensitivity_table(common.lr_sensitivity(pd.DataFrame(rows), tolerance=0.01))
    assert shown.iloc[0]["learning rates within 1 pp"] == "0.001 to 0.01"
    assert shown.iloc[0]["width (decades)"] == "1.0" and shown.iloc[0]["range reaches the grid's end"] == "lower"


def test_variant_styles_are_ordered_by_p_and_keep_padams_marker():
    settings = study.Settings()
    study.register_styles(settings)
    looks = [styles.style(study.p_label(p)) for p in P_GRID]
    assert len({look.color for look in looks}) == 4 and {look.marker for look in looks} == {styles.style("padam").marker}
    # a fixed-p comparison of the schedule looks like its p
    assert styles.style("Padam p=1/2, lr 0.001").color == styles.style("Padam p=1/2").color
    assert styles.style(study.SCHEDULE_LABEL).color not in {look.color for look in looks}


def test_sensitivity_finding_names_every_optimizer_sharing_the_widest_range():
    table = pd.DataFrame({"decades": [1.0, 0.0, 1.0]}, index=["Padam", "Adam", "AMSGrad"])
    assert study.sensitivity_finding(table) == "is widest for Padam and AMSGrad: 1.0 decades within 1 pp of the best"
    assert study.sensitivity_finding(table * 0).startswith("is narrow for every optimizer")
    assert "diverged" in study.sensitivity_finding(table * math.nan)


def test_largest_curve_gap_is_the_widest_distance_between_two_mean_curves():
    frame = pd.DataFrame([{"label": label, "architecture": architecture, "seed": seed, "epoch": epoch,
                           "test_error": base + 0.01 * seed + (0.05 if (label, architecture, epoch) == ("Adam", "vgg16", 2) else 0)}
                          for label, base in (("Adam", 0.3), ("AMSGrad", 0.31)) for architecture in ("vgg16", "resnet18")
                          for seed in (0, 1) for epoch in (1, 2, 3)])
    assert study.largest_curve_gap(frame, "Adam", "AMSGrad") == pytest.approx(0.04)


def test_the_paper_profile_holds_report_001s_settings():
    from pathlib import Path

    from optbench import book

    parameters = book.load_profile("paper", Path(__file__).resolve().parents[1], check_data=False)["study2_padam"]
    settings = STUDIES["study2_padam"].settings_from(parameters)
    assert (settings.dataset, settings.num_epochs, settings.batch_size, settings.max_train_examples) == ("cifar10", 100, 128, None)
    assert all(options.get("width", 1.0) == 1.0 for options in settings.architectures.values())
    assert settings.hyperparameters == {
        "padam": {"lr": 0.1, "p": 0.125, "weight_decay": 0.005}, "sgd": {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.005},
        "adam": {"lr": 0.001, "weight_decay": 0.005}, "amsgrad": {"lr": 0.001, "weight_decay": 0.005}}
    assert settings.official_weight_decay == 0.0005 and settings.search_lr == 0.1
    assert {0.0625, 0.125, 0.25} <= set(settings.p_grid) and set(settings.lr_grid) == {0.001, 0.01, 0.1}
    # the original paper's decay, ×0.1 at epochs 100 and 150 of 200, at the same fractions of 100 epochs
    assert settings.milestone_epochs() == [50, 75] and settings.decay_factor == 0.1


def test_margins_compare_with_the_best_competitor():
    decay = pd.DataFrame([{"label": label, "architecture": architecture, "seed": seed, "status": "finished", "final_accuracy": accuracy}
                          for architecture, table in (("wideresnet", {"SGD+momentum": 0.95, "Adam": 0.90, "AMSGrad": 0.92}),
                                                      ("vgg16", {"SGD+momentum": 0.80, "Adam": 0.85, "AMSGrad": 0.70}))
                          for label, accuracy in table.items() for seed in (0, 1)])
    # on VGG-16 SGD is 5 points below Adam: the smallest margin of the two networks
    assert study.sgd_margin(decay) == pytest.approx(-0.05)
    schedule = pd.DataFrame([{"label": label, "seed": 0, "status": status, "final_accuracy": accuracy}
                             for label, accuracy, status in ((study.SCHEDULE_LABEL, 0.9, "finished"), ("Padam p=1/8, lr 0.1", 0.93, "finished"),
                                                             ("Padam p=1/2, lr 0.1", math.nan, "diverged"))])
    assert study.schedule_margin(schedule) == pytest.approx(-0.03)
