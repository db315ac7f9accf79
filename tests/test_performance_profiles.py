"""Performance profiles against a hand-computed example, limiting cases and a numerical integral of the profile."""

import math

import matplotlib
import numpy as np
import pandas as pd
import pytest

from optbench import performance_profiles as pp
from optbench import styles

INF, NAN = math.inf, math.nan
#: three workloads, three optimizers: C failed on w2 and did not run on w3
VALUES = pd.DataFrame({"A": [1.0, 3.0, 10.0], "B": [2.0, 3.0, 5.0], "C": [4.0, INF, NAN]}, index=["w1", "w2", "w3"])


def test_ratios_divide_by_each_workloads_best():
    # by hand: w1 best 1 → 1, 2, 4; w2 best 3 → 1, 1, ∞; w3 best 5 → 2, 1, not run
    expected = pd.DataFrame({"A": [1.0, 1.0, 2.0], "B": [2.0, 1.0, 1.0], "C": [4.0, INF, NAN]}, index=VALUES.index)
    pd.testing.assert_frame_equal(pp.performance_ratios(VALUES), expected)


def test_profile_counts_the_workloads_within_each_factor():
    profile = pp.profile(VALUES, [1, 1.5, 2, 4, 100])
    # A and B: best on 2 of 3, within ×2 on all; C: 2 workloads run, within ×4 on one, never on the failed one
    assert profile["A"].tolist() == pytest.approx([2 / 3, 2 / 3, 1, 1, 1])
    assert profile["B"].tolist() == pytest.approx([2 / 3, 2 / 3, 1, 1, 1])
    assert profile["C"].tolist() == pytest.approx([0, 0, 0, 1 / 2, 1 / 2])
    assert list(profile.index) == [1, 1.5, 2, 4, 100] and profile.index.name == "tau"


def test_scores_are_the_normalized_area_under_the_profile():
    # by hand, credit max(0, 4 − r)/3 per workload: A (3 + 3 + 2)/9, B (2 + 3 + 3)/9, C (0 + 0)/2
    scores = pp.scores(VALUES)
    assert scores.tolist() == pytest.approx([8 / 9, 8 / 9, 0.0])
    # independently: the trapezoidal integral of ρ on a fine grid of τ from 1 to 4
    taus = np.linspace(1, pp.TAU_MAX, 30_001)
    curves = pp.profile(VALUES, taus)
    integral = np.trapezoid(curves.to_numpy(), taus, axis=0) / (pp.TAU_MAX - 1)
    assert integral == pytest.approx(scores.to_numpy(), abs=1e-3)


def test_the_winner_is_the_best_score_among_the_optimizers_run_on_the_most_workloads():
    # D ran on w1 only and is best there (score 1); A and B ran on all three, with ratios 2, 1, 2 and 4, 1, 1
    values = VALUES.assign(D=[0.5, NAN, NAN])
    table = pp.summary_table(values)
    assert table.loc["D", "score"] == 1.0 and table.loc["D", "workloads"] == 1
    assert table.loc["A", "score"] == pytest.approx((2 + 3 + 2) / 9)
    assert table.loc["B", "score"] == pytest.approx((0 + 3 + 3) / 9)
    assert list(table.index) == ["D", "A", "B", "C"]
    assert pp.winner(values) == "A"
    assert table.loc["C", "best"] == 0 and table.loc["A", "within 2"] == 1


def test_limiting_cases_zero_best_all_failed_and_one_optimizer():
    values = pd.DataFrame({"A": [0.0, INF, 2.0], "B": [0.1, INF, NAN]}, index=["zero", "failed", "alone"])
    ratios = pp.performance_ratios(values)
    assert ratios.loc["zero"].tolist() == [1.0, INF]
    assert ratios.loc["failed"].tolist() == [INF, INF]
    assert ratios.loc["alone", "A"] == 1.0 and math.isnan(ratios.loc["alone", "B"])
    # equal values: every optimizer is the best
    assert pp.profile(pd.DataFrame({"A": [3.0], "B": [3.0]}), [1]).iloc[0].tolist() == [1.0, 1.0]


def test_bad_values_are_refused_with_the_value_named():
    with pytest.raises(ValueError, match="-1.0 of 'A' on 'w'.*negative"):
        pp.performance_ratios(pd.DataFrame({"A": [-1.0]}, index=["w"]))
    with pytest.raises(ValueError, match="'fast' of 'A' on 'w' is not a number"):
        pp.performance_ratios(pd.DataFrame({"A": ["fast"]}, index=["w"]))
    with pytest.raises(ValueError, match="non-empty"):
        pp.performance_ratios(pd.DataFrame())
    with pytest.raises(ValueError, match="tau >= 1"):
        pp.profile(VALUES, [0.5])
    with pytest.raises(ValueError, match="tau_max"):
        pp.scores(VALUES, tau_max=1.0)


def test_profile_figure_draws_one_panel_per_family_wrapped_into_columns():
    matplotlib.use("Agg")
    labels = {"A": "Adam", "B": "SGD+momentum", "C": "RMSprop"}
    values = VALUES.rename(columns=labels)
    panels = [("Adam family", ["Adam"]), ("others", ["SGD+momentum", "RMSprop"]), ("RMSprop alone", ["RMSprop"])]
    fig = pp.profile_figure(values, look=styles.style, measure="final test error", panels=panels, columns=2)
    axes = [ax for ax in fig.axes if ax.axison]
    assert [ax.get_title() for ax in axes] == ["Adam family", "others", "RMSprop alone"]
    # two columns: the third panel starts the second row, under the first
    first, second, third = (ax.get_position() for ax in axes)
    assert first.y0 == pytest.approx(second.y0) and third.x0 == pytest.approx(first.x0) and third.y1 < first.y0
    assert axes[0].get_ylabel().endswith("final test error") and axes[1].get_ylabel() == ""
    # the highlighted curve in its style's colour, the others grey behind it; each panel's legend names its own
    colours = {line.get_label(): line.get_color() for line in axes[0].get_lines() if line.get_label() in labels.values()}
    assert colours["Adam"] == styles.style("Adam").color and colours["RMSprop"] == styles.CONTEXT_GREY
    legends = [[text.get_text() for text in ax.get_legend().get_texts()] for ax in fig.axes if not ax.axison]
    assert legends == [["Adam"], ["SGD+momentum", "RMSprop"], ["RMSprop"]]
    assert axes[0].get_xscale() == "log"
    # ρ(τ) at the right end of the axis is the share of workloads without a failure
    adam = next(line for line in axes[0].get_lines() if line.get_label() == "Adam")
    assert adam.get_ydata()[-1] == pytest.approx(pp.profile(values, [axes[0].get_xlim()[1]])["Adam"].iloc[0])
    matplotlib.pyplot.close(fig)
