"""Comparisons of remedies over the trials table, each with seed statistics.

Every table carries mean, std, n, ci95_low, ci95_high (Student t over the trials/seeds in a cell,
see analysis.stats). The functions take the DataFrame as given (filter it first, e.g. with
`completed(trials)`); a trial whose metric is missing is left out of that cell's n.
"""
from __future__ import annotations

import json
from typing import Callable, Iterable

import numpy as np
import pandas as pd

from analysis import stats

DEFAULT_METRICS = ("minority_acc", "majority_acc", "acc")
TEST_METRICS = ("acc", "minority_acc", "majority_acc", "balanced_acc")
SEED_COLUMNS = ("seed", "data_seed")
def _no_remedy() -> dict:
    """The "off" value of every setting that switches something on (the remedies' declarations in
    tuner.remedies, and the core's, e.g. weight_decay): the natural baseline of a paired test. A
    study's unremedied arm is its `unbalanced` group."""
    from tuner.remedies import params
    from tuner.settings import CORE

    return {k: p.off for k, p in {**CORE, **params()}.items() if p.is_switch} | {"group": "unbalanced"}


def _known_config() -> tuple:
    """Config keys of the contract, used when a hand-built table has no attrs["config_columns"]."""
    from tuner.remedies import params

    core = ("experiment", "dataset_requested", "model", "seed", "data_seed", "minority_classes", "minority_keep",
            "imbalance", "val_fraction", "epochs", "batch_size", "lr", "weight_decay", "optimizer")
    return core + tuple(params()) + ("group", "budget")


def __getattr__(name):  # derived on use, so a remedy registered later (an experiment file, a test) is included
    if name == "NO_REMEDY":
        return _no_remedy()
    if name == "KNOWN_CONFIG":
        return _known_config()
    raise AttributeError(name)


def completed(trials: pd.DataFrame, include_stopped: bool = True) -> pd.DataFrame:
    """Trials that finished (TERMINATED); ASHA-stopped ones too unless include_stopped=False."""
    keep = trials["status"].astype(str) == "TERMINATED"
    if not include_stopped and "asha_stopped" in trials:
        keep &= ~trials["asha_stopped"].astype(bool)
    return trials[keep]


def config_columns(trials: pd.DataFrame) -> list[str]:
    cols = trials.attrs.get("config_columns") or _known_config()
    return [c for c in cols if c in trials.columns]


def varying(trials: pd.DataFrame, columns: Iterable[str] | None = None, exclude=SEED_COLUMNS) -> list[str]:
    """The columns (config columns by default) that take more than one value, seeds excluded."""
    cols = config_columns(trials) if columns is None else list(columns)
    return [c for c in cols if c not in exclude and trials[c].astype(str).nunique(dropna=False) > 1]


def aliases(trials: pd.DataFrame, params: list[str]) -> dict[str, list[str]]:
    """{param: [later params that vary with it one-to-one]} (e.g. `model` set by `group`): one comparison, not two."""
    keys = {p: trials[p].astype(str) for p in params}
    out, taken = {}, set()
    for i, p in enumerate(params):
        if p in taken:
            continue
        if keys[p].nunique() == len(keys[p]):  # one value per trial (a continuous search): anything "matches" it
            out[p] = []
            continue
        out[p] = [q for q in params[i + 1:] if q not in taken
                  and keys[p].groupby(keys[q]).nunique().max() == 1 and keys[q].groupby(keys[p]).nunique().max() == 1]
        taken.update(out[p])
    return out


def baseline_value(trials: pd.DataFrame, param: str):
    """The no-remedy value of `param` when it was run, else its smallest (or first) value."""
    values = trials[param].dropna().unique()
    no_remedy = _no_remedy()
    if param in no_remedy and no_remedy[param] in set(values):
        return no_remedy[param]
    return sorted(values)[0] if len(values) else None


def value_order(trials: pd.DataFrame, col: str) -> list:
    """Numbers ascending; labels (groups, models) baseline first, then in the order the trials ran."""
    values = trials[col].dropna()
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return sorted(values.unique())
    if "trial_index" in trials and trials["trial_index"].notna().all():
        values = values[trials.loc[values.index, "trial_index"].sort_values(kind="stable").index]
    order = list(dict.fromkeys(values.tolist()))
    base = _no_remedy().get(col)
    return ([base] if base in order else []) + [v for v in order if v != base]


def summarize_by(trials: pd.DataFrame, keys: list[str], metrics: Iterable[str]) -> pd.DataFrame:
    """Long table: keys..., metric, mean, std, n, ci95_low, ci95_high."""
    rows = []
    for key, grp in trials.groupby(keys, observed=True, sort=True, dropna=True):
        key = key if isinstance(key, tuple) else (key,)
        for m in metrics:
            if m in grp:
                rows.append({**dict(zip(keys, key)), "metric": m, **stats.summarize(grp[m])})
    return pd.DataFrame(rows, columns=[*keys, "metric", *stats.STATS]).astype({"n": "int64"})


def sweep(trials: pd.DataFrame, param: str, metrics: Iterable[str] = DEFAULT_METRICS, by=None) -> pd.DataFrame:
    """Per value of a remedy parameter (and of `by`): mean, std, n, 95% CI of each metric over the trials (seeds)."""
    by = [] if by is None else [by] if isinstance(by, str) else list(by)
    return summarize_by(trials, [*by, param], list(metrics))


def _class_columns(trials: pd.DataFrame, prefix: str) -> dict[int, str]:
    cols = {int(c[len(prefix):]): c for c in trials.columns if c.startswith(prefix) and c[len(prefix):].isdigit()}
    return dict(sorted(cols.items()))


def minority_classes(trials: pd.DataFrame, default=(0, 1, 2, 3, 4)) -> list[int]:
    """The minority classes recorded in the config (the most common value), else the contract default 0-4."""
    if "minority_classes" in trials and trials["minority_classes"].notna().any():
        v = trials["minority_classes"].dropna().astype(str).mode()[0]
        return list(json.loads(v))
    return list(default)


def class_labels(trials: pd.DataFrame) -> dict[int, str]:
    """Class index -> its label in tables and plots: the names the trials recorded (`classes`: own
    data's folder or label names), '3 cat' on CIFAR-10, '3' on MNIST (and tables without names)."""
    from tuner.data import CIFAR_CLASSES

    names = None
    if "classes" in trials and trials["classes"].notna().any():
        names = json.loads(str(trials["classes"].dropna().astype(str).mode()[0]))
    cifar = "dataset" in trials and trials["dataset"].astype(str).eq("cifar10").any()
    if names is None:
        names = list(CIFAR_CLASSES) if cifar else [str(c) for c in range(10)]
    return {i: f"{i} {n}" if cifar and n != str(i) else str(n) for i, n in enumerate(names)}


def per_class_table(trials: pd.DataFrame, group_col: str = "group", metric_prefix: str = "acc_",
                    stats_: Iterable[str] = ("mean",), minority=None) -> pd.DataFrame:
    """Rows: classes 0-9, 'minority mean', 'majority mean'; columns: the groups; values: stats over the trials of a group.

    With one statistic the columns are the group names; with several (e.g. ("mean", "std", "n")) they
    are (group, statistic) pairs. The minority/majority rows average each trial's classes first.
    """
    stats_ = list(stats_)
    classes = _class_columns(trials, metric_prefix)
    minority = list(minority) if minority is not None else minority_classes(trials)
    mino_cols = [c for k, c in classes.items() if k in minority]
    majo_cols = [c for k, c in classes.items() if k not in minority]
    values = trials[list(classes.values())].copy()
    values.columns = [str(k) for k in classes]
    values["minority mean"] = trials[mino_cols].mean(axis=1, skipna=False) if mino_cols else np.nan
    values["majority mean"] = trials[majo_cols].mean(axis=1, skipna=False) if majo_cols else np.nan
    out = {}
    groups = dict(list(values.groupby(trials[group_col], observed=True)))
    for g in value_order(trials, group_col):
        grp = groups[g]
        for s in stats_:
            out[(g, s)] = {row: stats.summarize(grp[row])[s] for row in values.columns}
    table = pd.DataFrame(out)
    table.index.name = "class"
    if len(stats_) == 1:
        table.columns = table.columns.get_level_values(0)
    table.columns.name = group_col
    return table


def _config_label(row: pd.Series, cols: list[str]) -> str:
    return ", ".join(f"{c}={row[c]}" for c in cols) if cols else "(single config)"


def best_per_remedy(trials: pd.DataFrame, remedy_col: str, select: str = "val_balanced_acc", mode: str = "max",
                    metrics: Iterable[str] = TEST_METRICS, config_cols: list[str] | None = None) -> pd.DataFrame:
    """For each value of `remedy_col`: the config with the best mean `select` (validation) over its seeds, and its test metrics.

    Configs are the distinct values of `config_cols` (default: the config columns that vary, seeds
    excluded). Long table: remedy value, config, n_configs (compared), trial_ids, metric (the
    selection metric first, then `metrics`), mean, std, n, ci95_low, ci95_high.
    """
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', not {mode!r}")
    cols = [c for c in (config_cols if config_cols is not None else varying(trials)) if c != remedy_col]
    keys = trials[cols].astype(object).map(str).agg("|".join, axis=1) if cols else pd.Series("", index=trials.index)
    rows = []
    for value, grp in trials.groupby(remedy_col, observed=True, sort=True):
        scores = grp.groupby(keys[grp.index], sort=False)[select].mean().dropna()
        if scores.empty:
            continue
        best_key = scores.idxmax() if mode == "max" else scores.idxmin()
        chosen = grp[keys[grp.index] == best_key]
        label = _config_label(chosen.iloc[0], cols)
        ids = ",".join(chosen["trial_id"].astype(str)) if "trial_id" in chosen else ""
        for m in [select, *[m for m in metrics if m != select]]:
            if m in chosen:
                rows.append({remedy_col: value, "config": label, "n_configs": len(scores), "trial_ids": ids,
                             "metric": m, **stats.summarize(chosen[m])})
    return pd.DataFrame(rows, columns=[remedy_col, "config", "n_configs", "trial_ids", "metric", *stats.STATS])


def model_vs_model(trials: pd.DataFrame, models: Iterable[str] = ("cnn", "lstm2"), by: str = "group",
                   metrics: Iterable[str] = TEST_METRICS, model_col: str = "model") -> pd.DataFrame:
    """The same remedies side by side per model: index (by, metric), columns (model, statistic)."""
    models, metrics = list(models), list(metrics)
    sub = trials[trials[model_col].astype(str).isin(models)]
    long = summarize_by(sub, [by, model_col], metrics)
    long[model_col] = long[model_col].astype(str)
    wide = long.set_index([by, "metric", model_col])[list(stats.STATS)].unstack(model_col)
    wide = wide.swaplevel(0, 1, axis=1)
    wide = wide.reindex(columns=pd.MultiIndex.from_product([[m for m in models if m in set(long[model_col])], stats.STATS]))
    rows = [(g, m) for g in value_order(sub, by) for m in metrics if (g, m) in wide.index]
    return wide.reindex(pd.MultiIndex.from_tuples(rows, names=[by, "metric"]))


Selector = pd.Series | dict | Callable[[pd.DataFrame], pd.Series]


def _select(trials: pd.DataFrame, sel: Selector) -> pd.DataFrame:
    if callable(sel) and not isinstance(sel, pd.Series):
        sel = sel(trials)
    if isinstance(sel, dict):
        mask = pd.Series(True, index=trials.index)
        for col, value in sel.items():
            mask &= trials[col].astype(object) == value
        sel = mask
    return trials[sel.reindex(trials.index, fill_value=False).astype(bool)]


def paired_test(trials: pd.DataFrame, baseline: Selector, candidate: Selector, metric: str = "balanced_acc",
                pair_on: str = "seed", alpha: float = 0.05) -> pd.Series:
    """Paired t-test (scipy.stats.ttest_rel) of candidate vs baseline over the seeds both have.

    baseline/candidate: a boolean mask, a {column: value} dict or a function of the table. Several
    trials of one side with the same seed are averaged first. Returns n (matched seeds), both
    sides' mean/std/CI, the difference's mean and 95% CI, t, p_value and within_noise (p >= alpha
    or fewer than 2 seeds: the difference cannot be told apart from seed noise).
    """
    a = _select(trials, baseline).groupby(pair_on, observed=True)[metric].mean()
    b = _select(trials, candidate).groupby(pair_on, observed=True)[metric].mean()
    seeds = a.index.intersection(b.index).sort_values()
    res = stats.paired(a[seeds].to_numpy(), b[seeds].to_numpy(), alpha)
    sa, sb = stats.summarize(a[seeds]), stats.summarize(b[seeds])
    return pd.Series({"metric": metric, **res,
                      **{f"baseline_{k}": sa[k] for k in ("std", "ci95_low", "ci95_high")},
                      **{f"candidate_{k}": sb[k] for k in ("std", "ci95_low", "ci95_high")},
                      "seeds": ",".join(map(str, seeds))})


def paired_vs_baseline(trials: pd.DataFrame, param: str, metric: str = "balanced_acc", baseline=None,
                       pair_on: str = "seed", alpha: float = 0.05) -> pd.DataFrame:
    """One paired test per value of `param` against its baseline value (default: the no-remedy value).
    The values form one family: `p_adjusted` is Benjamini-Hochberg over them, and `within_noise`
    is decided on it (p_adjusted >= alpha), so a sweep of many values claims no chance difference."""
    baseline = baseline_value(trials, param) if baseline is None else baseline
    rows = []
    for value in (v for v in value_order(trials, param) if v != baseline):
        r = paired_test(trials, {param: baseline}, {param: value}, metric, pair_on, alpha)
        rows.append({param: value, "baseline": baseline, **r.to_dict()})
    return with_adjusted_p(pd.DataFrame(rows), alpha)


def with_adjusted_p(tests: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """Add `p_adjusted` (Benjamini-Hochberg over the rows: one family) and decide `within_noise` on it."""
    if tests.empty:
        return tests.assign(p_adjusted=pd.Series(dtype=float))
    tests = tests.copy()
    tests["p_adjusted"] = stats.adjust_bh(tests["p_value"])
    tests["within_noise"] = ~(tests["p_adjusted"] < alpha)  # NaN (too few seeds): within noise
    return tests
