"""Ray trial files -> the two tables: trials (one row per trial) and epochs (one row per reported epoch).

Column meanings are in docs/results_schema.md. A trial's row holds its config keys under their
own names, its final epoch's metrics under their own names, and the metrics of its best epoch
by the selection metric on validation under `best_<name>`.
"""
from __future__ import annotations

import math
from typing import Iterable

import pandas as pd

from analysis import dtypes
from analysis.rundir import STATUSES, RunFiles, TrialFiles

DEFAULT_METRIC = "val_balanced_acc"
# Reported by the trainable about the trial, not measured per epoch: kept once, never prefixed best_.
IDENTITY = ("experiment", "dataset", "seed", "group", "precision")  # in the config and reported
DESCRIPTION = ("train_counts", "classes", "found_counts", "test_counts", "num_params", "model_bytes", "remedies", "node_id", "stop_reason", "checkpoint_warning")
# Ray's bookkeeping fields: meaningless as metrics (done/should_checkpoint are always true/false at the end).
RAY_DROP = ("config", "done", "should_checkpoint", "trial_id", "iterations_since_restore", "time_since_restore")
RAY_KEEP = ("training_iteration", "time_total_s", "time_this_iter_s", "timestamp", "date", "hostname", "node_ip", "pid",
            "checkpoint_dir_name")
NOT_BEST = set(IDENTITY) | set(DESCRIPTION) | set(RAY_DROP) | {"date", "hostname", "node_ip", "pid", "timestamp"}
HEAD = ["run", "trial_id", "trial_index", "logdir", *IDENTITY, "status", "asha_stopped", "epochs_run", "error",
        "error_file", "stop_reason", "wall_time_s"]
TAIL = ["selection_metric", "selection_mode", "search_metric", "searcher", "run_path"]


def infer_mode(metric: str) -> str:
    """Losses, errors and times are minimised, everything else (accuracies, F1, rates of right answers) maximised."""
    return "min" if any(w in metric for w in ("loss", "error", "time", "_to_")) and not metric.endswith(("A_to_A", "I_to_I")) else "max"


def run_metric(run: RunFiles) -> str | None:
    """The metric the run's search selected on: Tune's, or a multi-objective search's first objective
    (its TuneConfig has none; every trial's config records `objectives`), as the search's summary ranks."""
    if run.search_metric:
        return run.search_metric
    objectives = next((t.config.get("objectives") for t in run.trials if t.config.get("objectives")), None)
    return str(objectives).split(",")[0] if objectives else None


def selection(runs: Iterable[RunFiles], metric: str | None = None, mode: str | None = None) -> tuple[str, str]:
    """The selection metric: the one passed, else the runs' own Tune metric when it is a validation metric, else val_balanced_acc."""
    runs = list(runs)
    if metric is None:
        theirs = {m for m in map(run_metric, runs) if m}
        metric = theirs.pop() if len(theirs) == 1 and next(iter(theirs)).startswith("val_") else DEFAULT_METRIC
    if mode is None:
        modes = {r.search_mode for r in runs if r.search_mode and r.search_metric == metric}
        mode = modes.pop() if len(modes) == 1 else infer_mode(metric)
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', not {mode!r}")
    return metric, mode


def trials_table(runs: list[RunFiles], metric: str | None = None, mode: str | None = None) -> pd.DataFrame:
    metric, mode = selection(runs, metric, mode)
    records, config_keys, final_keys, best_keys = [], {}, {}, {}
    for run in runs:
        for t in run.trials:
            rec = _trial_record(run, t, metric, mode)
            records.append(rec)
            config_keys.update(dict.fromkeys(rec.pop("_config_keys")))
            final_keys.update(dict.fromkeys(rec.pop("_final_keys")))
            best_keys.update(dict.fromkeys(rec.pop("_best_keys")))
    lists = [k for k in ("confusion", "val_confusion") if k in final_keys]
    middle = [k for k in [*config_keys, *final_keys, *DESCRIPTION, "best_epoch", *best_keys] if k not in HEAD and k not in lists]
    blobs = lists + [f"best_{k}" for k in lists if f"best_{k}" in best_keys]
    middle = [k for k in middle if k not in blobs]
    columns = list(dict.fromkeys(HEAD + middle + blobs + TAIL))
    df = dtypes.frame(records, columns)
    df["run"] = pd.Categorical(df["run"].astype(str), categories=list(dict.fromkeys(r.name for r in runs)))
    df["asha_stopped"] = df["asha_stopped"].astype(bool)
    # All statuses as categories, so value_counts and merged exports always list the same ones.
    seen = [s for s in df["status"].astype(str).unique() if s not in STATUSES]
    df["status"] = pd.Categorical(df["status"].astype(str), categories=[*STATUSES, *seen])
    df.attrs.update(selection_metric=metric, selection_mode=mode, config_columns=list(config_keys))
    return df


def _trial_record(run: RunFiles, t: TrialFiles, metric: str, mode: str) -> dict:
    rows = t.rows
    last = rows[-1] if rows else {}
    rec = {"run": run.name, "trial_id": t.trial_id, "trial_index": t.index, "logdir": t.logdir, "status": t.status,
           "error": t.error, "error_file": t.error_file}
    config_keys = []
    for k, v in t.config.items():
        # The trainable reports the dataset it actually used; the config has the one requested.
        name = "dataset_requested" if k == "dataset" else k if (k in IDENTITY or k not in last) else f"config_{k}"
        rec[name] = v
        config_keys.append(name)
    final_keys = [k for k in last if k not in RAY_DROP]
    for k in final_keys:
        rec[k] = last[k]
    for k in IDENTITY:
        if rec.get(k) is None and k != "dataset":
            rec[k] = t.config.get(k)
    if rec.get("dataset") is None:
        rec["dataset"] = t.config.get("dataset")
    epochs_run = last.get("epoch", len(rows)) if rows else 0
    planned = t.config.get("epochs")
    rec["epochs_run"] = epochs_run
    # A trial the trainable ended itself (stop_reason, e.g. a non-finite loss) was not stopped by the scheduler.
    # Nor was one that spent its budget in optimizer steps (max_steps) before its planned epochs.
    max_steps = t.config.get("max_steps")
    spent = bool(max_steps) and isinstance(last.get("steps"), (int, float)) and last["steps"] >= max_steps
    rec["asha_stopped"] = bool(t.status == "TERMINATED" and isinstance(planned, int) and epochs_run < planned
                               and not last.get("stop_reason") and not spent)
    rec["wall_time_s"] = last.get("time_total_s")
    best = best_row(rows, metric, mode)
    best_keys = []
    if best is not None:
        rec["best_epoch"] = best.get("epoch", rows.index(best) + 1)
        for k, v in best.items():
            if k not in NOT_BEST:
                rec[f"best_{k}"] = v
                best_keys.append(f"best_{k}")
    rec.update(selection_metric=metric, selection_mode=mode, search_metric=run.search_metric, searcher=run.searcher,
               run_path=str(run.path))
    rec.update(_config_keys=config_keys, _final_keys=final_keys, _best_keys=best_keys)
    return rec


def best_row(rows: list[dict], metric: str, mode: str) -> dict | None:
    """The earliest epoch with the best value of `metric` (None when no epoch reported it)."""
    scored = [(r[metric], i) for i, r in enumerate(rows) if isinstance(r.get(metric), (int, float)) and not math.isnan(r[metric])]
    if not scored:
        return None
    sign = -1 if mode == "max" else 1
    _, i = min((sign * v, i) for v, i in scored)
    return rows[i]


def epochs_table(runs: list[RunFiles]) -> pd.DataFrame:
    records, keys = [], {}
    for run in runs:
        for t in run.trials:
            for n, row in enumerate(t.rows, 1):
                rec = {"run": run.name, "trial_id": t.trial_id, "epoch": row.get("epoch", n)}
                rec.update((k, v) for k, v in row.items() if k not in RAY_DROP and k != "epoch")
                records.append(rec)
                keys.update(dict.fromkeys(rec))
    blobs = [k for k in ("confusion", "val_confusion") if k in keys]
    columns = ["run", "trial_id", "epoch"] + [k for k in keys if k not in ("run", "trial_id", "epoch") and k not in blobs] + blobs
    df = dtypes.frame(records, columns)
    df["run"] = pd.Categorical(df["run"].astype(str), categories=list(dict.fromkeys(r.name for r in runs)))
    return df
