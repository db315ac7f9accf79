"""Means with 95% intervals over seeds (Student's t, from scipy), used by tables and figure bands alike."""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np
import pandas as pd
from scipy import stats

CONFIDENCE = 0.95


def mean_interval(values: Iterable[float], confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(mean, low, high): the t-interval of the mean; NaN bounds for fewer than two finite values."""
    array = np.asarray([value for value in values if value is not None], dtype=float)
    array = array[np.isfinite(array)]
    if array.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(array.mean())
    if array.size < 2 or float(array.std()) == 0.0:
        return (mean, math.nan, math.nan) if array.size < 2 else (mean, mean, mean)
    low, high = stats.t.interval(confidence, df=array.size - 1, loc=mean, scale=stats.sem(array))
    return mean, float(low), float(high)


def band(values) -> tuple[float, float]:
    """(low, high) of :func:`mean_interval`, in the form seaborn's ``errorbar=`` callable expects."""
    _, low, high = mean_interval(values)
    return low, high


def bounded_band(lower: float = -math.inf, upper: float = math.inf):
    """:func:`band` clipped to a metric's range (accuracy in [0, 1], losses and seconds >= 0).

    Clipping changes no coverage: the true mean lies in the range anyway. With few seeds the t-interval
    is wide (t = 12.7 for two seeds) and would otherwise draw accuracies below zero.
    """

    def clipped(values) -> tuple[float, float]:
        low, high = band(values)
        return max(low, lower), min(high, upper)

    return clipped


def summarize(frame: pd.DataFrame, by: list[str] | str, metric: str) -> pd.DataFrame:
    """Mean, 95% interval bounds, half-width and count of ``metric`` for each group of ``by``."""
    by = [by] if isinstance(by, str) else list(by)
    rows = []
    for key, group in frame.groupby(by, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        mean, low, high = mean_interval(group[metric])
        rows.append({**dict(zip(by, key)), "mean": mean, "low": low, "high": high,
                     "half_width": (high - low) / 2 if math.isfinite(low) else math.nan, "n": int(group[metric].notna().sum())})
    return pd.DataFrame(rows)


def format_mean_interval(mean: float, half_width: float, digits: int = 3) -> str:
    """``mean ± half-width`` (just the mean when the interval is undefined)."""
    if not math.isfinite(mean):
        return "–"
    if not math.isfinite(half_width):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {half_width:.{digits}f}"
