"""Figure bands are the tables' intervals: what seaborn draws equals statistics.mean_interval."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from optbench import plotting
from optbench.statistics import mean_interval


def _frame():
    # seven seeds: enough distinct resamples that two bootstrap generators would disagree
    values = np.random.default_rng(3).uniform(0.05, 0.95, size=(7, 2))
    rows = []
    for seed, pair in enumerate(values):
        for epoch, value in enumerate(pair, start=1):
            rows.append({"label": "Adam", "seed": seed, "run_id": f"a{seed}", "epoch": epoch, "train_loss": value, "test_accuracy": value})
    return pd.DataFrame(rows)


def _band(ax):
    # seaborn draws a band as one filled polygon: its lower edge, then its upper edge back
    vertices = ax.collections[0].get_paths()[0].vertices
    return {x: (vertices[vertices[:, 0] == x, 1].min(), vertices[vertices[:, 0] == x, 1].max()) for x in (1.0, 2.0)}


def test_a_band_is_the_bootstrap_interval_of_the_tables():
    frame = _frame()
    fig, ax = plt.subplots()
    plotting.metric_curves(frame, "test_accuracy", ax=ax, legend=False)
    for epoch, (low, high) in _band(ax).items():
        _, expected_low, expected_high = mean_interval(frame.loc[frame["epoch"] == epoch, "test_accuracy"])
        assert (low, high) == pytest.approx((100 * expected_low, 100 * expected_high))  # accuracies in percent
    plt.close(fig)


def test_on_a_log_axis_the_band_is_the_interval_of_the_logarithms():
    frame = _frame()
    fig, ax = plt.subplots()
    plotting.metric_curves(frame, "train_loss", ax=ax, log_y=True, legend=False)
    for epoch, (low, high) in _band(ax).items():
        _, expected_low, expected_high = mean_interval(np.log10(frame.loc[frame["epoch"] == epoch, "train_loss"]))
        assert (low, high) == pytest.approx((10**expected_low, 10**expected_high))
        assert low > 0
    plt.close(fig)
