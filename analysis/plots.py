"""Figures of a search, each saved as PNG (for the HTML report) and SVG (for papers).

Matplotlib's object API (Figure, not pyplot) with the Agg canvas: no display, no global state.
Accuracies and rates are drawn in percent; every axis says what it shows and in which unit.
Each function returns the PNG path.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before anything imports pyplot: files only, no display
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis import compare

matplotlib.rcParams.update({"font.size": 11, "axes.titlesize": 12, "axes.labelsize": 11, "legend.fontsize": 9.5,
                            "axes.grid": True, "grid.alpha": 0.3, "svg.fonttype": "none"})
SIZE = (7.0, 4.3)
DPI = 150

METRIC_LABELS = {
    "acc": "test accuracy", "minority_acc": "test accuracy, minority classes", "majority_acc": "test accuracy, majority classes",
    "balanced_acc": "test balanced accuracy", "macro_f1": "test macro F1", "loss": "test loss",
    "p_A_to_A": "majority → majority", "p_A_to_I": "majority → minority",
    "p_I_to_A": "minority → majority", "p_I_to_I": "minority → minority",
}
PERCENT_METRICS = ("acc", "f1", "p_")


def metric_label(m: str) -> str:
    base = m[4:] if m.startswith("val_") else m
    label = METRIC_LABELS.get(base, base.replace("_", " "))
    if m.startswith("val_"):
        label = label.replace("test ", "") + " (validation)"
    return label + (" (%)" if is_percent(m) else "")


def param_labels() -> dict[str, str]:
    """Each setting's label with its unit, from its declaration (tuner.settings, tuner.remedies)."""
    from tuner.remedies import params
    from tuner.settings import CORE

    return {k: p.label for k, p in {**CORE, **params()}.items() if p.label}


def param_label(p: str) -> str:
    return param_labels().get(p, p.replace("_", " "))


def is_percent(m: str) -> bool:
    return any(k in m for k in PERCENT_METRICS) and "loss" not in m


def _scale(m: str) -> float:
    return 100.0 if is_percent(m) else 1.0


def save(fig: Figure, out_dir, name: str, rect=(0, 0, 1, 1)) -> Path:
    """PNG and SVG; `rect` keeps room for a figure-level legend outside the axes."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fig.tight_layout(rect=rect)
    png = out_dir / f"{name}.png"
    fig.savefig(png, dpi=DPI)
    fig.savefig(out_dir / f"{name}.svg")
    return png


LOG_PARAMS = ("lr", "weight_decay")  # searched on a log scale as a rule


def _log_x(values, param: str = "") -> bool:
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    return len(v) > 2 and v.min() > 0 and v.max() / v.min() >= (5 if param in LOG_PARAMS else 50)


def sweep_plot(table: pd.DataFrame, param: str, out_dir, name: str | None = None, title: str | None = None) -> Path:
    """Mean ± 95% CI band of each metric in a `compare.sweep` table against the remedy strength."""
    fig = Figure(figsize=SIZE)
    ax = fig.add_subplot()
    metrics = list(dict.fromkeys(table["metric"]))
    percent = all(is_percent(m) for m in metrics)
    for m, grp in table.groupby("metric", sort=False):
        grp = grp.sort_values(param)
        x, k = grp[param].astype(float).to_numpy(), _scale(m)
        line, = ax.plot(x, grp["mean"] * k, marker="o", lw=2, label=metric_label(m).replace(" (%)", ""))
        lo, hi = grp["ci95_low"] * k, grp["ci95_high"] * k
        if percent:  # an accuracy cannot leave 0-100%: the t-interval of 2-3 seeds can
            lo, hi = lo.clip(0, 100), hi.clip(0, 100)
        _band(ax, x, grp["mean"] * k, lo, hi, line.get_color())
    _zoom_y(ax, table["mean"] * (100 if percent else 1), percent)
    if _log_x(table[param].astype(float), param):
        _set_log_x(ax)
    ax.set_xlabel(param_label(param))
    ax.set_ylabel("accuracy (%)" if percent else "value")
    n = table["n"]
    seeds = f"n = {n.min()}" if n.min() == n.max() else f"n = {n.min()}–{n.max()}"
    ax.set_title(title or f"Effect of the {param_label(param).split(' (')[0]}")
    _legend_below(ax, ncol=3, title=f"mean over seeds ({seeds}); band and bars = 95% CI")
    return save(fig, out_dir, name or f"sweep_{param}")


def _band(ax, x, mean, lo, hi, color):
    """CI as a band between points and as error bars on them (a band needs two neighbouring CIs to show)."""
    mean, lo, hi = (np.asarray(v, float) for v in (mean, lo, hi))
    ax.fill_between(x, lo, hi, color=color, alpha=0.15, lw=0)
    ok = ~np.isnan(lo)
    ax.errorbar(x[ok], mean[ok], yerr=(mean[ok] - lo[ok], hi[ok] - mean[ok]), fmt="none", ecolor=color, elinewidth=1,
                capsize=3, alpha=0.6)


def _set_log_x(ax):
    """Log x-axis labelled 0.001, 0.002, 0.005, ... (no overlapping minor-tick labels)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _legend_below(ax, ncol: int, title: str | None = None):
    """Legend under the x-axis label: it never hides data (tight_layout makes room for it)."""
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.17), ncol=ncol, frameon=False, title=title, title_fontsize=9)


def _zoom_y(ax, means: pd.Series, percent: bool):
    """Frame the means (not the CI bands, which can be very wide with 2 seeds), leaving room for the legend."""
    lo, hi = float(np.nanmin(means)), float(np.nanmax(means))
    pad = max((hi - lo) * 0.15, 2.0 if percent else 0.02)
    top = hi + pad
    ax.set_ylim(max(lo - pad, 0) if percent else lo - pad, min(top, 100.5) if percent else top)


def per_class_plot(trials: pd.DataFrame, out_dir, group_col: str = "group", metric_prefix: str = "acc_",
                   name: str | None = None) -> Path:
    """Grouped bars: per-class accuracy (mean over trials) for each group; error bars = std; minority classes shaded."""
    table = compare.per_class_table(trials, group_col, metric_prefix, stats_=("mean", "std"))
    classes = [c for c in table.index if c.isdigit()]
    groups = list(dict.fromkeys(table.columns.get_level_values(0)))
    minority = compare.minority_classes(trials)
    fig = Figure(figsize=(max(7.0, 0.9 * len(classes) + 1), 4.3))
    ax = fig.add_subplot()
    width = 0.8 / max(len(groups), 1)
    x = np.arange(len(classes))
    for c in minority:
        if str(c) in classes:
            i = classes.index(str(c))
            ax.axvspan(i - 0.45, i + 0.45, color="0.9", zorder=0, lw=0)
    for i, g in enumerate(groups):
        mean = table.loc[classes, (g, "mean")] * 100
        std = table.loc[classes, (g, "std")].fillna(0) * 100
        ax.bar(x - 0.4 + width * (i + 0.5), mean, width, yerr=std, capsize=2, label=str(g), zorder=2)
    names = compare.class_labels(trials)
    ax.set_xticks(x, [names.get(int(c), c) + ("\n(minority)" if int(c) in minority else "") for c in classes], fontsize=9)
    ax.set_xlabel("class; grey = minority classes")
    ax.set_ylabel(metric_label(metric_prefix.rstrip("_")).replace("accuracy", "per-class accuracy"))
    lo = np.nanmin(table.xs("mean", axis=1, level=1).loc[classes].to_numpy()) * 100
    ax.set_ylim(max(0, lo - 10), 100)
    ax.set_title(f"Per-class accuracy by {param_label(group_col)} (mean over seeds, bars = std)")
    _legend_below(ax, ncol=min(len(groups), 6), title=None)
    ax.get_legend().set_bbox_to_anchor((0.5, -0.27))
    ax.grid(axis="x", visible=False)
    return save(fig, out_dir, name or f"per_class_{group_col}")


def p_rates_plot(trials: pd.DataFrame, param: str, out_dir, name: str | None = None) -> Path:
    """The four group-transfer rates p_X_to_Y (share of true group X predicted as group Y) against `param`.

    Left panel: true minority images (I); right: true majority images (A). The colour says where the
    images go (orange: a minority class, blue: a majority class), the same in both panels.
    """
    from matplotlib.lines import Line2D

    table = compare.sweep(trials, param, [r for r in ("p_I_to_I", "p_I_to_A", "p_A_to_A", "p_A_to_I") if r in trials])
    fig = Figure(figsize=(9.0, 4.0))
    axes = [fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)]
    color = {"I": "C1", "A": "C0"}
    for ax, src, title in ((axes[0], "I", "true minority images (group I)"), (axes[1], "A", "true majority images (group A)")):
        for dst in ("I", "A"):
            grp = table[table["metric"] == f"p_{src}_to_{dst}"].sort_values(param)
            x = grp[param].astype(float).to_numpy()
            ax.plot(x, grp["mean"] * 100, marker="o", lw=2, color=color[dst])
            _band(ax, x, grp["mean"] * 100, (grp["ci95_low"] * 100).clip(0, 100), (grp["ci95_high"] * 100).clip(0, 100),
                  color[dst])
        if _log_x(table[param].astype(float), param):
            _set_log_x(ax)
        ax.set_title(title)
        ax.set_xlabel(param_label(param))
        ax.set_ylabel("share of images (%)")
        ax.set_ylim(-3, 103)
    handles = [Line2D([], [], color=color["I"], marker="o", lw=2, label="predicted as a minority class"),
               Line2D([], [], color=color["A"], marker="o", lw=2, label="predicted as a majority class")]
    fig.legend(handles=handles, loc="lower center", ncol=2, frameon=False)
    fig.suptitle("Where test images go: group-to-group prediction rates (mean over seeds, band and bars = 95% CI)",
                 fontsize=11)
    return save(fig, out_dir, name or f"p_rates_{param}", rect=(0, 0.07, 1, 1))


def confusion_plot(confusion, out_dir, name: str = "confusion_best", title: str = "Confusion matrix",
                   minority=None, names: dict | None = None) -> Path:
    """Heat map of row-normalised recall (%) with the image counts written in each cell."""
    cm = np.asarray(json.loads(confusion) if isinstance(confusion, str) else confusion, dtype=float)
    k = cm.shape[0]
    rows = cm.sum(axis=1, keepdims=True)
    pct = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0) * 100
    fig = Figure(figsize=(6.6, 5.6))
    ax = fig.add_subplot()
    im = ax.imshow(pct, cmap="Blues", vmin=0, vmax=100)
    for i in range(k):
        for j in range(k):
            if cm[i, j]:
                ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=8 if k <= 10 else 6,
                        color="white" if pct[i, j] > 55 else "black")
    minority = set(minority or [])
    names = names or {}
    labels = [f"{names.get(c, c)}*" if c in minority else str(names.get(c, c)) for c in range(k)]
    ax.set_xticks(range(k), labels, rotation=45 if any(len(str(v)) > 3 for v in names.values()) else 0, ha="right"
                  if any(len(str(v)) > 3 for v in names.values()) else "center")
    ax.set_yticks(range(k), labels)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class (* = minority)")
    ax.grid(False)
    ax.set_title(title, fontsize=11)
    fig.colorbar(im, ax=ax, label="share of the true class (%)", fraction=0.046, pad=0.04)
    return save(fig, out_dir, name)


def learning_curves_plot(epochs: pd.DataFrame, trial_ids, out_dir, labels: dict | None = None,
                         name: str = "learning_curves") -> Path:
    """Train (solid) and validation (dashed) loss and accuracy per epoch; one colour per trial."""
    from matplotlib.lines import Line2D

    labels = labels or {}
    fig = Figure(figsize=(10.0, 4.6))
    ax_loss, ax_acc = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    colors = matplotlib.colormaps["tab10"].colors
    handles = []
    for i, tid in enumerate(trial_ids):
        e = epochs[epochs["trial_id"].astype(str) == str(tid)].sort_values("epoch")
        if e.empty:
            continue
        c = colors[i % len(colors)]
        handles.append(Line2D([], [], color=c, lw=3, label=labels.get(tid, str(tid))))
        for ax, train, val, k in ((ax_loss, "train_loss", "val_loss", 1), (ax_acc, "train_acc", "val_balanced_acc", 100)):
            if train in e:
                ax.plot(e["epoch"], e[train] * k, color=c, lw=2, marker=".")
            if val in e:
                ax.plot(e["epoch"], e[val] * k, color=c, lw=2, ls="--", marker=".")
    for ax in (ax_loss, ax_acc):
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
    ax_loss.set_ylabel("cross-entropy loss")
    ax_loss.set_title("Loss")
    ax_acc.set_ylabel("accuracy (%)")
    ax_acc.set_title("Train accuracy / validation balanced accuracy")
    handles += [Line2D([], [], color="0.3", lw=2, label="train"), Line2D([], [], color="0.3", lw=2, ls="--", label="validation")]
    rows = math.ceil(len(handles) / 2)
    fig.legend(handles=handles, loc="lower center", ncol=2, fontsize=9, frameon=False)
    return save(fig, out_dir, name, rect=(0, 0.02 + 0.05 * rows, 1, 1))


def history_plot(trials: pd.DataFrame, metric: str, mode: str, out_dir, name: str = "optimisation_history") -> Path:
    """The selection metric of each trial in creation order, and the best so far (Optuna's optimisation history)."""
    order = "trial_index" if "trial_index" in trials and trials["trial_index"].notna().all() else None
    data = trials.sort_values(order) if order else trials
    data = data.dropna(subset=[metric])
    k = _scale(metric)
    x = np.arange(1, len(data) + 1)
    y = data[metric].to_numpy() * k
    best = np.maximum.accumulate(y) if mode == "max" else np.minimum.accumulate(y)
    fig = Figure(figsize=SIZE)
    ax = fig.add_subplot()
    stopped = data["asha_stopped"].to_numpy(bool) if "asha_stopped" in data else np.zeros(len(data), bool)
    ax.scatter(x[~stopped], y[~stopped], s=30, label="trial (ran all epochs)", zorder=3)
    if stopped.any():
        ax.scatter(x[stopped], y[stopped], s=30, marker="x", label="trial stopped early by ASHA", zorder=3)
    ax.step(x, best, where="post", color="C3", lw=2, label="best so far")
    ax.set_xlabel("trial (in the order the searcher proposed it)")
    ax.set_ylabel(metric_label(metric))
    ax.set_title("Optimisation history")
    _legend_below(ax, ncol=3)
    return save(fig, out_dir, name)


def importance_plot(importances: pd.Series, method: str, metric: str, out_dir, name: str = "param_importance") -> Path:
    fig = Figure(figsize=(7.0, 1.8 + 0.45 * len(importances)))
    ax = fig.add_subplot()
    s = importances.sort_values()
    ax.barh([param_label(p) for p in s.index], s.to_numpy() * 100, color="C0")
    for i, v in enumerate(s.to_numpy() * 100):
        ax.text(v + 1, i, f"{v:.0f}%", va="center", fontsize=9)
    ax.set_xlim(0, 110)
    ax.set_xlabel("share of the variation explained (%)")
    ax.set_title(f"Parameter importance for {metric_label(metric).replace(' (%)', '')}\n{method}", fontsize=11)
    ax.grid(axis="y", visible=False)
    return save(fig, out_dir, name)


def scatter_plot(trials: pd.DataFrame, param: str, metric: str, out_dir, name: str | None = None) -> Path:
    """One point per trial, for parameters with too many distinct values for a per-value sweep."""
    fig = Figure(figsize=SIZE)
    ax = fig.add_subplot()
    data = trials.dropna(subset=[param, metric])
    stopped = data["asha_stopped"].to_numpy(bool) if "asha_stopped" in data else np.zeros(len(data), bool)
    x, y = data[param].astype(float).to_numpy(), data[metric].to_numpy() * _scale(metric)
    ax.scatter(x[~stopped], y[~stopped], s=30, label="trial (ran all epochs)")
    if stopped.any():
        ax.scatter(x[stopped], y[stopped], s=30, marker="x", label="trial stopped early by ASHA")
        _legend_below(ax, ncol=2)
    if _log_x(data[param].astype(float), param):
        _set_log_x(ax)
    ax.set_xlabel(param_label(param))
    ax.set_ylabel(metric_label(metric))
    ax.set_title(f"{metric_label(metric).replace(' (%)', '')} of each trial vs {param_label(param).split(' (')[0]}")
    return save(fig, out_dir, name or f"scatter_{param}")


def pareto_plot(points, on_front, knee, objectives, out_dir, name: str = "pareto") -> Path:
    """Every trial, the Pareto front (a line through its points) and the knee, for two objectives:
    the second on x, the first on y."""
    points, on_front = np.asarray(points, dtype=float), np.asarray(on_front, dtype=bool)
    sx, sy = _scale(objectives[1]), _scale(objectives[0])
    fig = Figure(figsize=(5.6, 4.8))
    ax = fig.add_subplot()
    ax.scatter(points[~on_front, 1] * sx, points[~on_front, 0] * sy, c="0.6", s=20, label="trial")
    front = points[on_front][np.argsort(points[on_front, 1])]
    ax.plot(front[:, 1] * sx, front[:, 0] * sy, "o-", c="tab:red", ms=5, label="Pareto front")
    ax.scatter([knee[1] * sx], [knee[0] * sy], marker="*", s=240, c="gold", edgecolors="k", zorder=3, label="knee")
    ax.set_xlabel(metric_label(objectives[1]))
    ax.set_ylabel(metric_label(objectives[0]))
    ax.set_title("Pareto front (each trial's final epoch)")
    ax.legend(loc="best")
    return save(fig, out_dir, name)
