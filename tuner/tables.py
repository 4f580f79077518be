"""`table:PATH` with `label=COLUMN`: a .parquet or .csv table -> standardised feature vectors.

Every other column is a feature: numeric ones as they are, categorical ones one-hot encoded.
Rows with a missing label are dropped; rows with a missing feature are dropped (`impute=drop`) or
filled with the training split's median (numbers) or most common value (categories). The test
split is stratified and seeded (`tuner.owndata.stratified_split`); imputation values and the
standardisation (mean 0, std 1) come from the training split only.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from tuner.images import Images
from tuner.errors import ConfigError
from tuner.images import note, stratified_split

SUFFIXES = (".csv", ".parquet")


def read(path: Path) -> pd.DataFrame:
    if path.suffix.lower() not in SUFFIXES:
        raise ConfigError(f"table:{path}: expected a .parquet or .csv file")
    try:
        return pd.read_parquet(path) if path.suffix.lower() == ".parquet" else pd.read_csv(path)
    except Exception as e:  # noqa: BLE001  pandas/pyarrow raise many kinds for a malformed file
        raise ConfigError(f"table:{path}: could not read it ({type(e).__name__}: {str(e).splitlines()[0][:160]})") from None


def _listed(items, most: int = 10) -> str:
    items = [str(i) for i in items]
    return ", ".join(items[:most]) + (f", ... ({len(items)} in all)" if len(items) > most else "")


def labels(column: pd.Series) -> tuple[np.ndarray, tuple[str, ...]]:
    """Label values -> class indices; class names in sorted order (numbers by value, 2 before 10)."""
    values = column.to_numpy()
    if pd.api.types.is_float_dtype(column) and np.all(np.mod(values, 1) == 0):
        values = values.astype(np.int64)  # 0.0/1.0 labels (a CSV column that had a gap) name classes 0 and 1
    uniq = sorted(set(values.tolist()), key=lambda v: (isinstance(v, str), v))
    index = {v: i for i, v in enumerate(uniq)}
    return np.asarray([index[v] for v in values.tolist()], dtype=np.int64), tuple(str(v) for v in uniq)


def load(name: str, path: Path, opts: dict) -> Images:
    df = read(path)
    label = opts["label"]
    if not label:
        raise ConfigError(f"{name} needs label=COLUMN (--set label=COLUMN): the columns are {_listed(df.columns, 30)}")
    if label not in df.columns:
        raise ConfigError(f"{name}: no column {label!r} for label=: the columns are {_listed(df.columns, 30)}")
    features = [c for c in df.columns if c != label]
    if not features:
        raise ConfigError(f"{name}: no feature column besides the label {label!r}")
    no_label = df[label].isna()
    if no_label.any():
        warnings.warn(f"{name}: dropped {int(no_label.sum())} row(s) without a label (rows {_listed(df.index[no_label])}, "
                      "0-based, header excluded)", stacklevel=3)
        df = df[~no_label]
    gaps = df[features].isna()
    if gaps.any(axis=None) and opts["impute"] == "drop":
        rows = gaps.any(axis=1)
        warnings.warn(f"{name}: dropped {int(rows.sum())} of {len(df)} row(s) with missing values (rows "
                      f"{_listed(df.index[rows])}, 0-based, header excluded; in columns {_listed(gaps.columns[gaps.any()])}); "
                      "set impute=median to keep them", stacklevel=3)
        df = df[~rows]
    if df.empty:
        raise ConfigError(f"{name}: no row left after dropping those with missing values; set impute=median "
                          "or leave out the columns that are mostly empty")
    y, classes = labels(df[label])
    if len(classes) < 2:
        raise ConfigError(f"{name}: label column {label!r} has {len(classes)} distinct value(s): need at least 2 classes")
    tr, te = stratified_split(y, opts["test_fraction"], opts["data_seed"])
    x = df[features].reset_index(drop=True)
    categorical = [c for c in features if not (pd.api.types.is_numeric_dtype(x[c]) or pd.api.types.is_bool_dtype(x[c]))]
    numeric = [c for c in features if c not in categorical]
    if opts["impute"] == "median" and gaps.any(axis=None):
        filled = {c: x.loc[tr, c].median() for c in numeric} | {c: x.loc[tr, c].mode().iloc[0] for c in categorical}
        note(f"{name}: imputed {int(x.isna().any(axis=1).sum())} row(s) with missing values: the training split's "
             "median (numbers) or most common value (categories)")
        x = x.fillna(filled)
    x[numeric] = x[numeric].astype(np.float64)
    if categorical:
        note(f"{name}: one-hot encoded categorical columns: "
             + ", ".join(f"{c} ({x[c].nunique()} values)" for c in categorical))
        x = pd.get_dummies(x, columns=categorical, prefix_sep="=", dtype=np.float64)
    values = x.to_numpy(dtype=np.float64)
    mean, std = values[tr].mean(0), values[tr].std(0)
    std[std == 0] = 1.0  # a constant column carries no information; leave it at 0 rather than divide by 0
    z = ((values - mean) / std).astype(np.float32)
    info = {"source": str(path.resolve()), "found_counts": np.bincount(y[tr], minlength=len(classes)).tolist(),
            "test_counts": np.bincount(y[te], minlength=len(classes)).tolist(), "features": list(x.columns),
            "test_split": f"stratified test_fraction={opts['test_fraction']:g}, data_seed={opts['data_seed']}",
            "feature_mean": mean.tolist(), "feature_std": std.tolist()}
    width = z.shape[1]
    return Images(name=name, train_x=z[tr], train_y=y[tr], test_x=z[te], test_y=y[te], mean=(0.0,) * width,
                  std=(1.0,) * width, classes=classes, kind="table", info=info)
