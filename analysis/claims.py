"""The original studies' claims, tested on the results: one verdict per claim.

    from analysis.claims import evaluate, claims_for, claims_table
    r = evaluate(claim, trials)            # {"verdict": "supported" | "contradicted" | "within noise" | "not enough data", ...}
    claims_table(trials, final, claims)    # one row per claim: best-validation epoch and final epoch side by side

A claim (`search_spaces.registry.Claim`) is declared next to its study. `evaluate` reads a results
table with `group`, `seed` and the claim's metric (the trials of `analysis.load_trials`, with the
metric at the epoch to judge: `analysis.studies.selected` for the best-validation epoch, the raw
columns for the final epoch) and tests the claim with the paired t-test over seeds of
`analysis.compare.paired_test` / `analysis.stats.paired` (difference, Student-t 95% CI, p). A
claim with several steps (an ordering, or several arms that should all fail) is one family: its p
are Benjamini-Hochberg adjusted (`compare.with_adjusted_p`) and the verdict is decided on them.

Verdicts (alpha 0.05):
- "order" (a > b > ...): supported when every step is significantly in the claimed direction,
  contradicted when any step is significantly reversed, else within noise.
- "no_gain" (none of the arms beats the baseline): contradicted when an arm is significantly better;
  supported when every arm's 95% CI of the gain stays below `margin` (1 point by default), else
  within noise.
- "best_near" (the best value of a sweep is about X): supported when the arm with the best mean sits
  within `tolerance` of X; contradicted when it does not and the arm at X is significantly worse
  than it; else within noise.
- "not enough data": an arm or metric the claim needs is missing, or fewer than 2 seeds pair up.
"""
from __future__ import annotations

import math

import pandas as pd

from analysis import compare, stats

SUPPORTED, CONTRADICTED, NOISE, NO_DATA = "supported", "contradicted", "within noise", "not enough data"
ALPHA = 0.05


def claims_for(experiment: str) -> tuple:
    """The claims declared with a registered experiment (none for an unknown name)."""
    import search_spaces

    exp = search_spaces.EXPERIMENTS.get(experiment)
    return exp.claims if exp is not None else ()


def _groups(t: pd.DataFrame) -> set[str]:
    return set(t["group"].astype(str)) if "group" in t else set()


def _step(t: pd.DataFrame, hi: str, lo: str, metric: str) -> dict:
    """Paired test of group `hi` against group `lo` (difference hi - lo) over the seeds both have."""
    r = compare.paired_test(t, lambda d: d["group"].astype(str) == lo, lambda d: d["group"].astype(str) == hi, metric)
    return {"hi": hi, "lo": lo, **r.to_dict()}


def _metric_step(t: pd.DataFrame, group: str, hi: str, lo: str) -> dict:
    """Paired test of metric `hi` against metric `lo` within one group's trials, matched by seed."""
    g = t[t["group"].astype(str) == group]
    a, b = g.groupby("seed", observed=True)[lo].mean(), g.groupby("seed", observed=True)[hi].mean()
    return {"hi": hi, "lo": lo, **stats.paired(a.to_numpy(), b.to_numpy(), ALPHA)}


def _result(claim, verdict: str, steps: pd.DataFrame, reason: str = "") -> dict:
    return {"claim": claim.text, "kind": claim.kind, "metric": claim.metric, "verdict": verdict,
            "seeds": int(steps["n"].min()) if len(steps) else 0, "steps": steps, "reason": reason}


def evaluate(claim, trials: pd.DataFrame, alpha: float = ALPHA) -> dict:
    """{"claim", "kind", "metric", "verdict", "seeds" (the fewest paired seeds of a step), "steps" (one
    row per paired test: hi, lo, n, diff_mean, diff_ci95_low/high, p_value, p_adjusted), "reason"}."""
    empty = pd.DataFrame(columns=["hi", "lo", "n", "diff_mean", "diff_ci95_low", "diff_ci95_high", "p_value",
                                  "p_adjusted"])
    groups = _groups(trials)
    if claim.within is not None:
        need_groups, need_cols = [claim.within], list(claim.order)
    else:
        need_groups = [*claim.order, *([claim.baseline] if claim.baseline else [])]
        need_cols = [claim.metric, *([claim.param] if claim.param else [])]
    missing = [g for g in need_groups if g not in groups] + [c for c in need_cols if c not in trials]
    if missing or "seed" not in trials:
        return _result(claim, NO_DATA, empty, "missing: " + ", ".join(missing or ["seed"]))

    if claim.kind == "order":
        pairs = list(zip(claim.order, claim.order[1:]))
        rows = [_metric_step(trials, claim.within, hi, lo) if claim.within is not None else
                _step(trials, hi, lo, claim.metric) for hi, lo in pairs]
    elif claim.kind == "no_gain":
        rows = [_step(trials, g, claim.baseline, claim.metric) for g in claim.order]
    elif claim.kind == "best_near":
        sub = trials[trials["group"].astype(str).isin(claim.order)]
        means = sub.groupby(sub["group"].astype(str), observed=True)[claim.metric].mean()
        best = str(means.idxmax())
        value = {g: float(v) for g, v in sub.groupby(sub["group"].astype(str), observed=True)[claim.param].first().items()}
        at = [g for g in claim.order if math.isclose(value[g], claim.near)]
        if not at:
            return _result(claim, NO_DATA, empty, f"no arm at {claim.param}={claim.near:g}")
        rows = [_step(trials, best, at[0], claim.metric)]
    else:
        raise ValueError(f"unknown claim kind {claim.kind!r}: order, no_gain or best_near")
    steps = compare.with_adjusted_p(pd.DataFrame(rows), alpha)
    if (steps["n"] < 2).any():
        return _result(claim, NO_DATA, steps, "fewer than 2 seeds pair up")
    significant = steps["p_adjusted"] < alpha
    up, down = significant & (steps["diff_mean"] > 0), significant & (steps["diff_mean"] < 0)
    if claim.kind == "order":
        verdict = CONTRADICTED if down.any() else SUPPORTED if up.all() else NOISE
    elif claim.kind == "no_gain":
        verdict = CONTRADICTED if up.any() else SUPPORTED if (steps["diff_ci95_high"] < claim.margin).all() else NOISE
    else:
        if abs(value[best] - claim.near) <= claim.tolerance:
            verdict = SUPPORTED
        else:
            verdict = CONTRADICTED if up.any() else NOISE
        steps = steps.assign(best=best)
    return _result(claim, verdict, steps)


def _pp(v: float) -> str:
    return f"{v * 100:+.1f}"


def difference_text(steps: pd.DataFrame) -> str:
    """'+1.2 pp [-0.4, +2.8]' per step, steps named when there are several ('irm − unbalanced: ...')."""
    parts = []
    for _, s in steps.iterrows():
        if s["n"] < 1 or pd.isna(s["diff_mean"]):
            text = "–"
        else:
            text = f"{_pp(s['diff_mean'])} pp"
            if s["n"] >= 2:
                text += f" [{_pp(s['diff_ci95_low'])}, {_pp(s['diff_ci95_high'])}]"
        parts.append(f"{s['hi']} − {s['lo']}: {text}")
    return "; ".join(parts) or "–"


def compared_text(claim) -> str:
    if claim.kind == "no_gain":
        return f"{', '.join(claim.order)} vs {claim.baseline}"
    if claim.kind == "best_near":
        return f"the best of {claim.order[0]} … {claim.order[-1]} vs {claim.param}={claim.near:g}"
    return (f"{claim.within}: " if claim.within else "") + " > ".join(claim.order)


def claims_table(best: pd.DataFrame, final: pd.DataFrame | None, claims) -> pd.DataFrame:
    """One row per claim: what is compared, on which metric, the paired difference(s) with the 95% CI
    and the verdict at the best-validation epoch (`best`) and at the final epoch (`final`)."""
    from analysis import plots

    rows = []
    for claim in claims:
        r = evaluate(claim, best)
        row = {"claim (the original's)": claim.text, "compared": compared_text(claim),
               "metric": "the metrics named" if claim.within else plots.metric_label(claim.metric).replace(" (%)", ""),
               "seeds paired": r["seeds"],
               "difference, best-validation epoch [95% CI]": difference_text(r["steps"]) if len(r["steps"]) else "–",
               "verdict": f"**{r['verdict']}**" + (f" ({r['reason']})" if r["reason"] else "")}
        if final is not None:
            f = evaluate(claim, final)
            row["difference, final epoch [95% CI]"] = difference_text(f["steps"]) if len(f["steps"]) else "–"
            row["verdict, final epoch"] = f["verdict"]
        rows.append(row)
    return pd.DataFrame(rows)


NOTE = ("Each claim of the original study, tested on these runs with a paired t-test over the seeds the arms "
        "share (difference in percentage points, Student-t 95% CI). A claim with several steps (an ordering, or "
        "several arms) is one family: its p-values are Benjamini-Hochberg adjusted and the verdict is decided on "
        "them (alpha 0.05). **supported**: every step significantly in the claimed direction (\"no gain\" claims: "
        "every arm's 95% CI of the gain below +1 point; \"best about X\": the best arm within the tolerance of X); "
        "**contradicted**: a step significantly the other way; **within noise**: neither; **not enough data**: an "
        "arm is missing or fewer than 2 seeds pair up. The verdict is given at each trial's best-validation epoch "
        "(the tables above) and at its final epoch (what the original reported).")
