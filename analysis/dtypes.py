"""Python values from JSON -> one pandas column with a real dtype (never object).

Rules (documented in docs/results_schema.md): bools -> bool (nullable `boolean` when some are
missing); ints -> int64 (nullable `Int64` when some are missing); numbers -> float64; text ->
categorical; lists/dicts -> their JSON text, categorical; a column with no value at all ->
float64 NaN; a column mixing text and numbers -> the text of each value, categorical.

In the Parquet files a column of lists is a native Parquet list column (`to_arrow`), which polars,
DuckDB and pyarrow read as lists; `from_parquet` turns it back into the JSON text of this module.
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


def _list_values(series: pd.Series) -> list | None:
    """The lists of a column of JSON list text (None for a missing value); None when it is not one."""
    if not isinstance(series.dtype, pd.CategoricalDtype):
        return None
    cats = series.cat.categories
    if not len(cats) or not all(isinstance(c, str) and c.startswith("[") for c in cats):
        return None
    parsed = {c: json.loads(c) for c in cats}
    return [None if is_missing(v) else parsed[v] for v in series]


def to_arrow(df: pd.DataFrame):
    """The table as Arrow, with every column of lists (confusion matrices, train counts, class
    lists) a native list column; a column whose lists Arrow cannot type (mixed kinds) stays text."""
    import pyarrow as pa

    table = pa.Table.from_pandas(df, preserve_index=False)
    for name in df.columns:
        values = _list_values(df[name])
        if values is None:
            continue
        try:
            arr = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            continue
        i = table.schema.get_field_index(name)
        table = table.set_column(i, pa.field(name, arr.type), arr)
    if df.attrs:  # as DataFrame.to_parquet keeps them: pd.read_parquet restores `attrs`
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), b"PANDAS_ATTRS": json.dumps(df.attrs)})
    return table


def from_parquet(df: pd.DataFrame) -> pd.DataFrame:
    """A table read back from Parquet: list columns (numpy arrays in pandas) -> JSON text, as `column` makes them."""
    import numpy as np

    for name in df.columns:
        if df[name].dtype == object and any(isinstance(v, (np.ndarray, list)) for v in df[name]):
            df[name] = column([_plain(v) for v in df[name]], name, df.index)
    return df


def _plain(v):
    import numpy as np

    if isinstance(v, np.ndarray):
        return [_plain(x) for x in v.tolist()]
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v
