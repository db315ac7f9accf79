"""The claim decision rule on synthetic data: each verdict, ties, one seed, NaN, pairing and Bonferroni."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from optbench import verdicts
from optbench.verdicts import CONTRADICTED, INCONCLUSIVE, NOT_TESTABLE, SUPPORTED


def seeds(*values):
    return pd.Series(values, index=range(len(values)), dtype=float)


def test_a_clear_difference_supports_and_its_reverse_contradicts():
    better, worse = seeds(0.95, 0.96, 0.94, 0.955), seeds(0.80, 0.82, 0.79, 0.81)
    assert verdicts.decide_greater(better, worse).verdict == SUPPORTED
    assert verdicts.decide_greater(worse, better).verdict == CONTRADICTED


def test_a_difference_inside_the_noise_is_inconclusive():
    # the example: 96.4% against 96.6% with a seed spread of several points
    a, b = seeds(0.93, 0.99, 0.972), seeds(0.95, 0.985, 0.963)
    assert verdicts.decide_greater(a, b).verdict == INCONCLUSIVE
    assert verdicts.decide_greater(b, a).verdict == INCONCLUSIVE


def test_a_noisy_tie_is_inconclusive_and_an_exact_tie_is_not_greater():
    assert verdicts.decide_greater(seeds(0.5, 0.6, 0.7), seeds(0.6, 0.5, 0.7)).verdict == INCONCLUSIVE
    assert verdicts.decide_greater(seeds(1.0, 1.0, 1.0), seeds(1.0, 1.0, 1.0)).verdict == CONTRADICTED


def test_one_seed_leaves_the_noise_unknown():
    decision = verdicts.decide_greater(seeds(0.99), seeds(0.10))
    assert decision.verdict == INCONCLUSIVE and "the noise is unknown" in decision.evidence


def test_nan_values_are_dropped_and_too_few_left_is_inconclusive():
    a, b = seeds(0.95, 0.96, math.nan, 0.955), seeds(0.80, 0.82, 0.79, 0.81)
    assert verdicts.decide_greater(a, b).verdict == SUPPORTED
    assert verdicts.decide_greater(seeds(math.nan, 0.9), b).verdict == INCONCLUSIVE


def test_seed_indexed_values_are_paired_and_plain_lists_are_not():
    # a large shared seed effect hides the difference from Welch's test but not from the paired one
    offset = np.array([0.0, 0.2, 0.4])
    a, b = 0.5 + offset + 0.01, 0.5 + offset
    paired = verdicts.decide_greater(pd.Series(a), pd.Series(b), name="a − b")
    welch = verdicts.decide_greater(list(a), list(b))
    assert paired.verdict == SUPPORTED and paired.evidence.startswith("a − b: +0.01 (paired, n = 3")
    assert welch.verdict == INCONCLUSIVE and "Welch, n = 3 and 3" in welch.evidence
    # the p-values are scipy's
    expected = stats.ttest_ind(a, b, equal_var=False, alternative="greater").pvalue
    assert f"p = {expected:.3f})" in welch.evidence


def test_a_threshold_shifts_the_claim():
    a, b = seeds(1.30, 1.32, 1.31, 1.29), seeds(1.0, 1.01, 0.99, 1.0)
    assert verdicts.decide_greater(a, b, threshold=0.1).verdict == SUPPORTED
    assert verdicts.decide_greater(a, b, threshold=0.5).verdict == CONTRADICTED


def test_equivalence_needs_both_one_sided_tests():
    close = verdicts.decide_equivalent(seeds(0.900, 0.905, 0.898, 0.902), seeds(0.901, 0.903, 0.899, 0.900), margin=0.02)
    far = verdicts.decide_equivalent(seeds(0.95, 0.96, 0.955, 0.952), seeds(0.80, 0.81, 0.805, 0.79), margin=0.02)
    noisy = verdicts.decide_equivalent(seeds(0.7, 0.95, 0.8), seeds(0.9, 0.72, 0.85), margin=0.02)
    assert (close.verdict, far.verdict, noisy.verdict) == (SUPPORTED, CONTRADICTED, INCONCLUSIVE)


def test_above_a_fixed_level():
    assert verdicts.decide_above([0.80, 0.82, 0.81], 0.70).verdict == SUPPORTED
    assert verdicts.decide_above([0.60, 0.62, 0.61], 0.70).verdict == CONTRADICTED
    assert verdicts.decide_above([0.60, 0.85, 0.70], 0.70).verdict == INCONCLUSIVE
    assert verdicts.decide_above([0.9], 0.70).verdict == INCONCLUSIVE


def test_best_of_several_uses_bonferroni():
    values = {"a": seeds(0.90, 0.91, 0.92), "b": seeds(0.80, 0.815, 0.82), "c": seeds(0.70, 0.69, 0.71)}
    assert verdicts.decide_best("a", values).verdict == SUPPORTED
    assert verdicts.decide_best("c", values).verdict == CONTRADICTED
    # a comparison that passes at 0.05 alone but not at 0.05/2
    base = np.array([3.0, 1.0, 4.0, 1.5, 5.0, 9.0])
    differences = np.array([0.5, 1.6, 0.2, 1.1, 0.9, -0.4])
    close = {"a": pd.Series(base + differences), "b": pd.Series(base), "c": pd.Series(base - 5)}
    alone = verdicts.decide_greater(close["a"], close["b"])
    p_value = stats.ttest_rel(close["a"], close["b"], alternative="greater").pvalue
    assert 0.025 < p_value < 0.05 and alone.verdict == SUPPORTED
    assert verdicts.decide_best("a", close).verdict == INCONCLUSIVE
    assert verdicts.decide_best("a", {"a": seeds(1, 2)}).verdict == NOT_TESTABLE


def test_combining_decisions():
    s, c, i, n = (verdicts.Decision(v, v) for v in (SUPPORTED, CONTRADICTED, INCONCLUSIVE, NOT_TESTABLE))
    assert verdicts.all_of([s, s]).verdict == SUPPORTED
    assert verdicts.all_of([s, i]).verdict == INCONCLUSIVE
    assert verdicts.all_of([i, c]).verdict == CONTRADICTED
    assert verdicts.all_of([s, n]).verdict == NOT_TESTABLE


def test_any_of_is_the_dual_of_all_of():
    s, c, i, n = (verdicts.Decision(v, v) for v in (SUPPORTED, CONTRADICTED, INCONCLUSIVE, NOT_TESTABLE))
    assert verdicts.any_of([c, s]).verdict == SUPPORTED
    assert verdicts.any_of([c, i]).verdict == INCONCLUSIVE
    assert verdicts.any_of([c, c]).verdict == CONTRADICTED
    assert verdicts.any_of([s, n]).verdict == NOT_TESTABLE
    assert verdicts.any_of([]).verdict == INCONCLUSIVE
    assert verdicts.any_of([s, c]).evidence == "supported or contradicted"


def test_claim_table_counts_every_verdict_and_rejects_others():
    claims = [verdicts.Claim("C1", "000", "text", "rule", verdicts.Decision(SUPPORTED, "e")),
              verdicts.Claim("C2", "000", "text", "rule", verdicts.not_testable("needs CIFAR-10"))]
    table = verdicts.claim_table(claims)
    assert verdicts.verdict_counts(table) == {SUPPORTED: 1, CONTRADICTED: 0, INCONCLUSIVE: 0, NOT_TESTABLE: 1}
    with pytest.raises(ValueError, match="'maybe' is not one of supported"):
        verdicts.claim_table([verdicts.Claim("C3", "000", "t", "r", verdicts.Decision("maybe", "e"))])
