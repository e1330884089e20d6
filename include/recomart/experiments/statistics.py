"""The statistics of an online experiment, in one module: sample size, the sample-ratio-mismatch
check, Welch's t-test with delta-method lifts, CUPED, an always-valid sequential test and
Holm–Bonferroni.

Every test works on per-arm summaries (``ArmSummary``: n, mean, sample variance), so the same code
serves a mean metric (revenue per user) and a proportion metric (CTR, conversion: the mean of 0/1
values). Quantiles and distributions come from scipy; nothing here reads settings or the lake.

References: Welch (1947) and Satterthwaite (1946) for the degrees of freedom; Deng et al. (2013)
for CUPED; Waudby-Smith, Arbour, Sinha, Kennedy & Ramdas (2023), "Time-uniform central limit
theory and asymptotic confidence sequences", for the sequential interval, in the form GrowthBook's
``gbstats`` uses (mixture tuned by a target sample size ``N*``); Holm (1979).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats

from recomart.errors import PermanentError

SRM_THRESHOLD = 0.001
DEFAULT_SEQUENTIAL_N = 5000


class StatisticsError(PermanentError):
    """Inputs a statistic cannot be computed from (too few units, zero variance, bad weights)."""


# ---- summaries ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ArmSummary:
    """One arm of one metric: units, mean and the sample variance (ddof=1) per unit."""

    n: int
    mean: float
    var: float

    @staticmethod
    def from_values(values: Sequence[float] | np.ndarray) -> ArmSummary:
        x = np.asarray(values, dtype=float)
        if len(x) < 2:
            raise StatisticsError(f"an arm needs at least 2 units, got {len(x)}")
        return ArmSummary(len(x), float(x.mean()), float(x.var(ddof=1)))

    @staticmethod
    def from_proportion(successes: int, n: int) -> ArmSummary:
        if n < 2 or not 0 <= successes <= n:
            raise StatisticsError(f"need 0 <= successes <= n and n >= 2 (got {successes}/{n})")
        p = successes / n
        return ArmSummary(n, p, p * (1 - p) * n / (n - 1))

    @property
    def se2(self) -> float:
        """Variance of the arm mean."""
        return self.var / self.n


def _z(alpha: float, one_sided: bool) -> float:
    return float(stats.norm.ppf(1 - (alpha if one_sided else alpha / 2)))


# ---- sample size and duration -------------------------------------------------------------------
def sample_size_means(sigma: float, effect: float, alpha: float = 0.05, power: float = 0.8,
                      one_sided: bool = False) -> int:
    """Units per group for a difference of means: n = 2σ²(z_α + z_β)²/τ², rounded up.

    σ = 15, τ = 0.7, one-sided α = 0.05, power 0.8 gives 5,678 (exact normal quantiles).
    """
    if sigma <= 0 or effect == 0:
        raise StatisticsError("sigma must be > 0 and the effect non-zero")
    _check_rates(alpha, power)
    z = _z(alpha, one_sided) + float(stats.norm.ppf(power))
    return math.ceil(2 * sigma ** 2 * z ** 2 / effect ** 2)


def sample_size_proportions(baseline_rate: float, relative_lift: float, alpha: float = 0.05,
                            power: float = 0.8, one_sided: bool = False) -> int:
    """Units per group to detect p₁ = p₀(1 + lift): n = (z_α + z_β)²(p₀q₀ + p₁q₁)/(p₁ − p₀)²
    (unpooled normal approximation), rounded up."""
    p0 = baseline_rate
    p1 = p0 * (1 + relative_lift)
    if not 0 < p0 < 1 or not 0 < p1 < 1 or p1 == p0:
        raise StatisticsError(f"baseline {p0} and treated rate {p1} must lie in (0, 1) and differ")
    _check_rates(alpha, power)
    z = _z(alpha, one_sided) + float(stats.norm.ppf(power))
    return math.ceil(z ** 2 * (p0 * (1 - p0) + p1 * (1 - p1)) / (p1 - p0) ** 2)


def _check_rates(alpha: float, power: float) -> None:
    if not 0 < alpha < 1 or not 0 < power < 1:
        raise StatisticsError(f"alpha and power must lie in (0, 1), got {alpha}, {power}")


def expected_days(n_per_group: int, weights: Mapping[str, float], units_per_day: float) -> float | None:
    """Days until the smallest arm reaches ``n_per_group`` at the observed daily traffic."""
    if units_per_day <= 0:
        return None
    smallest = min(weights.values()) / sum(weights.values())
    return n_per_group / (units_per_day * smallest)


# ---- sample-ratio mismatch ----------------------------------------------------------------------
@dataclass(frozen=True)
class SRMResult:
    observed: dict[str, int]
    expected: dict[str, float]
    chi2: float
    p_value: float
    threshold: float
    mismatch: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def srm_check(observed: Mapping[str, int], weights: Mapping[str, float],
              threshold: float = SRM_THRESHOLD) -> SRMResult:
    """Pearson χ² of the units per variant against the *configured* weights; ``mismatch`` when
    p < threshold (0.001): assignment or logging is broken and no decision may be taken."""
    names = list(weights)
    unknown = set(observed) - set(names)
    if unknown:
        raise StatisticsError(f"variants {sorted(unknown)} are not in the configured weights")
    counts = np.array([int(observed.get(v, 0)) for v in names], dtype=float)
    w = np.array([float(weights[v]) for v in names])
    if (w <= 0).any():
        raise StatisticsError(f"weights must be > 0, got {dict(weights)}")
    total = counts.sum()
    if total == 0:
        raise StatisticsError("no units observed: the SRM check has nothing to test")
    expected = total * w / w.sum()
    chi2, p = stats.chisquare(counts, expected)
    return SRMResult({v: int(c) for v, c in zip(names, counts, strict=True)},
                     {v: float(e) for v, e in zip(names, expected, strict=True)},
                     float(chi2), float(p), threshold, bool(p < threshold))


# ---- fixed-horizon comparison -------------------------------------------------------------------
@dataclass(frozen=True)
class Comparison:
    """Treatment vs control on one metric."""

    control_mean: float
    treatment_mean: float
    diff: float
    se: float
    df: float
    t: float
    p_value: float
    ci_low: float
    ci_high: float
    rel_lift: float
    rel_se: float
    rel_ci_low: float
    rel_ci_high: float
    alpha: float
    method: str = "welch"

    @property
    def significant(self) -> bool:
        return self.p_value < self.alpha

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "significant": self.significant}


def welch_df(c: ArmSummary, t: ArmSummary) -> float:
    """Welch–Satterthwaite degrees of freedom."""
    a, b = c.se2, t.se2
    if a + b <= 0:
        raise StatisticsError("the difference has zero variance: every unit has the same value")
    return (a + b) ** 2 / (a ** 2 / (c.n - 1) + b ** 2 / (t.n - 1))


def _compare(c_mean: float, t_mean: float, var_diff: float, df: float, rel_var: float,
             rel_denominator: float, alpha: float, method: str) -> Comparison:
    if var_diff <= 0 or not math.isfinite(var_diff):
        raise StatisticsError("the difference has zero variance: every unit has the same value")
    if rel_denominator == 0:
        raise StatisticsError("control mean is 0: the relative lift is undefined")
    se = math.sqrt(var_diff)
    diff = t_mean - c_mean
    tstat = diff / se
    p = float(2 * stats.t.sf(abs(tstat), df))
    q = float(stats.t.ppf(1 - alpha / 2, df))
    rel = diff / rel_denominator
    rel_se = math.sqrt(rel_var)
    return Comparison(c_mean, t_mean, diff, se, df, tstat, p, diff - q * se, diff + q * se,
                      rel, rel_se, rel - q * rel_se, rel + q * rel_se, alpha, method)


def welch_test(control: ArmSummary, treatment: ArmSummary, alpha: float = 0.05) -> Comparison:
    """Two-sided Welch t-test; absolute difference and relative lift (t/c − 1) with delta-method
    standard error Var(r) ≈ s²_t/(n_t μ²_c) + μ²_t s²_c/(n_c μ⁴_c), both on Welch's df."""
    if control.n < 2 or treatment.n < 2:
        raise StatisticsError("each arm needs at least 2 units")
    mc, mt = control.mean, treatment.mean
    var_diff = control.se2 + treatment.se2
    rel_var = (treatment.se2 / mc ** 2 + mt ** 2 * control.se2 / mc ** 4) if mc else 0.0
    return _compare(mc, mt, var_diff, welch_df(control, treatment), rel_var, mc, alpha, "welch")


# ---- CUPED ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CupedResult:
    theta: float
    comparison: Comparison
    unadjusted: Comparison
    variance_reduction: float  # 1 - Var(adjusted diff) / Var(unadjusted diff)


def cuped_test(y_control: np.ndarray, x_control: np.ndarray, y_treatment: np.ndarray,
               x_treatment: np.ndarray, alpha: float = 0.05) -> CupedResult:
    """CUPED: y' = y − θ(x − x̄), θ = cov(y, x)/var(x) pooled across both arms (so the
    adjustment is the same function in each arm and the estimate stays unbiased).

    The absolute difference is Welch on y'. The relative lift is (ȳ'_t − ȳ'_c)/ȳ_c with the
    *unadjusted* control mean in the denominator; its delta-method variance includes the
    covariance of the adjusted and unadjusted control means.
    """
    yc, xc, yt, xt = (np.asarray(a, dtype=float) for a in (y_control, x_control, y_treatment,
                                                             x_treatment))
    if len(yc) != len(xc) or len(yt) != len(xt):
        raise StatisticsError("metric and covariate must have one value per unit")
    unadjusted = welch_test(ArmSummary.from_values(yc), ArmSummary.from_values(yt), alpha)
    x_all = np.concatenate([xc, xt])
    y_all = np.concatenate([yc, yt])
    vx = float(x_all.var(ddof=1))
    theta = float(np.cov(y_all, x_all, ddof=1)[0, 1] / vx) if vx > 0 else 0.0
    xbar = float(x_all.mean())
    ac = yc - theta * (xc - xbar)
    at = yt - theta * (xt - xbar)
    sc, st = ArmSummary.from_values(ac), ArmSummary.from_values(at)
    mc_raw = float(yc.mean())
    if mc_raw == 0:
        raise StatisticsError("control mean is 0: the relative lift is undefined")
    diff = st.mean - sc.mean
    # r = (μt' − μc')/μc ; gradient (1/μc, −1/μc, −diff/μc²) over (μt', μc', μc)
    cov_c = float(np.cov(ac, yc, ddof=1)[0, 1]) / len(yc)
    var_c_raw = float(yc.var(ddof=1)) / len(yc)
    g_t, g_c, g_raw = 1 / mc_raw, -1 / mc_raw, -diff / mc_raw ** 2
    rel_var = (g_t ** 2 * st.se2 + g_c ** 2 * sc.se2 + g_raw ** 2 * var_c_raw
               + 2 * g_c * g_raw * cov_c)
    adjusted = _compare(sc.mean, st.mean, sc.se2 + st.se2, welch_df(sc, st), rel_var, mc_raw,
                        alpha, "cuped")
    reduction = 1 - adjusted.se ** 2 / unadjusted.se ** 2
    return CupedResult(theta, adjusted, unadjusted, reduction)


# ---- always-valid sequential test ---------------------------------------------------------------
@dataclass(frozen=True)
class SequentialResult:
    diff: float
    ci_low: float
    ci_high: float
    alpha: float
    tuning_n: int
    p_value: float  # always-valid: the smallest α at which the sequence excludes 0

    @property
    def significant(self) -> bool:
        return self.ci_low > 0 or self.ci_high < 0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "significant": self.significant}


def sequential_rho(alpha: float, tuning_n: int = DEFAULT_SEQUENTIAL_N) -> float:
    """Mixture width that makes the confidence sequence tightest at ``tuning_n`` units
    (Waudby-Smith et al. 2023, as in GrowthBook's gbstats)."""
    la = -2 * math.log(alpha)
    return math.sqrt((la + math.log(la + 1)) / tuning_n)


def sequential_halfwidth(s2: float, n: int, alpha: float, tuning_n: int = DEFAULT_SEQUENTIAL_N
                         ) -> float:
    """Half-width of the asymptotic confidence sequence for a mean of ``n`` units with
    per-unit variance ``s2``: sqrt(s2) · sqrt(2(nρ² + 1)/(n²ρ²) · log(sqrt(nρ² + 1)/α))."""
    rho = sequential_rho(alpha, tuning_n)
    return math.sqrt(s2) * math.sqrt(2 * (n * rho ** 2 + 1) / (n ** 2 * rho ** 2)
                                     * math.log(math.sqrt(n * rho ** 2 + 1) / alpha))


def sequential_test(control: ArmSummary, treatment: ArmSummary, alpha: float = 0.05,
                    tuning_n: int = DEFAULT_SEQUENTIAL_N) -> SequentialResult:
    """An always-valid interval for the difference of means: it may be looked at after every
    day (or every unit) and stopped at any time with type-I error at most α."""
    n = control.n + treatment.n
    var_diff = control.se2 + treatment.se2
    if var_diff <= 0:
        raise StatisticsError("the difference has zero variance: every unit has the same value")
    s2 = var_diff * n  # per-unit variance of the difference estimate
    diff = treatment.mean - control.mean
    hw = sequential_halfwidth(s2, n, alpha, tuning_n)
    return SequentialResult(diff, diff - hw, diff + hw, alpha, tuning_n,
                            _sequential_p(abs(diff), s2, n, tuning_n))


def _sequential_p(effect: float, s2: float, n: int, tuning_n: int) -> float:
    """Bisection on α: the half-width shrinks as α grows."""
    if sequential_halfwidth(s2, n, 1 - 1e-12, tuning_n) >= effect:
        return 1.0
    lo, hi = 1e-300, 1 - 1e-12
    for _ in range(200):
        mid = math.sqrt(lo * hi) if hi / lo > 10 else (lo + hi) / 2
        if sequential_halfwidth(s2, n, mid, tuning_n) < effect:
            hi = mid
        else:
            lo = mid
    return hi


def sequential_path(control_cum: Sequence[ArmSummary], treatment_cum: Sequence[ArmSummary],
                    alpha: float = 0.05, tuning_n: int = DEFAULT_SEQUENTIAL_N
                    ) -> list[SequentialResult]:
    """The sequence at every look (e.g. cumulative data at the end of each day)."""
    return [sequential_test(c, t, alpha, tuning_n)
            for c, t in zip(control_cum, treatment_cum, strict=True)]


# ---- multiple comparisons -----------------------------------------------------------------------
def holm(p_values: Sequence[float], alpha: float = 0.05) -> tuple[list[float], list[bool]]:
    """Holm–Bonferroni step-down: adjusted p-values (in input order) and which are rejected."""
    p = np.asarray(p_values, dtype=float)
    m = len(p)
    if m == 0:
        return [], []
    order = np.argsort(p, kind="stable")
    adj_sorted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    adjusted = np.empty(m)
    adjusted[order] = adj_sorted
    return adjusted.tolist(), (adjusted <= alpha).tolist()
