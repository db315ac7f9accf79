"""Verdicts on the source reports' claims: one vocabulary and one decision rule for every chapter.

A claim is decided only when the data separate the alternatives beyond the seed-to-seed noise:

- **supported**: the measured difference lies on the claimed side of its threshold, and a one-sided
  t-test rejects the opposite at level α;
- **contradicted**: the difference lies on the other side, and the one-sided test in that direction rejects;
- **inconclusive**: neither test rejects (or a side has fewer than two values, so the noise is unknown);
- **not testable here**: the claim is about a setting this profile does not have (an accuracy level on
  CIFAR-10, the end of a 200-epoch run, ...).

The test is scipy's: paired by seed (``ttest_rel``) when both sides hold the same seeds, since runs with the
same seed share their initialization and data order; Welch's (``ttest_ind(equal_var=False)``) otherwise.
α = 0.05, divided by the number of comparisons a claim makes (Bonferroni), so a claim that compares one
optimizer with eleven others does not become easier to decide by chance. Values without spread (every
seed equal) have no noise to respect: the sign of the difference decides. NaN values (a diverged run's
accuracy, say) are dropped; the claim's rule says when that matters.

Timing claims use the same rule on repeated, interleaved measurements (:mod:`optbench.timing`), paired by
measurement round, on the logarithm of the time, so thresholds are ratios.
"""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd
from scipy import stats

SUPPORTED = "supported"
CONTRADICTED = "contradicted"
INCONCLUSIVE = "inconclusive"
NOT_TESTABLE = "not testable here"
#: every verdict a claim table may hold, in the order the findings count them
VERDICTS = (SUPPORTED, CONTRADICTED, INCONCLUSIVE, NOT_TESTABLE)
#: the family-wise level of one claim's tests
LEVEL = 0.05
#: tags that keep the positions of unindexed inputs from ever matching another input's
_UNPAIRED = itertools.count()


@dataclass(frozen=True)
class Decision:
    """A verdict and the evidence behind it, in words a reader can check."""

    verdict: str
    evidence: str


def _as_series(values) -> pd.Series:
    """Finite values as a float Series; values given as a Series keep their index (the seeds), others get
    an index no other input shares, so that only seed-indexed inputs are ever paired."""
    if isinstance(values, pd.Series):
        series = values.copy()
    else:
        values = list(values)
        tag = next(_UNPAIRED)
        series = pd.Series(values, index=[(tag, position) for position in range(len(values))], dtype=float)
    series = pd.to_numeric(series, errors="coerce").astype(float)
    return series[np.isfinite(series)]


def _p_values(a: pd.Series, b: pd.Series, threshold: float) -> tuple[float, float, str] | None:
    """One-sided p-values of mean(a) − mean(b) above and below ``threshold``, and the test's short name.

    None when a side has fewer than two values. Exact zero-noise data give p = 0 on the side the difference
    lies and 1 on the other; an exact tie counts as "not above".
    """
    with warnings.catch_warnings():
        # nearly equal seeds make scipy warn about precision; the p-values it returns are still right
        warnings.filterwarnings("ignore", category=RuntimeWarning)
        return _scipy_p_values(a, b, threshold)


def _paired(a: pd.Series, b: pd.Series) -> bool:
    return len(a) >= 2 and a.index.is_unique and b.index.is_unique and set(a.index) == set(b.index)


def _scipy_p_values(a: pd.Series, b: pd.Series, threshold: float) -> tuple[float, float, str] | None:
    if _paired(a, b):
        b = b.reindex(a.index)
        differences = (a - b).to_numpy()
        name = f"paired, n = {len(differences)}"
        if np.ptp(differences) == 0.0:
            return _exact(float(differences[0]) - threshold, name)
        above = stats.ttest_rel(a.to_numpy() - threshold, b.to_numpy(), alternative="greater").pvalue
        below = stats.ttest_rel(a.to_numpy() - threshold, b.to_numpy(), alternative="less").pvalue
        return float(above), float(below), name
    if len(a) < 2 or len(b) < 2:
        return None
    name = f"Welch, n = {len(a)} and {len(b)}"
    if np.ptp(a.to_numpy()) == 0.0 and np.ptp(b.to_numpy()) == 0.0:
        return _exact(float(a.mean() - b.mean()) - threshold, name)
    above = stats.ttest_ind(a.to_numpy() - threshold, b.to_numpy(), equal_var=False, alternative="greater").pvalue
    below = stats.ttest_ind(a.to_numpy() - threshold, b.to_numpy(), equal_var=False, alternative="less").pvalue
    return float(above), float(below), name


def _exact(excess: float, name: str) -> tuple[float, float, str]:
    # claims are strict: an exact tie with the threshold is "not above" beyond doubt
    name = f"{name}, no spread"
    return (0.0, 1.0, name) if excess > 0 else (1.0, 0.0, name)


def _difference(a: pd.Series, b: pd.Series) -> float:
    if _paired(a, b):
        return float((a - b.reindex(a.index)).mean())
    return float(a.mean() - b.mean()) if len(a) and len(b) else math.nan


def _decide(above: float, below: float, level: float) -> str:
    if above < level:
        return SUPPORTED
    if below < level:
        return CONTRADICTED
    return INCONCLUSIVE


def _evidence(name: str, value: str, test: str, p_value: float) -> str:
    prefix = f"{name}: " if name else ""
    return f"{prefix}{value} ({test}, p = {p_value:.3f})"


def decide_greater(a, b, threshold: float = 0.0, level: float = LEVEL,
                   describe: Callable[[float], str] = lambda value: f"{value:+.3g}", name: str = "") -> Decision:
    """Claim: mean(a) − mean(b) > ``threshold``. ``a`` and ``b`` are values over seeds (Series indexed by seed,
    or by timing round, pair them).

    Supported when the one-sided test of "greater" rejects at ``level``, contradicted when the one-sided test
    of "less" does, inconclusive otherwise or with fewer than two values on a side. The evidence reads
    ``name: difference (test, p)``, p that of the direction the difference lies in.
    """
    a, b = _as_series(a), _as_series(b)
    difference = _difference(a, b)
    tested = _p_values(a, b, threshold)
    if tested is None:
        return Decision(INCONCLUSIVE, f"{name + ': ' if name else ''}{describe(difference)} (fewer than two values on a side: the noise is unknown)")
    above, below, test = tested
    return Decision(_decide(above, below, level), _evidence(name, describe(difference), test, min(above, below)))


def decide_above(values, threshold: float, level: float = LEVEL,
                 describe: Callable[[float], str] = lambda value: f"{value:+.3g}", name: str = "") -> Decision:
    """Claim: the mean of ``values`` exceeds a fixed ``threshold`` (one-sample t-test, scipy's ``ttest_1samp``)."""
    array = _as_series(values).to_numpy()
    prefix = f"{name}: " if name else ""
    if array.size < 2:
        return Decision(INCONCLUSIVE, f"{prefix}{array.size} value(s) (fewer than two: the noise is unknown)")
    excess = float(array.mean()) - threshold
    test = f"one-sample, n = {array.size}"
    if np.ptp(array) == 0.0:
        above, below, test = _exact(excess, test)
    else:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=RuntimeWarning)
            above = float(stats.ttest_1samp(array, threshold, alternative="greater").pvalue)
            below = float(stats.ttest_1samp(array, threshold, alternative="less").pvalue)
    return Decision(_decide(above, below, level), _evidence(name, f"{describe(excess)} from the threshold", test, min(above, below)))


def decide_equivalent(a, b, margin: float, level: float = LEVEL,
                      describe: Callable[[float], str] = lambda value: f"{value:+.3g}", name: str = "") -> Decision:
    """Claim: |mean(a) − mean(b)| < ``margin`` (two one-sided tests, TOST).

    Supported when the difference is shown to lie above −margin and below +margin; contradicted when it is
    shown to lie beyond one of them; inconclusive otherwise.
    """
    a, b = _as_series(a), _as_series(b)
    difference = _difference(a, b)
    low, high = _p_values(a, b, -margin), _p_values(a, b, margin)
    if low is None or high is None:
        return Decision(INCONCLUSIVE, f"{name + ': ' if name else ''}{describe(difference)} (fewer than two values on a side: the noise is unknown)")
    above_low, below_low, test = low
    above_high, below_high, _ = high
    inside, outside = max(above_low, below_high), min(below_low, above_high)
    if inside < level:
        verdict = SUPPORTED
    elif outside < level:
        verdict = CONTRADICTED
    else:
        verdict = INCONCLUSIVE
    value = f"{describe(difference)}, margin ±{describe(margin).lstrip('+')}"
    return Decision(verdict, _evidence(name, value, test, inside if verdict != CONTRADICTED else outside))


def all_of(decisions: Sequence[Decision], joiner: str = "; ") -> Decision:
    """A claim made of several comparisons: contradicted if any is, supported if all are, else inconclusive."""
    verdicts = [decision.verdict for decision in decisions]
    if NOT_TESTABLE in verdicts:
        verdict = NOT_TESTABLE
    elif CONTRADICTED in verdicts:
        verdict = CONTRADICTED
    elif verdicts and all(verdict == SUPPORTED for verdict in verdicts):
        verdict = SUPPORTED
    else:
        verdict = INCONCLUSIVE
    return Decision(verdict, joiner.join(decision.evidence for decision in decisions))


#: a comparison read the other way round
_OPPOSITE = {SUPPORTED: CONTRADICTED, CONTRADICTED: SUPPORTED}


def any_of(decisions: Sequence[Decision], joiner: str = " or ") -> Decision:
    """A claim that holds when at least one of several comparisons does (the dual of :func:`all_of`, by De
    Morgan): supported if any is, contradicted if all are, else inconclusive."""
    flipped = all_of([Decision(_OPPOSITE.get(decision.verdict, decision.verdict), decision.evidence) for decision in decisions], joiner)
    return Decision(_OPPOSITE.get(flipped.verdict, flipped.verdict), flipped.evidence)


def decide_best(candidate: str, values: dict[str, Iterable[float]], higher_is_better: bool = True,
                level: float = LEVEL, describe: Callable[[float], str] = lambda value: f"{value:+.3g}") -> Decision:
    """Claim: ``candidate`` beats every other entry of ``values`` (Bonferroni over the comparisons).

    Supported when it is shown better than each; contradicted when one is shown better than it; else
    inconclusive. The evidence lists every comparison (``candidate − other``, in the better direction).
    """
    others = [label for label in values if label != candidate]
    if not others:
        return Decision(NOT_TESTABLE, "nothing to compare with")
    sign = 1.0 if higher_is_better else -1.0
    comparisons = [
        decide_greater(sign * _as_series(values[candidate]), sign * _as_series(values[label]), level=level / len(others),
                       describe=lambda value: describe(sign * value), name=f"vs {label}")
        for label in others
    ]
    return all_of(comparisons)


def not_testable(reason: str) -> Decision:
    """The claim needs a setting this profile lacks; ``reason`` says which."""
    return Decision(NOT_TESTABLE, reason)


@dataclass(frozen=True)
class Claim:
    """One claim of a source report, the rule that decides it, and its decision."""

    id: str
    source: str
    text: str
    rule: str
    decision: Decision


def claim_table(claims: Iterable[Claim]) -> pd.DataFrame:
    """The chapter's claim table: one row per claim, indexed by its id."""
    rows = [{"claim": claim.id, "report": claim.source, "claim (reported)": claim.text, "rule": claim.rule,
             "measured": claim.decision.evidence, "verdict": claim.decision.verdict} for claim in claims]
    for row in rows:
        if row["verdict"] not in VERDICTS:
            raise ValueError(f"claim {row['claim']}: verdict {row['verdict']!r} is not one of {', '.join(VERDICTS)}")
    return pd.DataFrame(rows).set_index("claim")


def verdict_counts(table: pd.DataFrame) -> dict[str, int]:
    """How many claims of a claim table got each verdict (every verdict present, zero included)."""
    counts = table["verdict"].value_counts()
    return {verdict: int(counts.get(verdict, 0)) for verdict in VERDICTS}
