"""Time to a target (studies.common): the first epoch that reaches it, its costs, and runs that never do."""

import math

import pandas as pd

from optbench.studies import common


def _frame():
    rows = []
    curves = {("A", 0): [0.5, 0.8, 0.95, 0.9], ("A", 1): [0.6, 0.91, 0.97, 0.98],
              ("B", 0): [0.4, 0.6, 0.7, 0.89], ("B", 1): [0.3, 0.5, math.nan, math.nan]}
    for (label, seed), accuracies in curves.items():
        for epoch, accuracy in enumerate(accuracies, start=1):
            rows.append({"label": label, "run_id": f"{label}{seed}", "seed": seed, "epoch": epoch, "test_accuracy": accuracy,
                         # B evaluates two gradients per example, at 100 examples per epoch
                         "grad_evals": epoch * (100 if label == "A" else 200), "elapsed_seconds": 1.5 * epoch})
    return pd.DataFrame(rows)


def test_the_first_epoch_at_or_above_the_target_gives_the_costs():
    per_run = common.time_to_target(_frame(), target=0.9)
    a0, a1 = per_run[per_run["run_id"] == "A0"].iloc[0], per_run[per_run["run_id"] == "A1"].iloc[0]
    # A0 first reaches 0.9 at epoch 3 (and falls back after: the first epoch counts)
    assert (a0["reached"], a0["epoch"], a0["grad_evals"], a0["elapsed_seconds"]) == (True, 3, 300, 4.5)
    assert (a1["epoch"], a1["grad_evals"]) == (2, 200)
    # exactly at the target counts as reached
    assert common.time_to_target(_frame(), target=0.95).set_index("run_id").loc["A0", "epoch"] == 3


def test_runs_that_never_reach_it_are_shown_as_such():
    per_run = common.time_to_target(_frame(), target=0.9).set_index("run_id")
    assert not per_run.loc["B0", "reached"] and math.isnan(per_run.loc["B0", "grad_evals"])
    assert not per_run.loc["B1", "reached"]  # a diverged run's NaN epochs never reach anything
    shown = common.target_table(per_run.reset_index(), order=["A", "B"]).set_index("optimizer")
    assert shown.loc["A", "runs reaching the target"] == "2 of 2"
    assert shown.loc["B", "runs reaching the target"] == "0 of 2"
    assert shown.loc["B", "gradient evaluations to reach it"] == "never reached"
    # the mean over the runs that reached it, never over the ones that did not
    assert shown.loc["A", "epochs to reach it"] == "2.5 [2.0, 3.0]"
    assert shown.loc["A", "gradient evaluations to reach it"] == "250 [200, 300]"
    assert common.time_to_target(_frame(), target=0.5, costs=["grad_evals"]).columns.tolist() == [
        "label", "run_id", "seed", "reached", "grad_evals"]


def test_one_run_reaching_it_gives_its_value_without_an_interval():
    frame = _frame()
    per_run = common.time_to_target(frame[frame["run_id"] != "A1"], target=0.9)
    assert common.target_table(per_run, order=["A"]).loc[0, "training seconds to reach it"] == "4.5"
