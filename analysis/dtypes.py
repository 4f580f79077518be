"""Python values from JSON -> one pandas column with a real dtype (never object).

Rules (documented in docs/results_schema.md): bools -> bool (nullable `boolean` when some are
missing); ints -> int64 (nullable `Int64` when some are missing); numbers -> float64; text ->
categorical; lists/dicts -> their JSON text, categorical; a column with no value at all ->
float64 NaN; a column mixing text and numbers -> the text of each value, categorical.
"""
from __future__ import annotations

import json
import math

import pandas as pd


def is_missing(v) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))


def as_json(v):
    """Lists and dicts as compact JSON text (sorted keys, so equal configs give equal text)."""
    if isinstance(v, (list, tuple, dict)):
        return json.dumps(v, sort_keys=True, separators=(", ", ": "))
    return v


def column(values, name: str | None = None, index=None) -> pd.Series:
    values = [None if is_missing(v) else as_json(v) for v in values]
    present = [v for v in values if v is not None]
    missing = len(present) < len(values)
    if not present:
        return pd.Series([math.nan] * len(values), dtype="float64", name=name, index=index)
    kinds = {_kind(v) for v in present}
    if kinds == {"bool"}:
        return pd.Series(values, dtype="boolean" if missing else "bool", name=name, index=index)
    if kinds == {"int"}:
        return pd.Series(values, dtype="Int64" if missing else "int64", name=name, index=index)
    if kinds <= {"int", "float"}:
        return pd.Series([math.nan if v is None else float(v) for v in values], dtype="float64", name=name, index=index)
    text = [v if v is None or isinstance(v, str) else json.dumps(v) for v in values]
    return pd.Series(pd.Categorical(text), name=name, index=index)


def _kind(v) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    return "text"


def frame(records: list[dict], columns: list[str]) -> pd.DataFrame:
    """A DataFrame with the given column order, each column typed by `column`."""
    return pd.DataFrame({c: column([r.get(c) for r in records], c) for c in columns}, index=pd.RangeIndex(len(records)))


def concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """pd.concat that keeps real dtypes: categoricals are unioned, ints stay ints where possible."""
    frames = [f for f in frames if len(f.columns)]
    if len(frames) == 1:
        return frames[0].reset_index(drop=True)
    cols = list(dict.fromkeys(c for f in frames for c in f.columns))
    data = {}
    for c in cols:
        values = []
        for f in frames:
            values.extend(f[c].tolist() if c in f.columns else [None] * len(f))
        data[c] = column(values, c)
    return pd.DataFrame(data)
