"""Summaries over seeds that respect a metric's range: bootstrap intervals of the mean and the per-seed spread.

Tables and figure bands use the same estimate: the mean over seeds with a 95% percentile-bootstrap interval
(scipy's ``bootstrap``; figures hand it to seaborn as its ``errorbar``, :func:`optbench.plotting.band`). A percentile interval is
made of resampled means, so it never leaves the range the values span (an accuracy stays in [0, 1]), where
Student's t-interval on three seeds reaches far outside it. With few seeds the bootstrap interval is too
narrow rather than too wide, so every table also shows the per-seed spread (minimum–maximum).
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
#: resamples of the bootstrap; with a fixed generator the interval is the same on every build
RESAMPLES = 2000
BOOTSTRAP_SEED = 0


def finite_values(values: Iterable[float | None]) -> np.ndarray:
    """The finite numbers of ``values`` (None, NaN and infinities dropped) as a float array."""
    array = np.asarray([value for value in values if value is not None], dtype=float)
    return array[np.isfinite(array)]


def mean_interval(values: Iterable[float | None], confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(mean, low, high): the mean of the finite values with a percentile-bootstrap interval.

    NaN bounds for fewer than two finite values (no spread to resample); equal values give a zero-width
    interval. The bounds lie within [min, max] of the values and do not depend on their order.
    """
    # sorted: the fixed generator draws fixed resample indices, so the same seeds listed in another order
    # (a table's, a figure's) would otherwise give a slightly different interval
    array = np.sort(finite_values(values))
    if array.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(array.mean())
    if array.size < 2:
        return mean, math.nan, math.nan
    if float(array.max()) == float(array.min()):
        return mean, mean, mean
    result = stats.bootstrap(
        (array,), np.mean, confidence_level=confidence, n_resamples=RESAMPLES, method="percentile",
        random_state=np.random.default_rng(BOOTSTRAP_SEED),
    )
    low, high = result.confidence_interval
    # resampled means lie within [min, max]; clip the float rounding of the percentile too
    return mean, float(max(low, array.min())), float(min(high, array.max()))


def spread(values: Iterable[float | None]) -> tuple[float, float]:
    """(minimum, maximum) of the finite values: the per-seed spread; NaN for none."""
    array = finite_values(values)
    if array.size == 0:
        return math.nan, math.nan
    return float(array.min()), float(array.max())


def format_number(value: float, digits: int = 1) -> str:
    """``value`` with ``digits`` decimals, or an en dash when it is not a finite number."""
    return f"{value:.{digits}f}" if value is not None and math.isfinite(value) else "–"


def format_mean_interval(mean: float, low: float, high: float, digits: int = 1) -> str:
    """``mean [low, high]``; just the mean when the interval is undefined; an en dash for no value."""
    if not math.isfinite(mean):
        return "–"
    if not (math.isfinite(low) and math.isfinite(high)):
        return format_number(mean, digits)
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def format_spread(low: float, high: float, digits: int = 1) -> str:
    """``low–high``; a single number when they are equal; an en dash for no value."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return "–"
    if f"{low:.{digits}f}" == f"{high:.{digits}f}":
        return f"{low:.{digits}f}"
    return f"{low:.{digits}f}–{high:.{digits}f}"
