"""The experiment statistics against scipy/statsmodels on fixed data, and their error rates on
replicated simulated A/A experiments."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from recomart.experiments import statistics as st


def _fixed_data():
    rng = np.random.default_rng(7)
    control = rng.normal(10.0, 3.0, 400)
    treatment = rng.normal(10.6, 4.0, 350)
    return control, treatment


# ---- sample size --------------------------------------------------------------------------------
def test_sample_size_for_means_is_the_worked_example():
    assert st.sample_size_means(15, 0.7, alpha=0.05, power=0.8, one_sided=True) == 5678
    # the exact figure is 5,677.8: rounded up, not to the nearest
    z = stats.norm.ppf(0.95) + stats.norm.ppf(0.8)
    assert 5677 < 2 * 15 ** 2 * z ** 2 / 0.7 ** 2 < 5678
    assert st.sample_size_means(15, 0.7, alpha=0.05, power=0.8) == 7209  # two-sided


def test_sample_size_matches_statsmodels_power():
    from statsmodels.stats.power import NormalIndPower

    solved = NormalIndPower().solve_power(effect_size=0.7 / 15, alpha=0.05, power=0.8,
                                          alternative="larger")
    assert st.sample_size_means(15, 0.7, one_sided=True) == math.ceil(solved)
    two = NormalIndPower().solve_power(effect_size=0.2, alpha=0.05, power=0.9)
    assert st.sample_size_means(1.0, 0.2, power=0.9) == math.ceil(two)


def test_sample_size_for_proportions_matches_statsmodels():
    from statsmodels.stats.power import NormalIndPower

    p0, p1 = 0.05, 0.055
    es = (p1 - p0) / math.sqrt((p0 * (1 - p0) + p1 * (1 - p1)) / 2)
    solved = NormalIndPower().solve_power(effect_size=es, alpha=0.05, power=0.8)
    assert st.sample_size_proportions(0.05, 0.10) == math.ceil(solved)
    with pytest.raises(st.StatisticsError):
        st.sample_size_proportions(0.95, 0.10)  # treated rate above 1


def test_expected_days_uses_the_smallest_arm():
    assert st.expected_days(1000, {"control": 0.8, "treatment": 0.2}, 500) == pytest.approx(10.0)
    assert st.expected_days(1000, {"a": 1, "b": 1}, 0) is None


# ---- SRM ----------------------------------------------------------------------------------------
def test_srm_against_scipy_and_configured_weights():
    res = st.srm_check({"control": 5000, "treatment": 4500}, {"control": 0.5, "treatment": 0.5})
    chi2, p = stats.chisquare([5000, 4500], [4750, 4750])
    assert res.chi2 == pytest.approx(chi2) and res.p_value == pytest.approx(p)
    assert res.mismatch and res.expected == {"control": 4750.0, "treatment": 4750.0}
    # a 80/20 split that is *configured* is not a mismatch
    ok = st.srm_check({"control": 8010, "treatment": 1990}, {"control": 0.8, "treatment": 0.2})
    assert not ok.mismatch and ok.p_value > 0.5
    with pytest.raises(st.StatisticsError, match="not in the configured"):
        st.srm_check({"x": 3}, {"control": 1, "treatment": 1})


def test_srm_threshold_is_strict():
    # chi2 = 9.0 -> p = 0.0027 > 0.001: suspicious but not blocking
    res = st.srm_check({"c": 5150, "t": 4850}, {"c": 1, "t": 1})
    assert res.chi2 == pytest.approx(9.0) and not res.mismatch
    blocked = st.srm_check({"c": 5300, "t": 4700}, {"c": 1, "t": 1})
    assert blocked.p_value < 0.001 and blocked.mismatch


# ---- Welch --------------------------------------------------------------------------------------
def test_welch_matches_scipy_and_statsmodels():
    from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

    c, t = _fixed_data()
    res = st.welch_test(st.ArmSummary.from_values(c), st.ArmSummary.from_values(t))
    ref = stats.ttest_ind(t, c, equal_var=False)
    assert res.t == pytest.approx(ref.statistic) and res.p_value == pytest.approx(ref.pvalue)
    assert res.df == pytest.approx(ref.df)
    cm = CompareMeans(DescrStatsW(t), DescrStatsW(c))
    lo, hi = cm.tconfint_diff(alpha=0.05, usevar="unequal")
    assert (res.ci_low, res.ci_high) == (pytest.approx(lo), pytest.approx(hi))


def test_relative_lift_delta_method_matches_a_direct_computation():
    c, t = _fixed_data()
    res = st.welch_test(st.ArmSummary.from_values(c), st.ArmSummary.from_values(t))
    mc, mt = c.mean(), t.mean()
    vc, vt = c.var(ddof=1) / len(c), t.var(ddof=1) / len(t)
    assert res.rel_lift == pytest.approx(mt / mc - 1)
    assert res.rel_se == pytest.approx(math.sqrt(vt / mc ** 2 + mt ** 2 * vc / mc ** 4))
    # the delta-method variance agrees with a parametric bootstrap of the ratio
    rng = np.random.default_rng(1)
    ratio = rng.normal(mt, math.sqrt(vt), 200_000) / rng.normal(mc, math.sqrt(vc), 200_000) - 1
    assert res.rel_se == pytest.approx(ratio.std(), rel=0.02)


def test_proportion_metric_matches_scipy_on_zero_one_data():
    c = np.r_[np.ones(120), np.zeros(880)]
    t = np.r_[np.ones(150), np.zeros(850)]
    res = st.welch_test(st.ArmSummary.from_proportion(120, 1000), st.ArmSummary.from_proportion(150, 1000))
    ref = stats.ttest_ind(t, c, equal_var=False)
    assert res.p_value == pytest.approx(ref.pvalue) and res.diff == pytest.approx(0.03)


def test_zero_variance_is_a_clear_error():
    with pytest.raises(st.StatisticsError, match="zero variance"):
        st.welch_test(st.ArmSummary(10, 1.0, 0.0), st.ArmSummary(10, 1.0, 0.0))


# ---- CUPED --------------------------------------------------------------------------------------
def test_cuped_theta_pooled_and_interval_narrower():
    rng = np.random.default_rng(3)
    xc, xt = rng.gamma(2.0, 5.0, 2000), rng.gamma(2.0, 5.0, 2000)
    yc = 2.0 + 0.8 * xc + rng.normal(0, 3, 2000)
    yt = 2.5 + 0.8 * xt + rng.normal(0, 3, 2000)
    res = st.cuped_test(yc, xc, yt, xt)
    x, y = np.r_[xc, xt], np.r_[yc, yt]
    assert res.theta == pytest.approx(np.cov(y, x)[0, 1] / x.var(ddof=1))
    # the adjusted difference is Welch on y - theta (x - xbar)
    ac, at = yc - res.theta * (xc - x.mean()), yt - res.theta * (xt - x.mean())
    ref = stats.ttest_ind(at, ac, equal_var=False)
    assert res.comparison.p_value == pytest.approx(ref.pvalue)
    width = res.comparison.ci_high - res.comparison.ci_low
    assert width < 0.6 * (res.unadjusted.ci_high - res.unadjusted.ci_low)
    assert res.variance_reduction > 0.6
    assert res.comparison.ci_low < 0.5 < res.comparison.ci_high
    # relative lift: the adjusted difference over the unadjusted control mean
    assert res.comparison.rel_lift == pytest.approx((at.mean() - ac.mean()) / yc.mean())


# ---- sequential ---------------------------------------------------------------------------------
def test_sequential_interval_is_wider_than_fixed_and_contains_it():
    c, t = _fixed_data()
    cs, ts = st.ArmSummary.from_values(c), st.ArmSummary.from_values(t)
    seq = st.sequential_test(cs, ts)
    fixed = st.welch_test(cs, ts)
    assert seq.ci_low < fixed.ci_low and seq.ci_high > fixed.ci_high
    assert seq.diff == pytest.approx(fixed.diff)
    # the always-valid p-value is where the sequence just touches 0
    hw = st.sequential_halfwidth((cs.se2 + ts.se2) * (cs.n + ts.n), cs.n + ts.n, seq.p_value)
    assert hw == pytest.approx(abs(seq.diff), rel=1e-6)


def test_sequential_rho_formula():
    a = 0.05
    assert st.sequential_rho(a, 5000) == pytest.approx(
        math.sqrt((-2 * math.log(a) + math.log(-2 * math.log(a) + 1)) / 5000))


# ---- Holm ---------------------------------------------------------------------------------------
def test_holm_matches_statsmodels():
    from statsmodels.stats.multitest import multipletests

    p = [0.01, 0.04, 0.03, 0.005, 0.2]
    adjusted, reject = st.holm(p, 0.05)
    ref_reject, ref_adj, _, _ = multipletests(p, alpha=0.05, method="holm")
    assert adjusted == pytest.approx(list(ref_adj))
    assert reject == list(ref_reject)
    assert st.holm([]) == ([], [])


# ---- error rates on replicated simulated experiments --------------------------------------------
def test_aa_false_positive_rate_is_about_alpha():
    """600 A/A experiments on simulated CTR-like outcomes: Welch rejects 3-7 % at α = 0.05."""
    rng = np.random.default_rng(20261201)
    reps, n = 600, 800
    rejects = 0
    for _ in range(reps):
        c = rng.binomial(1, 0.08, n)
        t = rng.binomial(1, 0.08, n)
        res = st.welch_test(st.ArmSummary.from_values(c), st.ArmSummary.from_values(t))
        rejects += res.significant
    rate = rejects / reps
    assert 0.03 <= rate <= 0.07, rate


def test_sequential_test_stays_below_alpha_under_daily_peeking():
    """600 A/A experiments looked at after each of 14 days: stopping at the first day the
    sequence excludes 0 rejects at most α; the naive daily t-test rejects far more often."""
    rng = np.random.default_rng(99)
    reps, days, per_day = 600, 14, 150
    seq_rejects = naive_rejects = 0
    for _ in range(reps):
        c = rng.normal(5.0, 4.0, (days, per_day))
        t = rng.normal(5.0, 4.0, (days, per_day))
        seq_hit = naive_hit = False
        for d in range(1, days + 1):
            cs = st.ArmSummary.from_values(c[:d].ravel())
            ts = st.ArmSummary.from_values(t[:d].ravel())
            seq_hit |= st.sequential_test(cs, ts, tuning_n=days * per_day).significant
            naive_hit |= st.welch_test(cs, ts).significant
        seq_rejects += seq_hit
        naive_rejects += naive_hit
    assert seq_rejects / reps <= 0.05, seq_rejects / reps
    assert naive_rejects / reps > 0.1  # why the sequential test exists
