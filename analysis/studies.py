"""The studies' own tables and figures, in the layout of the originals (search_spaces/studies.py).

    doc = study_doc(trials, epochs, out_dir)          # render.Doc blocks, one section per study found
    study_sections(trials, epochs, out_dir)           # [(title, markdown, [figure paths])]

`trials`/`epochs` are the tables of `analysis.load_trials` / `load_epochs` (several runs may be
mixed; each study is found by its `experiment` column). Every trial is represented by its epoch
with the best validation metric (the run's selection metric, `best_*` columns): model selection
on validation, test only reported. Cells read `mean ± sd` over seeds, and means of groups of
classes add the 95% CI (Student t, `analysis.stats`); with one seed only the value is shown.
"""
from __future__ import annotations

import json
import math
import shlex
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import compare, plots, render, stats

SUMMARY = ("acc", "minority_acc", "majority_acc", "balanced_acc")
P_RATES = ("p_I_to_I", "p_I_to_A", "p_A_to_A", "p_A_to_I")
P_LABELS = {"p_I_to_A": "minority image -> a majority class", "p_I_to_I": "minority image -> another minority class",
            "p_A_to_I": "majority image -> a minority class", "p_A_to_A": "majority image -> another majority class"}
REMEDY_GROUPS = ("unbalanced", "augmented", "irm", "combined", "irm_groups")  # then the irm_lambda_* sweep
SELECTION_NOTE = ("Each trial is represented by its epoch with the best validation balanced accuracy (a stratified "
                  "10% validation split of the imbalanced training set); test data is only reported, never used "
                  "to choose. Where the original chose something on test data, the section says so.")


# --- the trials as the studies use them ----------------------------------------------------------
def selected(trials: pd.DataFrame) -> pd.DataFrame:
    """Finished trials, every metric at the epoch chosen on validation (best_<metric> -> <metric>); the
    final epoch's value of each summary metric stays beside it as final_<metric> (the originals
    report the final epoch)."""
    done = compare.completed(trials).copy()
    for m in SUMMARY:
        if m in done and f"best_{m}" in done:
            done[f"final_{m}"] = done[m]
    for c in [c for c in done.columns if c.startswith("best_")]:
        done[c[5:]] = done[c]
    return done


def final(trials: pd.DataFrame) -> pd.DataFrame:
    """Finished trials with every metric at its final epoch (the raw columns)."""
    return compare.completed(trials)


def cell(values, ci: bool = False) -> str:
    """'97.1 ± 0.4' in percent (with ' [96.6, 97.6]' when ci); one value: '97.1'; none: '–'."""
    s = stats.summarize(values)
    if s["n"] == 0:
        return "–"
    text = f"{s['mean'] * 100:.1f}"
    if s["n"] >= 2:
        text += f" ± {s['std'] * 100:.1f}"
        if ci:
            text += f" [{s['ci95_low'] * 100:.1f}, {s['ci95_high'] * 100:.1f}]"
    return text


def class_names(t: pd.DataFrame) -> dict[int, str]:
    """'3' for MNIST digits, '3 cat' for CIFAR-10, the recorded names of own data."""
    return compare.class_labels(t)


def imbalance_text(t: pd.DataFrame) -> str:
    """'classes 0-4 kept at 10%' (or the recorded imbalance profile)."""
    if "imbalance" in t and t["imbalance"].notna().any():
        return f"imbalance {t['imbalance'].dropna().astype(str).iloc[0]}"
    mino = compare.minority_classes(t)
    # numbers even when the column is text (a run whose failed trials recorded something else there)
    kept = pd.to_numeric(t["minority_keep"].astype(object), errors="coerce").dropna() if "minority_keep" in t else []
    keep = float(kept.iloc[0]) if len(kept) else 0.1
    if not mino:
        return "no minority class"
    if "dataset" in t and t["dataset"].astype(str).str.startswith(("imagefolder:", "table:")).any():
        labels = class_names(t)  # own data: by name
        names = ", ".join(labels.get(c, str(c)) for c in mino)
    elif mino == list(range(mino[0], mino[-1] + 1)):
        names = f"{mino[0]}-{mino[-1]}"
    else:
        names = ", ".join(map(str, mino))
    return f"classes {names} kept at {keep * 100:g}%"


def in_groups(t: pd.DataFrame, groups) -> list[str]:
    present = set(t["group"].astype(str))
    return [g for g in groups if g in present]


def per_class_table(t: pd.DataFrame, groups: list[str]) -> pd.DataFrame:
    """Rows: classes (minority marked), minority mean, majority mean, overall; one column per group."""
    mino = compare.minority_classes(t)
    names = class_names(t)
    by = {g: t[t["group"].astype(str) == g] for g in groups}
    rows = []
    for c in range(10):
        col = f"acc_{c}"
        if col in t:
            rows.append({"class": names[c] + (" *" if c in mino else ""), **{g: cell(by[g][col]) for g in groups}})
    for label, col in (("minority mean", "minority_acc"), ("majority mean", "majority_acc"), ("overall", "acc"),
                       ("balanced", "balanced_acc")):
        rows.append({"class": f"**{label}**", **{g: cell(by[g][col], ci=True) for g in groups}})
    for label, col in (("minority mean", "minority_acc"), ("majority mean", "majority_acc"), ("overall", "acc"),
                       ("balanced", "balanced_acc")):
        if f"final_{col}" in t:  # the originals report the final epoch
            rows.append({"class": f"{label}, final epoch", **{g: cell(by[g][f"final_{col}"], ci=True) for g in groups}})
    rows.append({"class": "seeds (n)", **{g: str(len(by[g])) for g in groups}})
    return pd.DataFrame(rows)


def summary_table(t: pd.DataFrame, groups: list[str]) -> pd.DataFrame:
    rows = []
    for g in groups:
        r = t[t["group"].astype(str) == g]
        rows.append({"group": g, "model": ", ".join(dict.fromkeys(r["model"].astype(str))), "seeds (n)": len(r),
                     **{plots.metric_label(m).replace(" (%)", ""): cell(r[m], ci=True) for m in SUMMARY if m in r},
                     **{plots.metric_label(m).replace(" (%)", "") + ", final epoch": cell(r[f"final_{m}"])
                        for m in ("acc", "minority_acc") if f"final_{m}" in r},
                     "epoch chosen (validation)": ", ".join(str(int(e)) for e in sorted(r["best_epoch"].dropna().unique()))
                     if "best_epoch" in r else "–"})
    return pd.DataFrame(rows)


def paired_rows(t: pd.DataFrame, base: str, groups: list[str], metrics=("minority_acc", "balanced_acc")) -> pd.DataFrame:
    """Each group vs `base` over matched seeds (paired t-test); needs 2+ common seeds to say anything.
    The groups of one metric are one family: p is Benjamini-Hochberg adjusted over them, and the
    verdict "within seed noise" is decided on the adjusted p."""
    rows = []
    for m in metrics:
        tests = compare.with_adjusted_p(pd.DataFrame(
            [{"group": g, **compare.paired_test(t, {"group": base}, {"group": g}, m).to_dict()} for g in groups]))
        for _, r in tests.iterrows():
            diff = "–" if r["n"] < 1 else f"{r['diff_mean'] * 100:+.1f} pp"
            if r["n"] >= 2:
                diff += f" [{r['diff_ci95_low'] * 100:+.1f}, {r['diff_ci95_high'] * 100:+.1f}]"
            rows.append({"group": r["group"], "metric": plots.metric_label(m).replace(" (%)", ""),
                         "common seeds": int(r["n"]), f"difference vs {base}": diff,
                         "p (paired t)": "–" if math.isnan(r["p_value"]) else f"{r['p_value']:.3g}",
                         f"p adjusted (BH, {len(groups)} tests)": "–" if math.isnan(r["p_adjusted"]) else
                         f"{r['p_adjusted']:.3g}",
                         "within seed noise": "yes" if r["within_noise"] else "no"})
    order = {g: i for i, g in enumerate(groups)}
    return pd.DataFrame(rows).sort_values("group", key=lambda c: c.map(order), kind="stable").reset_index(drop=True)


# --- figures ------------------------------------------------------------------------------------
def learning_curves(epochs: pd.DataFrame, t: pd.DataFrame, groups: list[str], out_dir, name: str) -> Path:
    """Test accuracy and test minority accuracy per epoch, one line per group (mean over seeds, band = 95% CI)."""
    from matplotlib.figure import Figure

    ids = dict(zip(t["trial_id"].astype(str), t["group"].astype(str)))
    e = epochs[epochs["trial_id"].astype(str).isin(ids)].copy()
    e["group"] = e["trial_id"].astype(str).map(ids)
    fig = Figure(figsize=(10.0, 4.4))
    axes = [fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)]
    for ax, m in zip(axes, ("acc", "minority_acc")):
        for i, g in enumerate(groups):
            s = compare.summarize_by(e[e["group"] == g], ["epoch"], [m]).sort_values("epoch")
            if s.empty:
                continue
            x = s["epoch"].to_numpy(float)
            ax.plot(x, s["mean"] * 100, marker=".", lw=2, color=f"C{i}", label=g)
            plots._band(ax, x, s["mean"] * 100, (s["ci95_low"] * 100).clip(0, 100), (s["ci95_high"] * 100).clip(0, 100),
                        f"C{i}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(plots.metric_label(m))
        ax.set_title(plots.metric_label(m).replace(" (%)", "").capitalize())
        epochs_run = sorted(e["epoch"].unique())
        if len(epochs_run) <= 12:
            ax.set_xticks(epochs_run)
        else:
            ax.xaxis.get_major_locator().set_params(integer=True)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=min(len(groups), 6), frameon=False)
    return plots.save(fig, out_dir, name, rect=(0, 0.08, 1, 1))


def per_class_vs_weight(t: pd.DataFrame, out_dir, name: str) -> Path:
    """Test accuracy of each minority class against the minority weight (mean over seeds, band = 95% CI)."""
    from matplotlib.figure import Figure

    mino = compare.minority_classes(t)
    names = class_names(t)
    fig = Figure(figsize=plots.SIZE)
    ax = fig.add_subplot()
    table = compare.sweep(t, "minority_weight", [f"acc_{c}" for c in mino])
    for i, c in enumerate(mino):
        s = table[table["metric"] == f"acc_{c}"].sort_values("minority_weight")
        x = s["minority_weight"].to_numpy(float)
        ax.plot(x, s["mean"] * 100, marker="o", lw=2, color=f"C{i}", label=f"class {names[c]}")
        plots._band(ax, x, s["mean"] * 100, (s["ci95_low"] * 100).clip(0, 100), (s["ci95_high"] * 100).clip(0, 100),
                    f"C{i}")
    ax.set_xlabel(plots.param_label("minority_weight"))
    ax.set_ylabel("test accuracy of the class (%)")
    ax.set_title("Minority classes against the minority weight (1 = unbalanced)")
    plots._legend_below(ax, ncol=min(len(mino), 5))
    return plots.save(fig, out_dir, name)


def p_rates_grid(t: pd.DataFrame, param: str, models: list[str], out_dir, name: str) -> Path:
    """Rows: true minority / true majority images; columns: models. Lines: where the wrong predictions
    go, solid without and dashed with rotation; x = `param` (the unbalanced run is its starting point)."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    fig = Figure(figsize=(4.6 * len(models), 7.4))
    color = {"I": "C1", "A": "C0"}
    for j, model in enumerate(models):
        for i, src in enumerate(("I", "A")):
            ax = fig.add_subplot(2, len(models), i * len(models) + j + 1)
            for rotated, ls in (("no", "-"), ("yes", "--"), ("all images", ":")):
                sub = t[(t["model"].astype(str) == model) & (t["rotated"] == rotated)]
                if sub.empty:
                    continue
                table = compare.sweep(sub, param, [f"p_{src}_to_{d}" for d in ("I", "A")])
                for dst in ("I", "A"):
                    s = table[table["metric"] == f"p_{src}_to_{dst}"].sort_values(param)
                    x = s[param].to_numpy(float)
                    ax.plot(x, s["mean"] * 100, marker="o", lw=2, ls=ls, color=color[dst])
                    plots._band(ax, x, s["mean"] * 100, (s["ci95_low"] * 100).clip(0, 100),
                                (s["ci95_high"] * 100).clip(0, 100), color[dst])
            ax.set_title(f"{model}: true {'minority' if src == 'I' else 'majority'} images", fontsize=11)
            ax.set_xlabel(X_LABELS[param])
            ax.set_ylabel("share of the group's test images (%)")
    handles = [Line2D([], [], color=color["I"], lw=2, label="wrongly predicted as a minority class"),
               Line2D([], [], color=color["A"], lw=2, label="wrongly predicted as a majority class"),
               Line2D([], [], color="0.3", lw=2, label="no augmentation"),
               Line2D([], [], color="0.3", lw=2, ls="--", label="rotation ±25° (copies / minority images)")]
    if (t["rotated"] == "all images").any():
        handles.append(Line2D([], [], color="0.3", lw=2, ls=":", label="rotation ±25° of every image"))
    fig.legend(handles=handles, loc="lower center", ncol=2 if len(handles) == 4 else 3, frameon=False)
    return plots.save(fig, out_dir, name, rect=(0, 0.08, 1, 1))


ROTATION_NOTE = ("copies (ROS) or minority images (weights) = `yes`; of every training image (`augment_scope=all`, "
                 "as the original) = `all images`")


def rotation_label(t: pd.DataFrame) -> pd.Series:
    """'no', 'yes' (the copies or the minority images rotated) or 'all images' (augment_scope=all)."""
    rotated = (t["rotation_deg"].fillna(0) > 0) if "rotation_deg" in t else pd.Series(False, index=t.index)
    scope = t["augment_scope"].astype(str) if "augment_scope" in t else pd.Series("", index=t.index)
    return pd.Series(np.where(~rotated, "no", np.where(scope == "all", "all images", "yes")), index=t.index)


X_LABELS = {"inv_rho": "1/ρ (minority / majority count)",
            "minority_weight": plots.param_label("minority_weight")}


# --- the studies ---------------------------------------------------------------------------------
def _noise_irm(doc: render.Doc, t: pd.DataFrame, epochs: pd.DataFrame, fig_dir: Path, exp: str) -> None:
    model = "vgg" if exp == "cifar_vgg" else "lstm"
    balanced = [g for g in dict.fromkeys(t["group"].astype(str)) if g.endswith("_balanced")]
    balanced.sort(key=lambda g: g.startswith(model))  # the study's model last: "elman vs lstm"
    doc.p(SELECTION_NOTE)
    if balanced:
        doc.h(3, "Balanced data: " + " vs ".join(g.removesuffix("_balanced") for g in balanced))
        doc.table(summary_table(t, balanced), "Test metrics, mean ± sd [95% CI] over seeds, percent")
    sweep = sorted((g for g in t["group"].astype(str).unique() if g.startswith("irm_lambda_")),
                   key=lambda g: float(g.rsplit("_", 1)[1]))
    groups = in_groups(t, [*REMEDY_GROUPS, *sweep])
    if groups:
        doc.h(3, f"Imbalanced data ({imbalance_text(t[t['group'].astype(str) == groups[0]])}): {model} with noise "
              "augmentation, IRM and both")
        ref = [g for g in balanced if g.startswith(model)]
        doc.table(per_class_table(t, groups + ref), "Per-class test accuracy (%, * = minority class), mean ± sd over "
                  "seeds; the means of groups of classes with their 95% CI" + (f"; {ref[0]} for reference" if ref else ""))
        if "unbalanced" in groups and len(groups) > 1 and t["seed"].nunique() >= 2:
            doc.table(paired_rows(t, "unbalanced", [g for g in groups if g != "unbalanced"]),
                      "Each remedy against the unbalanced run, paired over seeds (percentage points)")
        if not epochs.empty:
            png = learning_curves(epochs, t, [*ref, *groups], fig_dir, f"{exp}_learning_curves")
            doc.figure(png, "Learning curves: test accuracy (left) and test minority accuracy (right) per epoch, mean "
                       "over seeds, band = 95% CI. Shown for reading only: epochs are chosen on validation.")


def _weighted(doc: render.Doc, t: pd.DataFrame, fig_dir: Path, exp: str) -> None:
    doc.p(SELECTION_NOTE)
    if "minority_weight" not in t:  # only the follow-up run (lstm_class_weights) is in the report
        t = t.assign(minority_weight=1.0)
    groups = in_groups(t, ["balanced", "unbalanced", "noise_40", "noise_100", "rotation_40", "rotation_100",
                           "class_weights"])
    if groups:
        doc.h(3, "Balanced vs imbalanced, augmentation and per-class weights")
        doc.table(per_class_table(t, groups), "Per-class test accuracy (%, * = minority class), mean ± sd over seeds; "
                  "noise_40 = minority raised to 40% of a class's original count with noisy copies, etc.")
    sweep = t[t["group"].astype(str).str.startswith("weight_") | (t["group"].astype(str) == "unbalanced")].copy()
    if sweep["minority_weight"].nunique() >= 2:
        doc.h(3, "The minority weight 2-10")
        weights = sorted(sweep["minority_weight"].unique())
        by = {w: sweep[sweep["minority_weight"] == w] for w in weights}
        mino = compare.minority_classes(t)
        names = class_names(t)
        rows = []
        for w in weights:
            r = by[w]
            rows.append({"weight": f"{w:g}" + (" (unbalanced)" if w == 1 else ""),
                         **{names[c]: cell(r[f"acc_{c}"]) for c in mino},
                         **{label: cell(r[col], ci=True) for label, col in (("minority mean", "minority_acc"),
                                                                            ("majority mean", "majority_acc"),
                                                                            ("overall", "acc"))},
                         **{f"{label}, final epoch": cell(r[f"final_{col}"]) for label, col in
                            (("minority mean", "minority_acc"), ("majority mean", "majority_acc"))
                            if f"final_{col}" in r},
                         "n": len(r)})
        doc.table(pd.DataFrame(rows), "Test accuracy (%) of each minority class and the group means against the "
                  "minority weight: mean ± sd over seeds, [95% CI]; the group means at the final epoch beside them")
        doc.figure(per_class_vs_weight(sweep, fig_dir, f"{exp}_per_class_vs_weight"),
                   "Test accuracy of each minority class against the minority weight; band = 95% CI over seeds.")
        table = compare.sweep(sweep, "minority_weight", ["minority_acc", "majority_acc", "acc"])
        doc.figure(plots.sweep_plot(table, "minority_weight", fig_dir, f"{exp}_sweep_minority_weight"),
                   "Minority mean, majority mean and overall test accuracy against the minority weight.")
        best = best_class_weights(sweep)
        doc.h(3, "Per-class weights from the sweep")
        doc.p("Each minority class gets the weight of the sweep with its best **validation** accuracy (mean over "
              "seeds, at each trial's selected epoch); majority classes keep weight 1. The original chose each "
              "class's weight by its test accuracy, which makes the resulting test score optimistic; here test "
              "is only reported.")
        doc.table(best["table"], "Best weight per minority class, chosen on validation")
        cmd = class_weights_command(sweep, best["weights"])
        doc.p("Step two: run the per-class weights, then report both runs together "
              "(`python -m analysis.report RUN_DIR STEP2_RUN_DIR`) to see them beside the sweep:")
        doc.p(f"`{cmd}`")
    _confusions(doc, t, sweep, fig_dir, exp)


def best_class_weights(sweep: pd.DataFrame) -> dict:
    """{"weights": 10 per-class weights, "table": the choice}: per minority class, the weight of the sweep
    (weights != 1) with the best mean validation accuracy of that class; majority classes 1."""
    mino = compare.minority_classes(sweep)
    s = sweep[sweep["minority_weight"] != 1]
    weights, rows = [1.0] * 10, []
    for c in mino:
        val = s.groupby("minority_weight")[f"val_acc_{c}"].mean()
        w = float(val.idxmax())  # ties: the smallest weight (idxmax keeps the first)
        weights[c] = w
        chosen = s[s["minority_weight"] == w]
        rows.append({"class": class_names(sweep)[c], "best weight": f"{w:g}", "validation accuracy": cell(chosen[f"val_acc_{c}"]),
                     "test accuracy (reported)": cell(chosen[f"acc_{c}"]), "weights compared": len(val)})
    return {"weights": weights, "table": pd.DataFrame(rows)}


def class_weights_command(t: pd.DataFrame, weights) -> str:
    """The `python -m tuner.search lstm_class_weights ...` command with the same data, budget and seeds."""
    args = ["python", "-m", "tuner.search", "lstm_class_weights"]
    first = t.iloc[0]
    if isinstance(first.get("budget"), str) and first["budget"]:
        args += ["--budget", first["budget"]]
    dataset = first.get("dataset_requested", first.get("dataset"))
    if isinstance(dataset, str):
        args += ["--dataset", dataset]
    if isinstance(first.get("data_dir"), str):
        args += ["--data-dir", first["data_dir"]]
    seeds = sorted(int(s) for s in t["seed"].dropna().unique())
    if len(seeds) > 1 or seeds != [0]:
        args += ["--seeds", ",".join(map(str, seeds))]
    args += ["--set", "class_weights=[" + ", ".join(f"{w:g}" for w in weights) + "]"]
    return shlex.join(args)


def _confusions(doc, t, sweep, fig_dir, exp):
    """Test confusion matrices (summed over seeds, at the selected epochs): unbalanced, the best uniform
    weight (on validation), the per-class weights when run."""
    if "best_confusion" not in t:
        return
    picks = [("unbalanced", t[t["group"].astype(str) == "unbalanced"])]
    w = sweep[sweep["minority_weight"] != 1]
    if len(w):
        best_w = w.groupby("minority_weight")["val_balanced_acc"].mean().idxmax()
        picks.append((f"weight {best_w:g} (best on validation)", w[w["minority_weight"] == best_w]))
    picks.append(("per-class weights", t[t["group"].astype(str) == "class_weights"]))
    picks = [(label, r) for label, r in picks if len(r) and r["best_confusion"].notna().all()]
    if not picks:
        return
    doc.h(3, "Confusion matrices")
    mino = compare.minority_classes(t)
    for label, r in picks:
        cm = np.sum([json.loads(c) for c in r["best_confusion"].astype(str)], axis=0)
        tag = "".join(ch if ch.isalnum() else "_" for ch in label.split(" (")[0])
        png = plots.confusion_plot(cm.tolist(), fig_dir, f"{exp}_confusion_{tag}", f"{label}: test confusion "
                                   f"({len(r)} seed(s) summed)", mino, class_names(t))
        doc.figure(png, f"Test confusion matrix, {label}: colour = share of the true class, numbers = images.")


def _ros_weights(doc: render.Doc, t: pd.DataFrame, fig_dir: Path, exp: str) -> None:
    doc.p(SELECTION_NOTE)
    t = t.copy()
    t["arm"] = t["group"].astype(str).str.split(":").str[-1]  # "cnn:ros_0.2" -> "ros_0.2"
    t["rotated"] = rotation_label(t)
    keep = t["minority_keep"].fillna(0.1) if "minority_keep" in t else pd.Series(0.1, index=t.index)
    # ROS target = 1/rho; without over-sampling the minority count is the kept fraction itself
    t["inv_rho"] = np.where(t["ros_target"].fillna(0) > 0, t["ros_target"].fillna(0), keep) if "ros_target" in t else keep
    models = list(dict.fromkeys(t["model"].astype(str)))
    base = [g for g in ("balanced", "unbalanced") if g in set(t["arm"])]
    if base:
        doc.h(3, "Baselines")
        rows = []
        for model in models:
            for g in base:
                r = t[(t["model"].astype(str) == model) & (t["arm"] == g)]
                rows.append({"model": model, "group": g, "n": len(r), **{plots.metric_label(m).replace(" (%)", ""):
                                                                        cell(r[m], ci=True) for m in SUMMARY}})
        doc.table(pd.DataFrame(rows), "Test metrics, mean ± sd [95% CI] over seeds, percent")
    unbalanced = t["arm"] == "unbalanced"
    for remedy, param, prefix in (("random over-sampling", "inv_rho", "ros_"), ("minority weight", "minority_weight", "weight_")):
        arm = t["arm"].str.startswith(prefix)
        if not arm.any():
            continue
        # the unbalanced run is the start of both curves, with and without rotation
        sub = pd.concat([t[arm], *(t[unbalanced].assign(rotated=r) for r in dict.fromkeys(["no", *t.loc[arm, "rotated"]]))])
        doc.h(3, f"{remedy.capitalize()} against {'1/ρ' if param == 'inv_rho' else 'the weight'}")
        rows = []
        for (model, rotated, value), r in sub.groupby(["model", "rotated", param], observed=True):
            rows.append({"model": model, "rotation ±25°": rotated,
                         "1/ρ" if param == "inv_rho" else "weight": f"{value:g}", "n": len(r),
                         **{plots.metric_label(m).replace(" (%)", "").replace("test accuracy, ", ""): cell(r[m])
                            for m in ("minority_acc", "majority_acc", "acc")},
                         **({"minority, final epoch": cell(r["final_minority_acc"])} if "final_minority_acc" in r
                            else {}),
                         **{m: cell(r[m]) for m in P_RATES}})
        doc.table(pd.DataFrame(rows), "Test accuracy and p-rates (% of a group's test images), mean ± sd over seeds. "
                  + "; ".join(f"{k}: {v}" for k, v in P_LABELS.items()) + ". Rotation: of the " + ROTATION_NOTE)
        doc.figure(p_rates_grid(sub, param, models, fig_dir, f"{exp}_p_rates_{prefix.rstrip('_')}"),
                   f"p-rates against {X_LABELS[param]} for each model: where the wrongly classified test images "
                   "of each group go. Mean over seeds, band = 95% CI; the leftmost point is the unbalanced run.")
    doc.h(3, "Model size")
    rows = [{"model": m, "parameters": int(r["num_params"].iloc[0]), "model_bytes": int(r["model_bytes"].iloc[0]),
             "MiB": f"{r['model_bytes'].iloc[0] / 2**20:.2f}"} for m, r in t.groupby("model", observed=True)
            if "model_bytes" in r]
    doc.table(pd.DataFrame(rows), "Size of each model: trainable parameters and bytes of parameters and buffers")


TITLES = {
    "rnn_noise_irm": "Elman vs LSTM; noise augmentation and IRM on imbalanced MNIST",
    "lstm_weighted_loss": "LSTM-MLP: augmentation and class-weighted loss on imbalanced MNIST",
    "ros_vs_weights": "Over-sampling vs loss weights, with and without rotation, CNN and LSTM",
    "cifar_vgg": "CIFAR-10: CNN vs VGG; noise augmentation and IRM on imbalanced CIFAR-10",
}
# the follow-up run of a study is laid out with the study it follows
FOLLOWS = {"lstm_class_weights": "lstm_weighted_loss"}


def study_doc(trials: pd.DataFrame, epochs: pd.DataFrame, out_dir) -> render.Doc:
    """One section per study present in `trials` (nothing for other experiments)."""
    doc = render.Doc()
    if "experiment" not in trials or "group" not in trials:
        return doc
    t = selected(trials)
    last = final(trials)
    exp_of = t["experiment"].astype(str).replace(FOLLOWS)
    fig_dir = Path(out_dir) / "figures"
    for exp in [e for e in TITLES if e in set(exp_of)]:
        sub = t[exp_of == exp]
        doc.h(2, f"Study {exp}: {TITLES[exp]}")
        if exp in ("rnn_noise_irm", "cifar_vgg"):
            _noise_irm(doc, sub, epochs, fig_dir, exp)
        elif exp == "lstm_weighted_loss":
            _weighted(doc, sub, fig_dir, exp)
        else:
            _ros_weights(doc, sub, fig_dir, exp)
        claims_section(doc, sub, last.loc[sub.index], exp)
    return doc


def claims_section(doc: render.Doc, best: pd.DataFrame, last: pd.DataFrame | None, exp: str) -> None:
    """The study's original claims (declared with it, `search_spaces`), each with its verdict from the
    data at the best-validation epoch and at the final epoch (`analysis.claims`)."""
    from analysis import claims

    declared = claims.claims_for(exp)
    if not declared:
        return
    doc.h(3, "The original's claims, tested")
    doc.p(claims.NOTE)
    doc.table(claims.claims_table(best, last, declared), f"The claims of {exp}, one row each; differences in "
              "percentage points (the first arm or metric minus the second)")


def study_sections(trials: pd.DataFrame, epochs: pd.DataFrame, out_dir) -> list[tuple[str, str, list[Path]]]:
    """[(title, markdown, figure paths)], one per study present, for callers that want Markdown."""
    doc = study_doc(trials, epochs, out_dir)
    sections, current = [], None
    for b in doc.blocks:
        if b[0] == "h" and b[1] == 2:
            current = (b[2], render.Doc())
            sections.append(current)
        elif current is not None:
            current[1].blocks.append(b)
    return [(title, render.markdown(d, Path(out_dir)), [b[1] for b in d.blocks if b[0] == "fig"])
            for title, d in sections]
