"""Analysis of imbalance-tune searches: Parquet export, comparisons with statistics, plots, reports.

    from analysis import load_trials, load_epochs
    trials = load_trials("results/my_search")          # a run dir: exported on the fly
    trials = load_trials("results/my_search/report")   # or a folder / file of exported Parquet
    trials = load_trials("s3://bucket/runs/my_search")  # a run dir on S3 (pyarrow.fs)

Modules: rundir (reads Ray's files), frames + dtypes (the tables), export (CLI), stats,
compare, importance, plots, fmt + render (report text and HTML), report (CLI).
The table columns are in docs/results_schema.md.
"""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["load_trials", "load_epochs"]


def load_trials(path, metric: str | None = None, mode: str | None = None):
    """Trials table of a run dir, several run dirs, an export folder or a trials.parquet file."""
    return _load(path, "trials", metric, mode)


def load_epochs(path):
    """Epochs table (learning curves) of a run dir, several run dirs, an export folder or an epochs.parquet file."""
    return _load(path, "epochs", None, None)


def _load(path, which: str, metric, mode):
    import pandas as pd

    from analysis import dtypes, export
    from analysis.rundir import is_run_dir

    items = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    remote = [str(p) for p in items if "://" in str(p)]  # run dirs on S3 & co: read through pyarrow.fs
    paths = [Path(p) for p in items if "://" not in str(p)]
    run_dirs = [p for p in paths if is_run_dir(p)] + remote
    parquet = [_parquet_file(p, which) for p in paths if p not in run_dirs]
    frames = []
    if run_dirs:
        trials, epochs = export.build(run_dirs, metric, mode)
        frames.append(trials if which == "trials" else epochs)
    frames += [dtypes.from_parquet(pd.read_parquet(p)) for p in parquet]
    if len(frames) == 1:
        return frames[0]
    out = dtypes.concat(frames)
    out.attrs.update(frames[0].attrs)
    return out


def _parquet_file(p: Path, which: str) -> Path:
    if p.is_file():
        return p
    f = p / f"{which}.parquet"
    if f.exists():
        return f
    raise FileNotFoundError(f"{p} is neither a Ray Tune run dir nor a folder with {which}.parquet")
