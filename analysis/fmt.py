"""Text formatting of the report: numbers in percent, mean [95% CI], p-values, test verdicts, labels."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from analysis import plots


def num(v, metric: str = "") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return f"{v * 100:.1f}" if plots.is_percent(metric) else f"{v:.4g}"
    return str(v)


def ci(s, metric: str, std: bool = True) -> str:
    """'91.2 ± 1.1 [88.7, 93.7]': mean ± std over seeds and the 95% CI of the mean (just the mean with one seed)."""
    if s["n"] < 2 or math.isnan(s["ci95_low"]):
        return num(s["mean"], metric)
    spread = f" ± {num(s['std'], metric)}" if std else ""
    return f"{num(s['mean'], metric)}{spread} [{num(s['ci95_low'], metric)}, {num(s['ci95_high'], metric)}]"


def p_eq(p) -> str:
    """'= 0.011' or '< 0.001', for sentences."""
    t = pvalue(p)
    return t if t.startswith("<") else f"= {t}"


def pvalue(p) -> str:
    return "–" if p is None or math.isnan(p) else ("< 0.001" if p < 0.001 else f"{p:.3f}")


def short(metric: str) -> str:
    return plots.metric_label(metric).replace(" (%)", "")


HEADERS = {"acc": "test acc", "minority_acc": "test minority acc", "majority_acc": "test majority acc",
           "balanced_acc": "test balanced acc"}


def header(metric: str) -> str:
    """Short column headers; validation metrics keep their column name, marked (val)."""
    return HEADERS.get(metric, f"{metric} (val)" if metric.startswith("val_") else metric)


def value_str(v) -> str:
    if isinstance(v, str) and v == "":
        return '""'
    return f"{v:g}" if isinstance(v, (float, np.floating)) else str(v)


def config_label(row, cols) -> str:
    return ", ".join(f"{c}={value_str(row[c])}" for c in cols) or "(single configuration)"


def values(r: pd.DataFrame, col: str) -> str:
    if col not in r or r[col].isna().all():
        return "–"
    return ", ".join(value_str(v) for v in dict.fromkeys(r[col].dropna().tolist()))


def requested(r: pd.DataFrame) -> str:
    if "dataset_requested" not in r:
        return ""
    req, used = set(r["dataset_requested"].dropna().astype(str)), set(r["dataset"].dropna().astype(str))
    return f" (requested: {', '.join(sorted(req))})" if req and req != used else ""


def ratio(counts, mino) -> str:
    mi = [counts[k] for k in mino if k < len(counts)]
    ma = [c for k, c in enumerate(counts) if k not in mino]
    if not mi or not ma:
        return "–"
    return f"{np.mean(mi):.0f} : {np.mean(ma):.0f} (1 : {np.mean(ma) / max(np.mean(mi), 1):.1f})"


def diff(r, metric: str) -> str:
    k = 100 if plots.is_percent(metric) else 1
    unit = " pp" if k == 100 else ""
    if r["n"] < 2 or math.isnan(r["diff_ci95_low"]):
        return "–" if math.isnan(r["diff_mean"]) else f"{r['diff_mean'] * k:+.2f}{unit}"
    return f"{r['diff_mean'] * k:+.2f}{unit} [{r['diff_ci95_low'] * k:+.2f}, {r['diff_ci95_high'] * k:+.2f}]"


def paired_text(r, metric: str, noise: str) -> str:
    """'+1.06 pp [+0.58, +1.53] over 3 common seed(s), p = 0.011 — significant at 5%.'"""
    text = f"{diff(r, metric)} over {r['n']} common seed(s)"
    if r["n"] < 2:
        return text + " — undecided: a paired test needs at least 2 common seeds."
    text += f", p {p_eq(r['p_value'])}"
    return text + (f" — **within seed noise**: {noise}." if r["within_noise"] else " — significant at 5%.")


def duration(seconds: float) -> str:
    if math.isnan(seconds):
        return "–"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def tag(s: str) -> str:
    return "_" + "".join(ch if ch.isalnum() else "_" for ch in s) if s else ""
