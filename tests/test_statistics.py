"""Intervals over seeds: the percentile bootstrap against plain resampling, and the range they respect."""

import itertools
import math

import numpy as np
import pytest

from optbench.statistics import format_mean_interval, format_spread, mean_interval, spread


def test_bootstrap_interval_matches_the_exact_resampling_distribution():
    # three seeds have 27 equally likely resamples: the percentiles of their means are the exact answer
    values = [0.81, 0.84, 0.93]
    means = sorted(np.mean(sample) for sample in itertools.product(values, repeat=3))
    mean, low, high = mean_interval(values)
    assert mean == pytest.approx(np.mean(values))
    assert low == pytest.approx(np.percentile(means, 2.5, method="inverted_cdf"), abs=0.01)
    assert high == pytest.approx(np.percentile(means, 97.5, method="inverted_cdf"), abs=0.01)


def test_interval_never_leaves_the_values_range_where_a_t_interval_does():
    values = [0.02, 0.9, 0.95]  # a collapsed seed: the t-interval reaches below 0 and above 1
    from scipy import stats

    t_low, t_high = stats.t.interval(0.95, df=2, loc=np.mean(values), scale=stats.sem(values))
    assert t_low < 0 and t_high > 1
    _, low, high = mean_interval(values)
    assert 0.02 <= low <= high <= 0.95


def test_interval_is_the_same_on_every_call_and_in_every_order():
    values = [0.5, 0.61, 0.57, 0.7, 0.42, 0.66, 0.59]
    assert mean_interval(values) == mean_interval(values)
    assert mean_interval(values) == mean_interval(sorted(values)) == mean_interval(values[::-1])


def test_edge_cases_one_seed_equal_values_and_non_finite_values():
    assert mean_interval([0.5])[0] == 0.5 and math.isnan(mean_interval([0.5])[1])
    assert mean_interval([0.4, 0.4, 0.4]) == pytest.approx((0.4, 0.4, 0.4))
    assert mean_interval([0.5, float("nan"), 0.7, None, float("inf")])[0] == pytest.approx(0.6)
    assert all(math.isnan(value) for value in mean_interval([]))
    assert spread([0.3, float("nan"), 0.1]) == (0.1, 0.3) and all(math.isnan(value) for value in spread([]))


def test_formatting():
    assert format_mean_interval(97.31, 96.12, 98.2) == "97.3 [96.1, 98.2]"
    assert format_mean_interval(0.5, math.nan, math.nan, 3) == "0.500"
    assert format_mean_interval(math.nan, 1, 2) == "–"
    assert format_spread(95.0, 98.46) == "95.0–98.5" and format_spread(10.0, 10.04) == "10.0"
