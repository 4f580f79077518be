"""Hyperparameter importance from the trials table alone (no Optuna study object needed).

The trials are replayed into an in-memory Optuna study (`create_trial` + `add_trial`), then
Optuna's own evaluator runs: fANOVA when scikit-learn is installed, else PED-ANOVA (from 20 trials).
Otherwise, or when Optuna fails, |Spearman correlation| with the metric, normalised to sum 1.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

MIN_TRIALS = 5
PED_ANOVA_MIN = 20


def param_importance(trials: pd.DataFrame, params: list[str], metric: str, mode: str = "max") -> tuple[pd.Series, str]:
    """(importance per parameter, highest first, summing to 1; the method used). Raises ValueError when too few trials."""
    data = trials.dropna(subset=[metric])
    params = [p for p in params if p in data and data[p].astype(str).nunique() > 1]
    if len(data) < MIN_TRIALS or not params:
        raise ValueError(f"{len(data)} trials with {metric} and {len(params)} varying parameter(s): "
                         f"importance needs at least {MIN_TRIALS} trials and 1 varying parameter")
    try:
        return _optuna(data, params, metric, mode)
    except Exception as e:  # noqa: BLE001 - any Optuna failure falls back to the correlation ranking
        warnings.warn(f"Optuna importance failed ({type(e).__name__}: {e}); using |Spearman correlation|")
        return _correlation(data, params, metric), "|Spearman correlation| with the metric (normalised)"


def _distribution(values: pd.Series):
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if pd.api.types.is_bool_dtype(values) or not pd.api.types.is_numeric_dtype(values):
        return CategoricalDistribution(sorted(values.astype(str).unique())), lambda v: str(v)
    lo, hi = float(values.min()), float(values.max())
    if pd.api.types.is_integer_dtype(values):
        return IntDistribution(int(lo), int(hi)), int
    log = lo > 0 and hi / lo > 100  # learning rates and the like were searched on a log scale
    return FloatDistribution(lo, hi, log=log), float


def _optuna(data: pd.DataFrame, params: list[str], metric: str, mode: str) -> tuple[pd.Series, str]:
    import optuna
    from optuna.importance import FanovaImportanceEvaluator, PedAnovaImportanceEvaluator

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists = {p: _distribution(data[p]) for p in params}
    study = optuna.create_study(direction="maximize" if mode == "max" else "minimize")
    for _, row in data.iterrows():
        study.add_trial(optuna.trial.create_trial(
            params={p: conv(row[p]) for p, (d, conv) in dists.items()},
            distributions={p: d for p, (d, _) in dists.items()},
            value=float(row[metric]),
        ))
    try:
        import sklearn  # noqa: F401 - fANOVA's random forest

        evaluator, name = FanovaImportanceEvaluator(seed=0), "fANOVA (Optuna)"
    except ImportError:
        if len(data) < PED_ANOVA_MIN:  # it compares the top 10% of trials with the rest: needs many trials
            return _correlation(data, params, metric), "|Spearman correlation| with the metric (normalised)"
        evaluator, name = PedAnovaImportanceEvaluator(), "PED-ANOVA (Optuna)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # experimental-feature warnings
        imp = optuna.importance.get_param_importances(study, evaluator=evaluator)
    s = pd.Series(imp, dtype="float64").reindex(params).fillna(0.0)
    if not np.isfinite(s).all() or s.sum() <= 0:
        raise ValueError("no parameter explains any variation")
    return (s / s.sum()).sort_values(ascending=False), name


def _correlation(data: pd.DataFrame, params: list[str], metric: str) -> pd.Series:
    y = data[metric].rank()
    out = {}
    for p in params:
        x = data[p]
        x = x.rank() if pd.api.types.is_numeric_dtype(x) else x.astype(str).map(data.groupby(x.astype(str))[metric].mean()).rank()
        r = x.corr(y)
        out[p] = 0.0 if r is None or math.isnan(r) else abs(r)
    s = pd.Series(out, dtype="float64")
    return (s / s.sum() if s.sum() > 0 else s).sort_values(ascending=False)
