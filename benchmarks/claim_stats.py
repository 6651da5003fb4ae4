"""The statistics behind a claim's verdict: the difference of two settings' means over seeds with a
Welch confidence interval, and the verdict that follows from the interval.

A comparison "A beats B on a metric" is

- **reproduced** when the whole 95 % interval of the gain (A's advantage) lies above zero,
- **refuted** when the whole interval lies below zero (B is better),
- **inconclusive** otherwise, said with the number of seeds and the interval, so the reader sees
  how far from deciding it is.

Welch's t (Welch, 1947) does not assume equal variances; with 2-10 seeds per setting its interval is
wide, which is the point: a claim is reproduced only when the seeds settle it. The Student t
quantile is computed here (no SciPy) and matches ``scipy.stats.t.ppf`` to 1e-6.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

LEVEL = 0.95
OUTCOMES = ("reproduced", "refuted", "inconclusive", "too few seeds", "not measured")


def _t_cdf(x: float, df: float) -> float:
    """P(T <= x) for Student's t with ``df`` degrees of freedom, x >= 0, by the regularized
    incomplete beta function (continued fraction, Numerical Recipes 6.4)."""
    z = df / (df + x * x)
    return 1.0 - 0.5 * _betainc(df / 2.0, 0.5, z)


def _betainc(a: float, b: float, x: float) -> float:
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x > (a + 1.0) / (a + b + 2.0):
        return 1.0 - _betainc(b, a, 1.0 - x)
    return front * _beta_fraction(a, b, x) / a


def _beta_fraction(a: float, b: float, x: float) -> float:
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 300):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return result


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile (p > 0.5) of Student's t with ``df`` degrees of freedom, by bisection."""
    low, high = 0.0, 1.0
    while _t_cdf(high, df) < p:
        high *= 2.0
    for _ in range(200):
        mid = 0.5 * (low + high)
        low, high = (mid, high) if _t_cdf(mid, df) < p else (low, mid)
    return 0.5 * (low + high)


@dataclass(frozen=True)
class Comparison:
    """A's gain over B (positive = A better, in the metric's units), its interval and the outcome."""

    gain: float
    low: float
    high: float
    n_a: int
    n_b: int
    outcome: str

    @property
    def seeds(self) -> str:
        return f"{self.n_a} and {self.n_b} seeds" if self.n_a != self.n_b else f"{self.n_a} seeds each"


def welch(mean_a: float, std_a: float, n_a: int, mean_b: float, std_b: float, n_b: int,
          lower_is_better: bool = False, level: float = LEVEL) -> Comparison:
    """A's gain over B from the two settings' means, standard deviations (n - 1) and seed counts."""
    if not n_a or not n_b or math.isnan(mean_a) or math.isnan(mean_b):
        return Comparison(math.nan, math.nan, math.nan, n_a, n_b, "not measured")
    gain = (mean_b - mean_a) if lower_is_better else (mean_a - mean_b)
    if min(n_a, n_b) < 2:
        return Comparison(gain, math.nan, math.nan, n_a, n_b, "too few seeds")
    va, vb = std_a ** 2 / n_a, std_b ** 2 / n_b
    se = math.sqrt(va + vb)
    if se == 0.0:  # identical seeds (e.g. a constraint that never acted): the interval is the point
        low = high = gain
    else:
        df = (va + vb) ** 2 / (va ** 2 / (n_a - 1) + vb ** 2 / (n_b - 1))
        half = t_quantile(0.5 + level / 2.0, df) * se
        low, high = gain - half, gain + half
    outcome = "reproduced" if low > 0 else "refuted" if high < 0 else "inconclusive"
    return Comparison(gain, low, high, n_a, n_b, outcome)


def combine(outcomes: list[str]) -> str:
    """One verdict for a claim made of several comparisons, all of which the claim asserts."""
    if not outcomes or "not measured" in outcomes:
        return "incomplete"
    if "too few seeds" in outcomes:
        return "inconclusive"
    if "refuted" in outcomes:
        return "refuted"
    if all(outcome == "reproduced" for outcome in outcomes):
        return "reproduced"
    return "inconclusive"


def interval_text(comparison: Comparison, scale: float = 1.0, unit: str = "", digits: int = 2) -> str:
    """'+0.41 points [0.12, 0.70], 95 % CI, 4 seeds each' for a gain in ``unit`` after ``scale``."""
    if comparison.outcome == "not measured":
        return "not measured"
    gain = f"{comparison.gain * scale:+.{digits}f}{unit}"
    if comparison.outcome == "too few seeds":
        return f"{gain} ({comparison.seeds}: too few to give an interval)"
    low: Optional[float] = comparison.low * scale
    high: Optional[float] = comparison.high * scale
    return f"{gain} [{low:+.{digits}f}, {high:+.{digits}f}] ({LEVEL:.0%} CI, {comparison.seeds})"


def paired(gains: list[float], level: float = LEVEL) -> Comparison:
    """The mean of per-seed gains (A minus B measured on the same seed: two scores of one network, say)
    with its Student t interval: the test for paired measurements, where Welch's would count the
    seed-to-seed spread that both share."""
    n = len(gains)
    if n == 0:
        return Comparison(math.nan, math.nan, math.nan, 0, 0, "not measured")
    gain = sum(gains) / n
    if n < 2:
        return Comparison(gain, math.nan, math.nan, n, n, "too few seeds")
    std = math.sqrt(sum((g - gain) ** 2 for g in gains) / (n - 1))
    half = t_quantile(0.5 + level / 2.0, n - 1) * std / math.sqrt(n)
    low, high = gain - half, gain + half
    outcome = "reproduced" if low > 0 else "refuted" if high < 0 else "inconclusive"
    return Comparison(gain, low, high, n, n, outcome)
