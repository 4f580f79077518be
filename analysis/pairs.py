"""The `digit_pairs` study table: test accuracy of each architecture over its rounds (seeds).

    from analysis import load_trials
    from analysis.pairs import pairs_table, pairs_display
    table = pairs_table(load_trials("results/digit_pairs-paper-..."))   # numbers, fractions 0-1
    print(pairs_display(table))                                           # percent text, for reports

Each trial is one architecture (`group`) in one round (`seed`: new pairs, new initialisation);
its test accuracy is `acc` at its final epoch (the study's protocol: a fixed number of epochs).
"""
from __future__ import annotations

import pandas as pd

from analysis import stats

COLUMNS = ["architecture", "model", "num_params", "rounds", "mean", "sd", "ci95_low", "ci95_high"]


def pairs_table(trials: pd.DataFrame, metric: str = "acc", experiment: str = "digit_pairs") -> pd.DataFrame:
    """One row per architecture, in the order the study ran them: mean, sample sd (ddof 1), number of
    finished rounds and Student-t 95% CI of `metric` over its rounds. Failed or unfinished trials are left out."""
    t = trials
    if "experiment" in t:
        t = t[t["experiment"].astype(str) == experiment]
    if "status" in t:
        t = t[t["status"].astype(str) == "TERMINATED"]
    if "trial_index" in t:
        t = t.sort_values("trial_index", kind="stable")
    rows = []
    for arch, grp in t.groupby(t["group"].astype(str), sort=False):
        s = stats.summarize(grp[metric])
        rows.append({
            "architecture": arch,
            "model": ", ".join(dict.fromkeys(grp["model"].astype(str))) if "model" in grp else "",
            "num_params": int(grp["num_params"].iloc[0]) if "num_params" in grp and grp["num_params"].notna().any() else None,
            "rounds": s["n"], "mean": s["mean"], "sd": s["std"], "ci95_low": s["ci95_low"], "ci95_high": s["ci95_high"],
        })
    return pd.DataFrame(rows, columns=COLUMNS)


def pairs_display(table: pd.DataFrame) -> pd.DataFrame:
    """The table as text in percent: 'test acc (%)' = mean ± sd, '95% CI' = [low, high] ('–' with one round)."""
    def pct(v):
        return "–" if pd.isna(v) else f"{100 * v:.1f}"

    return pd.DataFrame({
        "architecture": table["architecture"],
        "parameters": [("–" if pd.isna(n) else f"{int(n):,}") for n in table["num_params"]],
        "rounds": table["rounds"],
        "test acc (%)": [f"{pct(m)} ± {pct(s)}" for m, s in zip(table["mean"], table["sd"])],
        "95% CI": [("–" if pd.isna(lo) else f"[{pct(lo)}, {pct(hi)}]") for lo, hi in zip(table["ci95_low"], table["ci95_high"])],
    })
