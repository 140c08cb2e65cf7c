"""Paired statistics for arms trained on the same seeds.

A seed fixes the data, the split, the initialisation and the batch order, so two arms run with the same seed differ
only by the arm: their results are *paired*, and the per-seed differences carry the comparison (the seed-to-seed
spread that both arms share cancels out). For one arm against a baseline arm, over the seeds where both finished
with the metric:

- ``diff``: the mean of the per-seed differences ``arm - baseline``, in the metric's units;
- a 95% confidence interval for it, **t-based**: ``mean +- t(0.975, n-1) * sd / sqrt(n)`` (Student's t over the
  paired differences); with every difference equal, the interval is that single value;
- a two-sided **Wilcoxon signed-rank** test of the differences (SciPy; zero differences dropped, as Wilcoxon did):
  exact when no differences tie and none is zero, else an exact permutation over the 2^n sign flips while n <= 13,
  else the normal approximation; all differences zero gives p = 1;
- the win counts: seeds on which the arm was better, the baseline was better, or they tied;
- *distinguishable* when the interval excludes 0; *underpowered* with fewer than :data:`MIN_PAIRS` pairs.

The functions here are pure (numbers and data frames in, numbers out); ``harness.compare`` formats them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

CONFIDENCE = 0.95
MIN_PAIRS = 5  # fewer paired seeds: the comparison is reported as underpowered
CI_METHOD = "t-based"

EXACT = "exact"
PERMUTATION = "exact permutation (ties or zero differences)"
ASYMPTOTIC = "normal approximation (ties or zero differences)"
ALL_ZERO = "all differences 0"


@dataclass(frozen=True)
class Paired:
    """One arm against the baseline over ``pairs`` paired seeds. ``diff`` and the interval are ``arm - baseline``."""

    pairs: int
    diff: float
    ci_low: float
    ci_high: float
    p: float
    test: str
    arm_better: int
    baseline_better: int
    ties: int

    @property
    def distinguishable(self) -> bool:
        """The confidence interval excludes 0 (never with fewer than 2 pairs: no interval then)."""
        return not (math.isnan(self.ci_low) or math.isnan(self.ci_high)) and (self.ci_low > 0 or self.ci_high < 0)

    @property
    def underpowered(self) -> bool:
        return self.pairs < MIN_PAIRS


def t_interval(d: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The t-based confidence interval for the mean of ``d`` (NaN, NaN with fewer than 2 values)."""
    from scipy import stats

    d = np.asarray(d, dtype=float)
    if len(d) < 2:
        return math.nan, math.nan
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, len(d) - 1)) * sd / math.sqrt(len(d))
    return mean - half, mean + half


def wilcoxon(d: Sequence[float]) -> tuple[float, str]:
    """Two-sided Wilcoxon signed-rank p-value of the paired differences ``d``, and how it was computed."""
    from scipy import stats

    d = np.asarray(d, dtype=float)
    if len(d) == 0:
        return math.nan, "no pairs"
    nonzero = d[d != 0]
    if len(nonzero) == 0:
        return 1.0, ALL_ZERO
    magnitudes = np.abs(nonzero)
    ties = len(np.unique(magnitudes)) < len(magnitudes)
    if not ties and len(nonzero) == len(d):
        method, label = "exact", EXACT
    elif len(d) <= 13:
        method, label = stats.PermutationMethod(), PERMUTATION
    else:
        method, label = "asymptotic", ASYMPTOTIC
    return float(stats.wilcoxon(d, zero_method="wilcox", method=method).pvalue), label


def paired(arm: Sequence[float], baseline: Sequence[float], lower_is_better: bool,
           confidence: float = CONFIDENCE) -> Paired:
    """Compare ``arm`` with ``baseline``, element ``i`` of each from the same seed."""
    a, b = np.asarray(arm, dtype=float), np.asarray(baseline, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in length: {a.shape} vs {b.shape}")
    d = a - b
    low, high = t_interval(d, confidence)
    p, test = wilcoxon(d)
    better = d < 0 if lower_is_better else d > 0
    worse = d > 0 if lower_is_better else d < 0
    return Paired(
        pairs=len(d), diff=float(d.mean()) if len(d) else math.nan, ci_low=low, ci_high=high, p=p, test=test,
        arm_better=int(better.sum()), baseline_better=int(worse.sum()), ties=int((d == 0).sum()),
    )


def holm(p: Sequence[float]) -> list[float]:
    """Holm (1979)'s step-down adjustment of the p-values of several tests against one baseline: the i-th smallest
    of the m finite p-values times (m - i + 1), made monotone and capped at 1; NaN stays NaN. A difference whose
    adjusted p is below 0.05 holds with a family-wise error rate of 5% over all the comparisons."""
    values = [float(v) if v is not None else math.nan for v in p]
    finite = sorted((v, i) for i, v in enumerate(values) if not math.isnan(v))
    adjusted, running = list(values), 0.0
    for rank, (value, i) in enumerate(finite):
        running = max(running, min(1.0, (len(finite) - rank) * value))
        adjusted[i] = running
    return adjusted


def by_seed(runs: pd.DataFrame, arm: str, seed: str, value: str) -> tuple[pd.DataFrame, int]:
    """The values as a seed x arm table (one column per arm, NaN where that arm has no value for that seed), and
    the number of (arm, seed) cells that held several values (averaged)."""
    rows = runs[[arm, seed, value]].dropna(subset=[value])
    counts = rows.groupby([arm, seed], sort=False)[value].size()
    table = rows.groupby([seed, arm], sort=False)[value].mean().unstack(arm)
    return table, int((counts > 1).sum())


def against(table: pd.DataFrame, baseline: str, lower_is_better: bool,
            confidence: float = CONFIDENCE) -> dict[str, Paired]:
    """Every arm (column of a seed x arm ``table``) against the ``baseline`` column, paired on the seeds that both
    have. The baseline itself is left out."""
    results = {}
    for arm in table.columns:
        if arm == baseline:
            continue
        both = table[[arm, baseline]].dropna()
        results[arm] = paired(both[arm].to_numpy(), both[baseline].to_numpy(), lower_is_better, confidence)
    return results
