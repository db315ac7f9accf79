"""Study 4's logic: the runs it plans, cross-validation and selection, its tables, figures and claim rules."""

import math

import pandas as pd
import pytest

from optbench.studies import common
from optbench.studies import variance_reduction as study
from optbench.verdicts import CONTRADICTED, INCONCLUSIVE, NOT_TESTABLE, SUPPORTED

SEEDS = (0, 1, 2)
label = study.label


def _runs(losses: dict[str, float], seeds=SEEDS, spread=0.02, noise=None) -> pd.DataFrame:
    """Per-run summaries with a shared seed effect (seeds share initialization and data order)."""
    rows = []
    for name, loss in losses.items():
        for position, seed in enumerate(seeds):
            wobble = 1 + spread * (seed - 1) + (noise[name][position] if noise and name in noise else 0.0)
            rows.append({"label": name, "run_id": f"{name}-{seed}", "seed": seed, "status": "finished", "diverged_epoch": None,
                         "final_loss": loss * wobble, "final_accuracy": 0.9, "collapsed": False})
    return pd.DataFrame(rows)


def _early(values: dict[str, float]) -> pd.DataFrame:
    runs = _runs(values)
    return runs.rename(columns={"final_loss": "value"})[["label", "run_id", "seed", "value"]]


def _selection(diverged_without_bn: bool, settings: study.Settings) -> dict:
    selection = {}
    for network, norm in study.deep_settings():
        highest = max(settings.deep_grids(network)["sgd"]["lr"])
        rows = [{"label": label("sgd"), "setting": study.setting_text({"lr": highest}), "seed": seed,
                 "status": "diverged" if (norm == "none" and diverged_without_bn) else "finished"} for seed in settings.selection_seeds]
        selection[(network, norm)] = pd.DataFrame(rows)
    return selection


def _report_like(settings=None):
    settings = settings or study.Settings(selection_seeds=[0, 1])
    lenet = _runs({label("sgd"): 0.30, label("adam"): 0.28, label("adagrad"): 0.32, label("svrg"): 0.15, label("storm"): 0.17})
    early = _early({label("sgd"): 0.8, label("adam"): 0.7, label("adagrad"): 0.9, label("svrg"): 1.6, label("storm"): 1.4})
    deep = {}
    for network in study.DEEP_NETWORKS:
        deep[(network, "batch")] = _runs({label("adam"): 0.42, label("sgd"): 0.40, label("svrg"): 0.55, label("storm"): 0.50})
        deep[(network, "none")] = _runs({label("adam"): 0.75, label("sgd"): 0.80, label("svrg"): 0.60, label("storm"): 0.9})
    metainit = _runs({label("svrg"): 0.60, study.METAINIT_LABELS["svrg"]: 0.603, label("sgd"): 0.8, study.METAINIT_LABELS["sgd"]: 0.7})
    return lenet, early, deep, _selection(True, settings), metainit, settings


def _verdicts(lenet, early, deep, selection, metainit, settings):
    claims = study.check_claims(lenet, early, deep, selection, metainit, settings)
    return {claim.id: claim.decision.verdict for claim in claims}


def test_numbers_shaped_like_the_report_support_every_claim():
    result = _verdicts(*_report_like())
    assert list(result) == list(study.STUDY.claims)
    assert all(verdict == SUPPORTED for verdict in result.values()), result


def test_contrary_numbers_contradict():
    lenet, early, deep, selection, metainit, settings = _report_like()
    lenet.loc[lenet["label"] == label("svrg"), "final_loss"] *= 4  # SVRG ends far above SGD
    early.loc[early["label"] == label("svrg"), "value"] /= 10  # SVRG leads early
    deep[("resnet18", "batch")].loc[lambda frame: frame["label"] == label("svrg"), "final_loss"] = [0.20, 0.21, 0.205]
    deep[("resnet101", "none")].loc[lambda frame: frame["label"] == label("svrg"), "final_loss"] = [1.5, 1.52, 1.55]
    deep[("resnet18", "none")].loc[lambda frame: frame["label"] == label("adam"), "final_loss"] = [0.1, 0.1, 0.1]
    metainit.loc[metainit["label"] == study.METAINIT_LABELS["svrg"], "final_loss"] *= 0.5
    result = _verdicts(lenet, early, deep, _selection(False, settings), metainit, settings)
    assert result == {"C21": CONTRADICTED, "C22": CONTRADICTED, "C23": CONTRADICTED, "C24": CONTRADICTED,
                      "C25": CONTRADICTED, "C26": CONTRADICTED, "C27": CONTRADICTED}


def test_differences_inside_the_noise_are_inconclusive():
    lenet, early, deep, selection, metainit, settings = _report_like()
    # C21: SVRG 2% below SGD, seeds scattered by a third
    lenet = _runs({label("sgd"): 0.30, label("adam"): 0.30, label("adagrad"): 0.30, label("svrg"): 0.294, label("storm"): 0.294},
                  noise={label("svrg"): [0.3, -0.25, 0.1], label("storm"): [-0.2, 0.3, -0.1]})
    # C27: MetaInit 4% apart from no MetaInit, but seeds scattered by a quarter
    metainit = _runs({label("svrg"): 0.60, study.METAINIT_LABELS["svrg"]: 0.625}, noise={study.METAINIT_LABELS["svrg"]: [0.25, -0.2, 0.05]})
    metainit = pd.concat([metainit, _runs({label("sgd"): 0.8, study.METAINIT_LABELS["sgd"]: 0.8})])
    # C26: one of two selection runs diverged
    selection[("resnet18", "none")].loc[0, "status"] = "finished"
    result = _verdicts(lenet, early, deep, selection, metainit, settings)
    assert result["C21"] == INCONCLUSIVE and result["C27"] == INCONCLUSIVE and result["C26"] == INCONCLUSIVE, result


def test_one_seed_decides_nothing_and_metainit_with_bn_is_not_the_claim():
    lenet, early, deep, selection, metainit, settings = _report_like()
    first = lambda frame: frame[frame["seed"] == 0]
    result = _verdicts(first(lenet), first(early), {key: first(value) for key, value in deep.items()}, selection, first(metainit), settings)
    assert {result[claim] for claim in ("C21", "C22", "C23", "C24", "C25", "C27")} == {INCONCLUSIVE}
    with_bn = study.Settings(selection_seeds=[0, 1], metainit_norm="batch")
    assert _verdicts(lenet, early, deep, selection, metainit, with_bn)["C27"] == NOT_TESTABLE


def test_a_network_no_method_trained_beyond_chance_leaves_the_comparisons():
    lenet, early, deep, selection, metainit, settings = _report_like()
    for key in (("resnet101", "batch"), ("resnet101", "none")):
        deep[key] = deep[key].assign(final_accuracy=0.15)  # chance is 10% on the digits: 15% is not 10 pp above it
    claims = {claim.id: claim.decision for claim in study.check_claims(lenet, early, deep, selection, metainit, settings)}
    assert claims["C23"].verdict == claims["C24"].verdict == claims["C25"].verdict == SUPPORTED
    assert "ResNet-101" not in claims["C23"].evidence + claims["C24"].evidence + claims["C25"].evidence
    for key in (("resnet18", "batch"), ("resnet18", "none")):
        deep[key] = deep[key].assign(final_accuracy=0.1)
    metainit = metainit.assign(final_accuracy=0.12)
    claims = {claim.id: claim.decision for claim in study.check_claims(lenet, early, deep, selection, metainit, settings)}
    assert {claims[claim].verdict for claim in ("C23", "C24", "C25", "C27")} == {NOT_TESTABLE}
    assert "chance + 10 pp" in claims["C23"].evidence and claims["C21"].verdict == SUPPORTED
    # learning on one side of the BN divide is enough for C25 (it is about that divide)
    deep[("resnet18", "batch")] = deep[("resnet18", "batch")].assign(final_accuracy=0.9)
    claims = {claim.id: claim.decision for claim in study.check_claims(lenet, early, deep, selection, metainit, settings)}
    assert claims["C25"].verdict == SUPPORTED and claims["C24"].verdict == NOT_TESTABLE
    assert study.Settings(resnet101_dataset="cifar100").chance_accuracy("resnet101") == 0.01


def test_a_diverged_run_leaves_its_comparison():
    lenet, early, deep, selection, metainit, settings = _report_like()
    lenet.loc[(lenet["label"] == label("sgd")) & (lenet["seed"] == 2), ["status", "final_loss"]] = ["diverged", math.nan]
    claims = {claim.id: claim for claim in study.check_claims(lenet, early, deep, selection, metainit, settings)}
    # SGD is left with two seeds: its comparisons fall back to Welch's test, the others stay paired
    evidence = claims["C21"].decision.evidence
    assert claims["C21"].decision.verdict == SUPPORTED and "SGD / SVRG: ×1.98 (Welch, n = 2 and 3" in evidence
    assert "Adam / SVRG: ×1.87 (paired, n = 3" in evidence


def test_the_cross_validation_plans_every_fold_of_every_grid_point():
    settings = study.Settings(num_folds=3, selection_seeds=[0, 1])
    grid = study.shallow_grid(settings)
    points = sum(len(study.grid_points(settings.shallow_grids[name])) for name in study.LENET_OPTIMIZERS)
    configs = [config for groups in grid.values() for config in common.all_configs(groups)]
    assert len(configs) == points * 3 * 2 and len({config.run_id for config in configs}) == len(configs)
    assert {(config.seed, config.fold) for config in configs} == {(seed, fold) for seed in (0, 1) for fold in range(3)}
    assert all(config.num_folds == 3 and config.model == "lenet5" for config in configs)
    storm = grid["c 100, k 0.1"][label("storm")][0].hyperparameters
    assert (storm["c"], storm["k"], storm["w"]) == (100, 0.1, 0.1)
    assert grid["lr 0.1"][label("sgd")][0].hyperparameters["momentum"] == 0.0  # report 003's plain SGD
    deep = study.deep_grid(settings, "resnet101", "none")
    assert all(config.validation_fraction == 0.05 and config.model_options["norm"] == "none" for groups in deep.values()
               for config in common.all_configs(groups))
    svrg = deep["lr 0.005"][label("svrg")][0]
    assert svrg.num_epochs == settings.svrg_num_epochs and deep["lr 0.05"][label("sgd")][0].num_epochs == settings.deep_num_epochs
    assert len(study.planned_runs(settings)) == len(configs) + sum(
        len(common.all_configs(groups)) for key in study.deep_settings() for groups in study.deep_grid(settings, *key).values())


def test_selection_takes_the_lowest_mean_held_out_loss_never_a_diverged_point():
    rows = []
    for setting, losses, status in (("lr 0.001", [0.5, 0.5, 0.5, 0.5], "finished"), ("lr 0.01", [0.2, 0.9, 0.9, 0.9], "finished"),
                                    ("lr 0.1", [0.1, 0.1, 0.1, math.nan], "diverged")):
        for fold, loss in enumerate(losses):
            rows.append({"label": "Adam", "setting": setting, "seed": 0, "fold": fold, "final_loss": loss, "final_accuracy": 0.8,
                         "status": status if math.isnan(loss) else "finished"})
    chosen = study.choose(pd.DataFrame(rows))
    # 0.01 wins on one fold, 0.001 on the mean over folds; 0.1 had a diverged fold
    assert chosen.loc["Adam", "setting"] == "lr 0.001" and chosen.loc["Adam", "seeds"] == 4


def test_chosen_hyperparameters_and_the_fallback_when_everything_diverged():
    settings = study.Settings()
    grid = study.deep_grid(settings, "resnet18", "batch")
    chosen = pd.DataFrame({"setting": ["lr 0.1", math.nan]}, index=[label("sgd"), label("adam")])
    chosen_hyperparameters = study.chosen_hyperparameters(grid, chosen)
    assert chosen_hyperparameters[label("sgd")]["lr"] == 0.1
    assert chosen_hyperparameters[label("adam")]["lr"] == settings.resnet18_grids["adam"]["lr"][0]
    final = study.deep_final(settings, "resnet18", "batch", chosen_hyperparameters)
    assert [config.seed for config in final[label("sgd")]] == settings.seeds
    metainit = study.metainit_groups(settings, chosen_hyperparameters | {label("svrg"): {"lr": 0.01}})
    plain, tuned = metainit[label("svrg")][0], metainit[study.METAINIT_LABELS["svrg"]][0]
    assert plain.init == "default" and plain.metainit_steps is None
    assert tuned.init == "metainit" and tuned.metainit_steps == settings.metainit_steps


def test_the_early_budget_is_the_costliest_first_epoch_and_values_are_interpolated():
    frame = pd.DataFrame([
        {"label": "SGD", "run_id": "a", "seed": 0, "epoch": epoch, "grad_evals": 100 * epoch, "test_loss": loss}
        for epoch, loss in ((1, 2.0), (2, 1.5), (3, 1.0), (4, 0.5))
    ] + [
        {"label": "SVRG", "run_id": "b", "seed": 0, "epoch": epoch, "grad_evals": 300 * epoch, "test_loss": loss}
        for epoch, loss in ((1, 1.8), (2, 0.9))
    ])
    budget = study.early_budget(frame)
    assert budget == 300
    values = common.value_at(frame, "test_loss", 250).set_index("label")["value"]
    assert values["SGD"] == pytest.approx(1.25) and math.isnan(values["SVRG"])  # SVRG's first point is at 300
    assert common.value_at(frame, "test_loss", budget).set_index("label")["value"].to_dict() == {"SGD": 1.0, "SVRG": 1.8}


def test_selection_and_comparison_tables():
    runs = pd.DataFrame([
        {"label": label("sgd"), "setting": "lr 0.1", "seed": 0, "status": "diverged", "diverged_epoch": 2, "final_loss": math.nan},
        {"label": label("sgd"), "setting": "lr 0.01", "seed": 0, "status": "finished", "diverged_epoch": None, "final_loss": 0.4},
        {"label": label("sgd"), "setting": "lr 0.01", "seed": 1, "status": "finished", "diverged_epoch": None, "final_loss": 0.6},
    ])
    chosen = pd.DataFrame({"setting": ["lr 0.01"]}, index=[label("sgd")])
    table = study.selection_table(runs, chosen, [label("sgd")], "validation")
    assert table["diverged"].tolist() == ["1 of 1 (epoch 2)", "0 of 2"]
    assert table["mean final validation loss"].tolist() == ["–", "0.500"] and table["chosen"].tolist() == ["", "✓"]
    nothing = study.selection_table(runs[runs["setting"] == "lr 0.1"], chosen.assign(setting=math.nan), [label("sgd")], "validation")
    assert nothing["chosen"].tolist() == ["none finished: this one is run"]
    settings = study.Settings()
    hyperparameters = {label(name): {"lr": 0.5, "c": 10, "k": 1} for name in study.LENET_OPTIMIZERS}
    shown = study.selected_vs_reported({("lenet5", None): hyperparameters, ("resnet18", "none"): hyperparameters}, settings)
    storm = shown[(shown["benchmark"] == "LeNet") & (shown["optimizer"] == "STORM")].iloc[0]
    assert storm["reported (report 003, MNIST or CIFAR)"] == "c 100, k 0.1" and storm["this build"] == "c 10, k 1"
    assert storm["chosen by"] == "4-fold cross-validation"
    deep_storm = shown[(shown["benchmark"] == "ResNet-18 without BN") & (shown["optimizer"] == "STORM")].iloc[0]
    assert deep_storm["reported (report 003, MNIST or CIFAR)"] == "not tuned"
    adam = shown[(shown["benchmark"] == "ResNet-18 without BN") & (shown["optimizer"] == "Adam")].iloc[0]
    assert adam["reported (report 003, MNIST or CIFAR)"] == "lr 1e-05" and adam["chosen by"] == "a 5% validation split"


def test_variance_summary_is_a_geometric_mean_of_the_ratios():
    frame = pd.DataFrame({"epoch": [1, 1, 2], "step": [4, 9, 9], "epochs_done": [0.4, 0.9, 1.9],
                          "variance_sgd": [1.0, 1.0, 1.0], "variance_svrg": [0.25, 1.0, 4.0], "ratio": [0.25, 1.0, 4.0],
                          "drift": [0.01, 0.02, 0.05]})
    summary = study.variance_summary({"LeNet": frame})
    assert summary.loc["LeNet", "ratio"] == pytest.approx(1.0)
    assert summary.loc["LeNet", "first"] == 0.25 and summary.loc["LeNet", "last"] == 4.0
    assert summary.loc["LeNet", "share_below_one"] == pytest.approx(1 / 3) and summary.loc["LeNet", "drift"] == 0.02
    assert summary.loc["LeNet", "ratio_low"] <= 1.0 <= summary.loc["LeNet", "ratio_high"]
    shown = study.variance_display(summary).iloc[0]
    assert shown["first → last"] == "0.250 → 4.000" and shown["SVRG's variance lower"] == "1 of 3" and shown["median drift (%)"] == "2.00"


def test_figures_mark_diverged_runs_with_their_epoch():
    import matplotlib.pyplot as plt

    from optbench import plotting

    rows = []
    for name, status, losses in ((label("sgd"), "diverged", [2.0, 1.5, math.nan]), (label("svrg"), "finished", [2.0, 1.0, 0.8])):
        for epoch, loss in enumerate(losses, start=1):
            rows.append({"label": name, "run_id": name, "seed": 0, "status": status, "diverged_epoch": 3 if status == "diverged" else None,
                         "epoch": epoch, "grad_evals": 100 * epoch, "test_loss": loss})
    frame = pd.DataFrame(rows)
    fig, ax = plt.subplots()
    plotting.metric_curves(frame, "test_loss", x="grad_evals", ax=ax, log_y=True)
    notes = plotting.mark_diverged(ax, frame, "test_loss", x="grad_evals")
    assert notes == ["SGD seed 0 diverged in epoch 3"]
    crosses = [line for line in ax.get_lines() if line.get_marker() == "X"]
    assert len(crosses) == 1 and crosses[0].get_xydata().tolist() == [[200.0, 1.5]]
    assert any("diverged, epoch 3" in text.get_text() for text in ax.texts)
    plt.close(fig)
    deep = study.deep_figure({key: frame for key in study.deep_settings()})
    assert len([ax for ax in deep.axes if ax.get_title()]) == 4
    plt.close(deep)


@pytest.mark.parametrize("parameters, message", [
    ({"num_folds": 1}, r"invalid num_folds 1: it must be an integer >= 2"),
    ({"shallow_grids": {**study.Settings().shallow_grids, "sgd": {"lr": []}}}, r"invalid shallow_grids\['sgd'\]\['lr'\] \[\]: an empty grid"),
    ({"resnet18_grids": {**study.Settings().resnet18_grids, "storm": {"c": [10]}}}, r"invalid resnet18_grids\['storm'\].*each of its axes c, k"),
    ({"resnet101_grids": {"adam": {"lr": [0.1]}}}, r"invalid resnet101_grids: missing 'sgd', 'svrg', 'storm'"),
    ({"metainit_norm": "layer"}, r"invalid metainit_norm 'layer': allowed batch, none"),
    ({"variance_networks": ["vgg16"]}, r"invalid variance_networks \['vgg16'\]"),
    ({"fixed_hyperparameters": {"svrg": {"lr": 0.1}}}, r"lr is searched by the grid"),
    ({"seeds": [0, 0]}, r"invalid seeds \[0, 0\]: the seeds must differ"),
])
def test_bad_parameters_are_named_before_anything_trains(parameters, message):
    with pytest.raises(ValueError, match=message):
        study.STUDY.validate(parameters, check_data=False)
