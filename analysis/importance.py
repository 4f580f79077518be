"""Hyperparameter importance: from the run's own Optuna study when it has one, else from the trials table.

An Optuna search keeps its study in the run folder (`optuna.journal`, tuner.search): `study_importance`
loads it, with the distributions the searcher sampled from and the value it was told for each trial.
Other runs (grids, older runs) are replayed from the trials table into an in-memory study
(`create_trial` + `add_trial`). Either way Optuna's own evaluator runs: fANOVA when scikit-learn is
installed (the `analysis` extra), else PED-ANOVA (from 20 trials). Otherwise, or when Optuna fails,
|Spearman correlation| with the metric, normalised to sum 1. The method used is returned with the
importances and named in the report.
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


JOURNAL = "optuna.journal"


def run_importance(trials: pd.DataFrame, params: list[str], metric: str, mode: str = "max") -> tuple[pd.Series, str]:
    """The importances of one run's trials: its Optuna study when it has one that optimised `metric`,
    else the trials table replayed (`param_importance`)."""
    searched = {str(v) for v in trials.get("search_metric", pd.Series(dtype=object)).dropna()}
    objectives = {str(v).split(",")[0] for v in trials.get("objectives", pd.Series(dtype=object)).dropna() if v}
    paths = {str(p) for p in trials.get("run_path", pd.Series(dtype=object)).dropna()}
    if len(paths) == 1 and metric in searched | objectives:
        from pathlib import Path

        journal = Path(paths.pop()) / JOURNAL
        if journal.exists():
            try:
                return study_importance(journal)
            except LookupError:  # no Optuna evaluator fits (no scikit-learn, few trials): the table's correlation
                pass
    return param_importance(trials, params, metric, mode)


def study_importance(journal) -> tuple[pd.Series, str]:
    """Importances from the Optuna study in a run's journal file (its first objective). Raises
    ValueError when it holds too few finished trials."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=None, storage=JournalStorage(JournalFileBackend(str(journal))))
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    varying = {k for t in done for k in t.params if len({str(u.params.get(k)) for u in done}) > 1}
    if len(done) < MIN_TRIALS or not varying:
        raise ValueError(f"the run's Optuna study has {len(done)} finished trials and {len(varying)} varying "
                         f"parameter(s): importance needs at least {MIN_TRIALS} and 1")
    evaluator, name = _evaluator(len(done))
    if evaluator is None:
        raise LookupError(f"the run's Optuna study has {len(done)} finished trials: without scikit-learn "
                          f"(pip install 'imbalance-tune[analysis]') PED-ANOVA needs {PED_ANOVA_MIN}")
    target = (lambda t: t.values[0]) if len(study.directions) > 1 else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # experimental-feature warnings
        imp = optuna.importance.get_param_importances(study, evaluator=evaluator, target=target)
    s = pd.Series(imp, dtype="float64")
    if not np.isfinite(s).all() or s.sum() <= 0:
        raise ValueError("no parameter explains any variation")
    return (s / s.sum()).sort_values(ascending=False), f"{name}, from the run's Optuna study"


def _evaluator(n_trials: int):
    """(Optuna evaluator, its name): fANOVA with scikit-learn, else PED-ANOVA from 20 trials, else (None, None)."""
    from optuna.importance import FanovaImportanceEvaluator, PedAnovaImportanceEvaluator

    try:
        import sklearn  # noqa: F401 - fANOVA's random forest

        return FanovaImportanceEvaluator(seed=0), "fANOVA (Optuna)"
    except ImportError:
        if n_trials < PED_ANOVA_MIN:  # it compares the top 10% of trials with the rest: needs many trials
            return None, None
        return PedAnovaImportanceEvaluator(), "PED-ANOVA (Optuna)"


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
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists = {p: _distribution(data[p]) for p in params}
    study = optuna.create_study(direction="maximize" if mode == "max" else "minimize")
    for _, row in data.iterrows():
        study.add_trial(optuna.trial.create_trial(
            params={p: conv(row[p]) for p, (d, conv) in dists.items()},
            distributions={p: d for p, (d, _) in dists.items()},
            value=float(row[metric]),
        ))
    evaluator, name = _evaluator(len(data))
    if evaluator is None:
        return _correlation(data, params, metric), "|Spearman correlation| with the metric (normalised)"
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
