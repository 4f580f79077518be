"""Select, then re-run: `--rerun-top K` takes the K best configurations of a finished run by its
validation metric (mean over the run's seeds of each trial's best epoch) and re-runs each to the end
over `--seeds`, ASHA off, as a new run whose trials record `rerun_of` (the first run's folder).

    python -m tuner.search lstm_best --budget search --rerun-top 3 --seeds 0,1,2,3,4   # search, then re-run
    python -m tuner.search lstm_best --rerun-top 3 --from-run RUN_DIR --seeds 0,1,2,3,4  # a finished run
"""
from __future__ import annotations

import argparse
from pathlib import Path

from tuner.errors import ConfigError
from tuner.plan import Plan

# recorded per trial, not settings of the configuration that won
NOT_CHOSEN = {"seed", "data_seed", "experiment", "budget", "epochs", "dataset_requested", "dataset_fallback", "group",
              "objectives", "rerun_of", "task"}


def top_configs(run_dir: str, metric: str, mode: str, k: int, experiment: str) -> list[tuple[dict, float, int]]:
    """[(settings, mean best validation metric, seeds)] of the k best configurations, best first.
    A configuration is the trial's settings less its seed; trials that failed are left out."""
    from analysis import compare, export

    if not Path(run_dir).expanduser().is_dir() and "://" not in str(run_dir):
        raise ConfigError(f"--from-run {run_dir!r} does not exist: pass the folder of a finished run")
    trials, _ = export.build(run_dir, metric, mode)
    ran = sorted(set(trials["experiment"].dropna().astype(str))) if "experiment" in trials else []
    if ran and ran != [experiment]:
        raise ConfigError(f"--from-run {run_dir}: it ran {', '.join(ran)}, not {experiment}: name the same experiment")
    done = compare.completed(trials)
    score = f"best_{metric}"
    if done.empty or score not in done:
        raise ConfigError(f"--from-run {run_dir}: no finished trial reported {metric!r}: nothing to re-run")
    cols = [c for c in trials.attrs.get("config_columns", []) if c in done and c not in NOT_CHOSEN]
    keys = done[cols].astype(object).map(repr).agg(" | ".join, axis=1) if cols else done.index.map(lambda _: "all")
    ranked = []
    for _, grp in done.groupby(keys, sort=False):
        # a config key the trial also reports (precision, ...) has the column config_<key>
        settings = {c.removeprefix("config_"): _plain(grp.iloc[0][c]) for c in cols if not _missing(grp.iloc[0][c])}
        ranked.append((settings, float(grp[score].mean()), len(grp)))
    ranked.sort(key=lambda r: r[1], reverse=mode == "max")
    return ranked[:k]


def _missing(v) -> bool:
    try:
        return v is None or v != v  # NaN
    except (TypeError, ValueError):  # lists, arrays
        return False


def _plain(v):
    """numpy scalars and arrays (Parquet lists) -> Python values, as a config holds them."""
    if hasattr(v, "tolist"):
        return v.tolist()
    return v


def rerun_plan(plan: Plan, args: argparse.Namespace, from_run: str) -> Plan:
    """The plan of the re-run: the first run's experiment and options, its k best configurations as
    arms (group top1, top2, ...) crossed with the seeds, every trial to the end."""
    if args.rerun_top < 1:
        raise ConfigError(f"--rerun-top {args.rerun_top}: must be an integer >= 1")
    top = top_configs(from_run, plan.metric, plan.mode, args.rerun_top, plan.experiment.name)
    plan.arms = tuple({**settings, "group": f"top{i}"} for i, (settings, _, _) in enumerate(top, 1))
    plan.space, plan.searcher, plan.num_samples, plan.asha, plan.objectives = {}, "grid", 1, False, ()
    plan.fixed["rerun_of"] = str(from_run)
    plan.notes.append(f"re-run of {from_run}: its {len(top)} best configurations by {plan.metric} over seeds "
                      f"{','.join(map(str, plan.seeds))}, every trial to the end (ASHA off)")
    for i, (settings, value, n) in enumerate(top, 1):
        shown = ", ".join(f"{k}={v}" for k, v in settings.items())
        plan.notes.append(f"  top{i}: {plan.metric} {value:.4f} (mean of {n}): {shown}")
    return plan


def default_name(from_run: str, k: int) -> str:
    return f"{Path(str(from_run).rstrip('/')).name}-top{k}"
