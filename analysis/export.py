"""Export Ray Tune run dirs to two Parquet files: trials.parquet and epochs.parquet.

    python -m analysis.export RUN_DIR [RUN_DIR ...] --out DIR [--metric val_balanced_acc] [--mode max]

Several run dirs are merged into one table each; the `run` column says which run a row is from.
The files are written atomically (temp file in the same dir, then os.replace), so a reader never
sees half a file, even when an export runs while a search is still writing.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import pandas as pd

from analysis import dtypes, frames
from analysis.rundir import RunFiles, fetch_remote, read_run

TRIALS_FILE = "trials.parquet"
EPOCHS_FILE = "epochs.parquet"


def read_runs(run_dirs) -> list[RunFiles]:
    paths = [run_dirs] if isinstance(run_dirs, (str, os.PathLike)) else list(run_dirs)
    runs = [read_run(fetch_remote(str(p)) if "://" in str(p) else p) for p in paths]
    # Two runs with the same dir name (copied from two clusters): tell them apart by their parent dir.
    names = [r.name for r in runs]
    for r in runs:
        if names.count(r.name) > 1:
            r.name = f"{r.path.parent.name}/{r.path.name}"
    return runs


def build(run_dirs, metric: str | None = None, mode: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(trials, epochs) DataFrames of one or several run dirs, without writing anything."""
    runs = read_runs(run_dirs)
    return frames.trials_table(runs, metric, mode), frames.epochs_table(runs)


def write_parquet(df: pd.DataFrame, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        import pyarrow.parquet as pq

        pq.write_table(dtypes.to_arrow(df), tmp)  # lists as native Parquet list columns
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def export(run_dirs, out, metric: str | None = None, mode: str | None = None) -> tuple[Path, Path]:
    trials, epochs = build(run_dirs, metric, mode)
    return write_tables(trials, epochs, out)


def write_tables(trials: pd.DataFrame, epochs: pd.DataFrame, out) -> tuple[Path, Path]:
    out = Path(out)
    return write_parquet(trials, out / TRIALS_FILE), write_parquet(epochs, out / EPOCHS_FILE)


def main(argv=None, prog: str = "python -m analysis.export") -> int:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    ap.add_argument("run_dirs", nargs="+", help="Ray Tune run dir(s): STORAGE_PATH/NAME, local or s3://...")
    ap.add_argument("--out", type=Path, default=None, help="folder for trials.parquet and epochs.parquet "
                    "(default: the run dir, when there is one local run dir)")
    ap.add_argument("--metric", default=None, help="selection metric for the best_ columns (default: the run's "
                    "validation metric, else val_balanced_acc)")
    ap.add_argument("--mode", choices=("max", "min"), default=None, help="default: from the metric name")
    args = ap.parse_args(argv)
    if args.out is None:
        if len(args.run_dirs) != 1 or "://" in args.run_dirs[0]:
            print("error: --out DIR is needed for several run dirs or a remote one", file=sys.stderr)
            return 2
        args.out = Path(args.run_dirs[0])
    try:
        trials, epochs = build(args.run_dirs, args.metric, args.mode)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    t, e = write_tables(trials, epochs, args.out)
    counts = trials["status"].value_counts()
    print(f"{len(trials)} trials ({', '.join(f'{n} {s}' for s, n in counts.items() if n)}), {len(epochs)} epochs"
          f" -> {t}, {e}")
    return 0


if __name__ == "__main__":
    from tuner.errors import one_line_warnings

    one_line_warnings()
    sys.exit(main())
