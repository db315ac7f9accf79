import math

import numpy as np
import pandas as pd
import pytest

from optbench.statistics import format_mean_interval, mean_interval, summarize


def test_interval_matches_the_t_formula():
    values = [0.81, 0.84, 0.79, 0.86]
    mean, low, high = mean_interval(values)
    sample_sd = np.std(values, ddof=1)
    t_975_df3 = 3.182446305284263  # Student's t 97.5% quantile, 3 degrees of freedom (tables)
    assert mean == pytest.approx(np.mean(values))
    assert high - mean == pytest.approx(t_975_df3 * sample_sd / 2, rel=1e-9)
    assert mean - low == pytest.approx(high - mean)


def test_one_seed_has_no_interval_and_non_finite_values_are_ignored():
    assert mean_interval([0.5])[0] == 0.5 and math.isnan(mean_interval([0.5])[1])
    assert mean_interval([0.5, float("nan"), 0.7])[0] == pytest.approx(0.6)
    assert math.isnan(mean_interval([])[0])
    assert format_mean_interval(0.5, float("nan")) == "0.500"


def test_summarize_groups():
    frame = pd.DataFrame({"optimizer": ["a", "a", "b", "b"], "accuracy": [0.1, 0.3, 0.5, 0.5]})
    table = summarize(frame, "optimizer", "accuracy").set_index("optimizer")
    assert table.loc["a", "mean"] == pytest.approx(0.2) and table.loc["b", "half_width"] == 0
    assert table.loc["a", "n"] == 2


def test_bounded_band_clips_to_the_metric_range_only():
    from optbench.statistics import band, bounded_band

    values = [0.02, 0.9]  # two seeds: the t-interval reaches far below zero
    low, high = band(values)
    assert low < 0 < 1 < high
    assert bounded_band(0.0, 1.0)(values) == (0.0, 1.0)
    assert bounded_band(0.0, 1.0)([0.5, 0.6, 0.55]) == band([0.5, 0.6, 0.55])
