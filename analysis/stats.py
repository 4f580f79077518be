"""Seed statistics: mean, sample std, n and the Student-t 95% confidence interval; the paired t-test.

Seeds are few (3-5), so the interval uses t_{0.975, n-1}, not 1.96: with 3 seeds the half-width is
2.48 std, with 5 seeds 1.24 std. With fewer than 2 values std and the interval are NaN.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats as _st

STATS = ("mean", "std", "n", "ci95_low", "ci95_high")


def t_quantile(n: int) -> float:
    return float(_st.t.ppf(0.975, n - 1)) if n >= 2 else math.nan


def summarize(values) -> dict:
    """{mean, std, n, ci95_low, ci95_high} of the non-missing values (std with ddof=1)."""
    v = pd.to_numeric(pd.Series(values, dtype="float64"), errors="coerce").dropna().to_numpy()
    n = len(v)
    mean = float(v.mean()) if n else math.nan
    std = float(v.std(ddof=1)) if n >= 2 else math.nan
    half = t_quantile(n) * std / math.sqrt(n) if n >= 2 else math.nan
    return {"mean": mean, "std": std, "n": n, "ci95_low": mean - half, "ci95_high": mean + half}


def adjust_bh(p_values) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values of one family of tests (scipy's false_discovery_control):
    when a sweep compares many values with one baseline, some raw p < 0.05 come by chance; the
    adjusted p keep the expected share of false discoveries at alpha. NaN p-values (fewer than 2
    seeds) stay NaN and do not count in the family."""
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, math.nan)
    ok = ~np.isnan(p)
    if ok.any():
        out[ok] = _st.false_discovery_control(p[ok], method="bh")
    return out


def paired(baseline, candidate, alpha: float = 0.05) -> dict:
    """Paired t-test of candidate - baseline over matched seeds (equal-length sequences, NaN pairs dropped).

    within_noise is True when the 95% CI of the mean difference contains 0 (p >= alpha), or when
    there are fewer than 2 pairs, so no claim of a difference can be made.
    """
    a = np.asarray(baseline, dtype=float)
    b = np.asarray(candidate, dtype=float)
    keep = ~(np.isnan(a) | np.isnan(b))
    a, b = a[keep], b[keep]
    d = summarize(b - a)
    n = d["n"]
    if n < 2:
        t, p = math.nan, math.nan
    elif d["std"] == 0 or np.allclose(b - a, (b - a)[0]):
        # Identical differences: scipy returns NaN; the difference is exactly known (0 -> no difference).
        t, p = (0.0, 1.0) if d["mean"] == 0 else (math.copysign(math.inf, d["mean"]), 0.0)
    else:
        res = _st.ttest_rel(b, a)
        t, p = float(res.statistic), float(res.pvalue)
    return {
        "n": n,
        "baseline_mean": float(a.mean()) if n else math.nan,
        "candidate_mean": float(b.mean()) if n else math.nan,
        "diff_mean": d["mean"],
        "diff_std": d["std"],
        "diff_ci95_low": d["ci95_low"],
        "diff_ci95_high": d["ci95_high"],
        "t": t,
        "p_value": p,
        "within_noise": bool(not (p < alpha)),  # NaN p (too few seeds) counts as within noise
    }
