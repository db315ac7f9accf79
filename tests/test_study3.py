"""Study 3's logic: the runs it plans at report 002's settings, the scaling of epochs and milestones, the mixing
weights, its tables and the claim rules C16–C20 on hand-made numbers, and its bad parameters."""

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from optbench import book
from optbench.studies import STUDIES, common
from optbench.studies import hybrid_second_order as study
from optbench.verdicts import CONTRADICTED, INCONCLUSIVE, NOT_TESTABLE, SUPPORTED
from study_helpers import interleaved_timing

ROOT = Path(__file__).resolve().parents[1]
LABEL = {key: variant.label for key, variant in study.VARIANTS.items()}
SEEDS = (0, 1, 2)


# ---- hand-made numbers shaped like report 002 -------------------------------------------------------------

def _runs(best):
    """Per-run summaries; a seed effect shared by every optimizer (as when seeds share initialization and data
    order) plus a little noise of each run's own."""
    rng = np.random.default_rng(1)
    rows = []
    for key, accuracy in best.items():
        for seed in SEEDS:
            value = accuracy + 0.01 * (seed - 1) + 0.0005 * rng.standard_normal()
            rows.append({"label": LABEL[key], "run_id": f"{key}-{seed}", "seed": seed, "status": "finished", "collapsed": False,
                         "best_accuracy": value, "final_accuracy": value - 0.005})
    return pd.DataFrame(rows)


def _adahessian_frame(test_losses):
    """AdaHessian's per-epoch rows: ``test_losses`` per seed, training loss falling every epoch."""
    rows = []
    for seed, losses in zip(SEEDS, test_losses):
        for epoch, loss in enumerate(losses, start=1):
            rows.append({"label": LABEL["adahessian"], "run_id": f"adahessian-{seed}", "seed": seed, "epoch": epoch,
                         "test_loss": loss, "train_loss": 1.0 / epoch, "test_accuracy": 0.8})
    return pd.DataFrame(rows)


def _timing(seconds):
    return interleaved_timing({LABEL[key]: value for key, value in seconds.items()})


def _ablation_frame(jump, change_without=0.01, decay_epoch=4, epochs=6):
    """PADAM-SGD and Dynamic PADAM-SGD with MultiStepLR (lr ÷10 from ``decay_epoch``) and without a scheduler."""
    rows = []
    for key in ("padam_sgd", "dynamic_padam_sgd"):
        for seed in SEEDS:
            for scheduler in ("none", "multistep"):
                accuracy = 0.5
                for epoch in range(1, epochs + 1):
                    decayed = scheduler == "multistep" and epoch >= decay_epoch
                    if epoch > 1:
                        accuracy += (jump if scheduler == "multistep" else change_without) if epoch == decay_epoch else 0.01
                        accuracy += 0.002 * seed * (epoch == decay_epoch)
                    rows.append({"label": LABEL[key], "seed": seed, "epoch": epoch, "scheduler": scheduler,
                                 "lr": 0.001 if decayed else 0.01, "test_accuracy": accuracy})
    return pd.DataFrame(rows)


def _report_like():
    best = {"sgd": 0.85, "adam": 0.84, "atmo": 0.83, "dynamic_atmo": 0.87, "padam_sgd": 0.90, "dynamic_padam_sgd": 0.895,
            "adahessian": 0.84, "adasgd": 0.88}
    seconds = {key: 1.0 for key in study.FIRST_ORDER}
    seconds.update({"adahessian": 4.1, "adasgd": 3.9})
    frame = _adahessian_frame([[1.0, 0.5, 0.4, 0.6, 0.8], [1.1, 0.55, 0.42, 0.6, 0.85], [1.0, 0.52, 0.41, 0.62, 0.9]])
    return _runs(best), frame, _timing(seconds), _ablation_frame(jump=0.15)


def _verdicts(runs, frame, timing, ablation, settings=None):
    claims = study.check_claims(runs, frame, timing, ablation, settings or study.Settings())
    return {claim.id: claim.decision for claim in claims}


def test_numbers_shaped_like_the_report_support_every_claim():
    result = _verdicts(*_report_like())
    assert list(result) == list(study.STUDY.claims)
    assert {claim: decision.verdict for claim, decision in result.items()} == {claim: SUPPORTED for claim in study.STUDY.claims}
    assert result["C18"].evidence.startswith("test loss: final/minimum ×2.07, ×1.88 from the threshold")


def test_contrary_numbers_contradict_each_claim():
    runs, frame, timing, ablation = _report_like()
    # C16: SGD beats both PADAM-SGDs; C17: constant ATMO beats SGD and Adam
    runs.loc[runs["label"] == LABEL["sgd"], "best_accuracy"] += 0.10
    runs.loc[runs["label"] == LABEL["atmo"], "best_accuracy"] += 0.20
    # C18: AdaHessian's test loss ends within 3% of its minimum
    frame = _adahessian_frame([[1.0, 0.8, 0.6, 0.4, 0.41], [1.1, 0.8, 0.6, 0.45, 0.46], [1.0, 0.7, 0.6, 0.42, 0.425]])
    # C19: second order only 1.5× the first
    timing = _timing({**{key: 1.0 for key in study.FIRST_ORDER}, "adahessian": 1.5, "adasgd": 1.5})
    # C20: the decay lowers the accuracy
    ablation = _ablation_frame(jump=-0.05)
    result = {claim: decision.verdict for claim, decision in _verdicts(runs, frame, timing, ablation).items()}
    assert result == {claim: CONTRADICTED for claim in study.STUDY.claims}, result


def test_differences_inside_the_noise_are_inconclusive():
    runs, frame, timing, ablation = _report_like()
    # C16: the PADAM-SGDs 0.3 points above AdaSGD, each seed scattered by several points
    for key, scatter in (("padam_sgd", [0.04, -0.05, 0.02]), ("dynamic_padam_sgd", [-0.03, 0.05, -0.01])):
        rows = runs["label"] == LABEL[key]
        runs.loc[rows, "best_accuracy"] = runs.loc[runs["label"] == LABEL["adasgd"], "best_accuracy"].to_numpy() + 0.003 + np.array(scatter)
    # C18: rises of ×1.02, ×1.4 and ×1.05 around the ×1.10 threshold
    frame = _adahessian_frame([[1.0, 0.5, 0.51], [1.0, 0.5, 0.7], [1.0, 0.5, 0.525]])
    # C20: jumps of 2, −1 and 4 points against 1 point without the decay
    ablation = _ablation_frame(jump=0.01)
    for seed, extra in zip(SEEDS, (0.01, -0.02, 0.03)):
        rows = (ablation["scheduler"] == "multistep") & (ablation["seed"] == seed) & (ablation["epoch"] >= 4)
        ablation.loc[rows, "test_accuracy"] += extra - 0.002 * seed
    result = {claim: decision.verdict for claim, decision in _verdicts(runs, frame, timing, ablation).items()}
    assert result["C16"] == result["C18"] == result["C20"] == INCONCLUSIVE, result
    # C19: second-order timings that scatter from ×2 to ×6 between rounds
    noisy = timing.copy()
    for key in study.SECOND_ORDER:
        rows = noisy["label"] == LABEL[key]
        noisy.loc[rows, "seconds_per_epoch"] = noisy.loc[noisy["label"] == LABEL["sgd"], "seconds_per_epoch"].to_numpy() * np.array(
            [2.0, 6.0, 2.5, 6.5, 2.2, 5.8])
    assert _verdicts(runs, frame, noisy, ablation)["C19"].verdict == INCONCLUSIVE


def test_c17_needs_both_halves():
    runs, frame, timing, ablation = _report_like()
    # constant ATMO now between SGD and Adam: it does not improve on both, and that is shown
    runs.loc[runs["label"] == LABEL["atmo"], "best_accuracy"] += 0.015
    assert _verdicts(runs, frame, timing, ablation)["C17"].verdict == SUPPORTED
    # Dynamic ATMO below Adam: contradicted whatever constant ATMO does
    runs.loc[runs["label"] == LABEL["dynamic_atmo"], "best_accuracy"] -= 0.05
    assert _verdicts(runs, frame, timing, ablation)["C17"].verdict == CONTRADICTED


def test_one_seed_decides_nothing_about_accuracy():
    runs, frame, timing, ablation = _report_like()
    one = _verdicts(runs[runs["seed"] == 0], frame[frame["seed"] == 0], timing, ablation[ablation["seed"] == 0])
    for claim in ("C16", "C17", "C18", "C20"):
        assert one[claim].verdict == INCONCLUSIVE, claim


def test_c18_is_not_testable_while_every_test_loss_is_still_falling():
    runs, _, timing, ablation = _report_like()
    falling = _adahessian_frame([[1.0, 0.8, 0.6], [1.1, 0.8, 0.6], [1.0, 0.7, 0.65]])
    decision = _verdicts(runs, falling, timing, ablation)["C18"]
    assert decision.verdict == NOT_TESTABLE and "last epoch of every seed's 3-epoch run" in decision.evidence
    # one seed past its minimum is enough to apply the rule
    one_past = _adahessian_frame([[1.0, 0.8, 0.6], [1.1, 0.5, 0.6], [1.0, 0.7, 0.65]])
    assert _verdicts(runs, one_past, timing, ablation)["C18"].verdict != NOT_TESTABLE


def test_c20_is_not_testable_without_a_multistep_optimizer_in_the_ablation():
    runs, frame, timing, ablation = _report_like()
    settings = study.Settings(ablation_optimizers=["sgd", "adam"])
    assert _verdicts(runs, frame, timing, ablation, settings)["C20"].verdict == NOT_TESTABLE
    settings = study.Settings(ablation_schedulers=["none", "cosine"])
    assert _verdicts(runs, frame, timing, ablation, settings)["C20"].verdict == NOT_TESTABLE


# ---- the statistics behind C18 and C20 ---------------------------------------------------------------------

def test_decay_jumps_are_found_from_the_recorded_learning_rate():
    jumps = study.decay_jumps(_ablation_frame(jump=0.15, decay_epoch=3), [LABEL["padam_sgd"]])
    assert jumps["epoch"].tolist() == [3, 3, 3]
    assert jumps["jump"].to_numpy() == pytest.approx(0.15 + 0.002 * np.array(SEEDS))
    assert jumps["change_without"].to_numpy() == pytest.approx(0.01 + 0.002 * np.array(SEEDS))


def test_the_loss_minimum_is_per_seed():
    minimum = study.loss_minimum(_adahessian_frame([[1.0, 0.5, 0.7], [0.9, 0.8, 0.6], [1.0, 0.4, 0.4]]), LABEL["adahessian"])
    assert minimum["minimum_epoch"].tolist() == [2, 3, 2]  # a tie keeps the first epoch
    assert minimum["final_loss"].tolist() == [0.7, 0.6, 0.4]
    assert minimum["train_loss_at_minimum"].tolist() == pytest.approx([0.5, 1 / 3, 0.5])
    shown = study.overfitting_table(minimum)
    assert shown["final / minimum"].tolist() == ["×1.40", "×1.00", "×1.00"]


# ---- the runs ---------------------------------------------------------------------------------------------

def test_the_eight_optimizers_have_report_002s_settings():
    settings = study.Settings(epoch_fraction=1.0)
    groups = study.main_runs(settings)
    assert list(groups) == ["SGD+momentum", "Adam", "ATMO", "Dynamic ATMO", "PADAM-SGD", "Dynamic PADAM-SGD", "AdaHessian", "AdaSGD"]
    first = {label: configs[0] for label, configs in groups.items()}
    assert all(len(configs) == 3 for configs in groups.values())
    # Table I
    assert (first["SGD+momentum"].hyperparameters["lr"], first["SGD+momentum"].hyperparameters["momentum"]) == (0.01, 0.95)
    assert first["Dynamic ATMO"].hyperparameters["lr"] == 0.001 and first["Dynamic ATMO"].hyperparameters["dynamic_weights"] is True
    assert first["ATMO"].hyperparameters["dynamic_weights"] is False and first["ATMO"].hyperparameters["adam_weight"] == 0.5
    assert first["Dynamic PADAM-SGD"].hyperparameters["dynamic_weights"] is True
    assert first["PADAM-SGD"].hyperparameters["weight_decay"] == 0.025 and first["PADAM-SGD"].batch_size == 128
    assert first["AdaHessian"].hyperparameters["lr"] == 0.15 and first["AdaSGD"].hyperparameters["dynamic_weights"] is True
    # Table II at full scale
    assert {label: config.num_epochs for label, config in first.items()} == {
        "SGD+momentum": 350, "Adam": 350, "ATMO": 350, "Dynamic ATMO": 350, "PADAM-SGD": 200, "Dynamic PADAM-SGD": 200,
        "AdaHessian": 160, "AdaSGD": 200}
    assert first["Dynamic ATMO"].scheduler == "cosine"
    assert first["AdaSGD"].scheduler_options == {"milestones": [100, 140, 180]}
    assert first["SGD+momentum"].scheduler == "none" and first["SGD+momentum"].batch_size == 256


def test_smaller_profiles_scale_epochs_and_milestones_by_one_fraction():
    settings = study.Settings(epoch_fraction=0.03)
    first = {label: configs[0] for label, configs in study.main_runs(settings).items()}
    # 350 × 0.03 = 10.5 rounds half up to 11; 200 × 0.03 = 6 with milestones 3 and 4.5 → 5
    assert first["SGD+momentum"].num_epochs == 11
    assert (first["PADAM-SGD"].num_epochs, first["PADAM-SGD"].scheduler_options["milestones"]) == (6, [3, 5])
    assert (first["AdaHessian"].num_epochs, first["AdaHessian"].scheduler_options["milestones"]) == (5, [2, 4])
    assert first["AdaSGD"].scheduler_options["milestones"] == [3, 4, 5]


def test_the_ablation_reuses_the_main_runs_and_places_its_own_milestones():
    settings = study.Settings(epoch_fraction=0.03)
    main = study.main_runs(settings)
    grid = study.ablation_grid(settings)
    assert list(grid) == ["none", "cosine", "multistep"] and list(grid["none"]) == [LABEL[key] for key in study.FIRST_ORDER]
    assert grid["none"]["SGD+momentum"][0].run_id == main["SGD+momentum"][0].run_id
    assert grid["cosine"]["Dynamic ATMO"][0].run_id == main["Dynamic ATMO"][0].run_id
    assert grid["multistep"]["PADAM-SGD"][0].run_id == main["PADAM-SGD"][0].run_id
    # SGD had no MultiStepLR in the report: the ablation's decays at 1/2 and 3/4 of its 11 epochs
    assert grid["multistep"]["SGD+momentum"][0].scheduler_options == {"milestones": [6, 8]}
    every = study.hessian_every_runs(settings)
    assert [configs[0].hyperparameters["hessian_every"] for configs in every.values()] == [1, 2, 4]
    assert every["AdaHessian"][0].run_id == main["AdaHessian"][0].run_id
    planned = study.planned_runs(settings)
    assert len({config.run_id for config in planned}) == len(planned)
    # 8 optimizers, 2 more AdaHessians, 6 optimizers × 2 more schedulers; 3 seeds each
    assert len(planned) == 3 * (8 + 2 + 6 * 2)
    assert set(study.timing_configs(settings)) == set(main) | set(every)


def test_the_mixing_weights_come_from_the_optimizers_schedule():
    weights = study.mixing_weights(study.Settings(epoch_fraction=0.03))
    assert list(dict.fromkeys(weights["label"])) == ["Dynamic ATMO", "Dynamic PADAM-SGD", "AdaSGD"]
    for label, epochs in (("Dynamic ATMO", 11), ("AdaSGD", 6)):
        rows = weights[weights["label"] == label]
        # λ_A = 1 − e/E at the start of epoch e (from 0): report 002's linear hand-over to SGD
        assert rows["adaptive_weight"].to_numpy() == pytest.approx(1 - np.arange(epochs) / epochs)
        assert (rows["adaptive_weight"] + rows["sgd_weight"]).to_numpy() == pytest.approx(np.ones(epochs))


def test_the_reported_table_keeps_report_002s_numbers_in_reported_columns():
    settings = study.Settings()
    runs = _runs({key: 0.9 - 0.01 * position for position, key in enumerate(study.VARIANTS)})
    table = common.results_table(runs, study.labels(), metrics=["best_accuracy", "final_accuracy"])
    shown = study.reported_table(table, settings)
    # report 002's numbers are in the one column headed "reported (report 002 ...)"; ours in "this run (...scale...)"
    assert shown.columns[1].startswith("reported (report 002") and shown.columns[2].startswith("this run (digits, width ×0.125")
    assert shown.iloc[:2, 1].tolist() == ["85.39", "83.70"]
    assert shown["rank, reported → this run"].tolist()[:3] == ["5 → 1", "7 → 2", "8 → 3"]
    assert shown["epochs, reported → this run"].tolist()[6] == "160 → 4"


def test_the_paper_profile_holds_report_002s_exact_settings():
    parameters = book.load_profile("paper", ROOT, check_data=False)["study3_hybrid"]
    settings = STUDIES["study3_hybrid"].settings_from(parameters)
    assert settings.dataset == "cifar10" and settings.model_width == 1.0 and settings.epoch_fraction == 1.0
    assert settings.hyperparameters == study.REPORT_HYPERPARAMETERS
    assert settings.batch_sizes == study.REPORT_BATCH_SIZES and settings.schedules == study.REPORT_SCHEDULES
    assert [settings.scaled_epochs(key) for key in study.VARIANTS] == [350, 350, 350, 350, 200, 200, 160, 200]


# ---- bad parameters ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("parameters, message", [
    ({"ablation_schedulers": ["none", "step"]}, r"unknown scheduler 'step' in ablation_schedulers; available: none, multistep, cosine"),
    ({"schedules": {**study.REPORT_SCHEDULES, "sgd": {"scheduler": "exponential", "num_epochs": 350}}},
     r"unknown scheduler 'exponential' for sgd in schedules; available: none"),
    ({"schedules": {**study.REPORT_SCHEDULES, "padam_sgd": {"scheduler": "multistep", "num_epochs": 200, "milestones": [100, 250]}}},
     r"invalid milestones \[100, 250\] for padam_sgd \(report scale, 200 epochs\): give increasing epoch numbers from 1 to 199"),
    ({"epoch_fraction": 0.02}, r"invalid milestones \[2, 2\] for adahessian at epoch_fraction 0.02 .*choose a larger epoch_fraction"),
    ({"hessian_every": [2, 0]}, r"invalid hessian_every \[2, 0\]: every entry must be an integer >= 1 .*got 0"),
    ({"epoch_fraction": 1.5}, r"invalid epoch_fraction 1.5: it must lie in \(0, 1\]"),
    ({"hyperparameters": {"dynamic_atmo": {"dynamic_weights": False}}}, r"'dynamic_weights' selects the optimizer's form and is fixed"),
    ({"hyperparameters": {"adam": {"learning_rate": 0.1}}}, r"unknown hyperparameter\(s\) 'learning_rate' for optimizer 'adam'"),
    ({"ablation_optimizers": ["sgd", "lion"]}, r"invalid ablation_optimizers \['sgd', 'lion'\]: every entry must be one of sgd"),
    ({"batch_sizes": {"sgd": 256}}, r"invalid batch_sizes: missing 'adam'"),
    ({"target_fraction": 0}, r"invalid target_fraction 0: it must lie in \(0, 1\]"),
])
def test_bad_parameters_are_named_before_anything_trains(parameters, message):
    with pytest.raises(ValueError, match=message):
        STUDIES["study3_hybrid"].validate(parameters, check_data=False)


def test_time_to_target_of_a_diverged_run_is_never():
    frame = pd.DataFrame([{"label": "AdaHessian", "run_id": "a", "seed": 0, "epoch": epoch, "test_accuracy": accuracy,
                           "grad_evals": 100 * epoch, "elapsed_seconds": float(epoch)}
                          for epoch, accuracy in ((1, 0.5), (2, math.nan))])
    assert not common.time_to_target(frame, 0.6)["reached"].iloc[0]
