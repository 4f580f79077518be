"""A readable report of one search or several: report.md, a self-contained report.html, figures, Parquet.

    python -m analysis.report RUN_DIR [RUN_DIR ...] [--out DIR] [--metric M] [--mode max|min]
                              [--epoch final|best] [--top 10]

Default --out: RUN_DIR/report (of the first run dir). The report says what was run, ranks trials
and configurations by the selection metric on VALIDATION and shows their TEST metrics with seed
statistics, compares the remedies that vary, lists failed trials and embeds the figures.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import sys
import traceback
import warnings
from pathlib import Path

import pandas as pd

from analysis import compare, export, fmt, importance, plots, render, stats, studies

SUMMARY_METRICS = ("acc", "minority_acc", "majority_acc", "balanced_acc")
MAX_SWEEP_VALUES = 12  # more distinct values than this (continuous search): a scatter instead of a per-value table
MAX_GROUPS = 20


# --- the report -------------------------------------------------------------------------------
class Report:
    def __init__(self, trials: pd.DataFrame, epochs: pd.DataFrame, out: Path, epoch: str = "best", top: int = 10):
        self.raw, self.epochs, self.out, self.epoch, self.top = trials, epochs, Path(out), epoch, top
        self.figdir = self.out / "figures"
        self.metric = _first(trials, "selection_metric", trials.attrs.get("selection_metric", "val_balanced_acc"))
        self.mode = _first(trials, "selection_mode", trials.attrs.get("selection_mode") or "max")
        self.trials = epoch_view(trials, epoch)
        self.all_done = compare.completed(self.trials)
        # The finished trials of the experiment being written (the sections below run once per experiment),
        # with the heading suffix and figure-name tag that tell experiments apart.
        self.done, self.suffix, self.tag = self.all_done, "", ""
        self.doc = render.Doc()

    # Each figure is optional: a failing plot becomes a note, never a missing report.
    def figure(self, make, caption: str):
        try:
            png = make()
        except Exception as e:  # noqa: BLE001
            self.doc.p(f"(Figure skipped: {type(e).__name__}: {e})")
            traceback.print_exc(file=sys.stderr)
            return None
        self.doc.figure(png, caption)
        return png

    def build(self, title: str) -> render.Doc:
        d = self.doc
        d.h(1, title)
        d.p(f"Generated {dt.datetime.now().strftime('%Y-%m-%d %H:%M')} by `python -m analysis.report` from "
            f"{len(self.raw)} trials in {self.raw['run'].nunique()} run(s).")
        self.what_was_run()
        self.how_to_read()
        d.blocks += studies.study_doc(self.raw, self.epochs, self.out).blocks  # a study's own layout, if any
        if self.all_done.empty or self.metric not in self.all_done or self.all_done[self.metric].isna().all():
            d.h(2, "Results")
            d.p(f"No finished trial reported `{self.metric}` yet: nothing to rank. Trials by status: "
                + ", ".join(f"{n} {s}" for s, n in self.raw["status"].value_counts().items() if n) + ".")
        else:
            exps = list(dict.fromkeys(self.all_done["experiment"].astype(str))) if "experiment" in self.all_done else [""]
            for exp in exps:
                sub = self.all_done[self.all_done["experiment"].astype(str) == exp] if len(exps) > 1 else self.all_done
                if sub[self.metric].isna().all():
                    continue
                self.done = sub
                self.suffix, self.tag = (f" — experiment {exp}", fmt.tag(exp)) if len(exps) > 1 else ("", "")
                self.top_trials()
                self.best_configuration()
                self.comparisons(sub, self.suffix, self.tag.lstrip("_"))
                self.task_sections(self.raw.loc[sub.index])  # a study task's own tables (digit_pairs)
                self.trial_details()
                self.search_view()
                if "objectives" in sub and sub["objectives"].notna().any():
                    self.pareto(self.raw.loc[sub.index])  # the final epochs: what the searcher was told
        self.failures()
        self.files()
        return d

    # --- sections ---
    def what_was_run(self):
        d, t = self.doc, self.raw
        d.h(2, "What was run")
        rows = []
        for run, r in t.groupby("run", observed=True, sort=False):
            counts = r["status"].astype(str).value_counts()
            hosts = sorted(set(r["hostname"].dropna().astype(str))) if "hostname" in r else []
            started = (r["timestamp"] - r["wall_time_s"]).min() if {"timestamp", "wall_time_s"} <= set(r) else math.nan
            rows.append({
                "run": run,
                "experiment": fmt.values(r, "experiment"),
                "dataset used": fmt.values(r, "dataset") + fmt.requested(r),
                "model": fmt.values(r, "model"),
                "trials": len(r),
                "status": ", ".join(f"{n} {s}" for s, n in counts.items() if n),
                "stopped early (ASHA)": int(r["asha_stopped"].sum()),
                "epochs planned / run": f"{fmt.values(r, 'epochs')} / " + (f"{r['epochs_run'].min()}" if r["epochs_run"].nunique() == 1
                                                                          else f"{r['epochs_run'].min()}–{r['epochs_run'].max()}"),
                "budget": fmt.values(r, "budget"),
                "compute per trial": _compute(r),
                "searcher": fmt.values(r, "searcher") + (f" on {fmt.values(r, 'search_metric')}" if "search_metric" in r else ""),
                "hardware (hosts)": (", ".join(hosts) or "–") + _nodes(r),
                "trial time (sum)": fmt.duration(r["wall_time_s"].sum()),
                "started": dt.datetime.fromtimestamp(float(started)).strftime("%Y-%m-%d %H:%M") if not pd.isna(started) else "–",
            })
        table = pd.DataFrame(rows).T.reset_index()
        table.columns = ["", *[str(c) for c in table.iloc[0, 1:]]]
        d.table(table.iloc[1:], "One column per run")
        self.dataset_classes()
        self.imbalance()
        searched = compare.varying(t)
        if searched:
            items = []
            for c in searched:
                vals = t[c].dropna().unique()
                items.append(f"`{c}`: " + (", ".join(fmt.value_str(v) for v in sorted(vals, key=str)[:12]) if len(vals) <= 12 else
                                           f"{len(vals)} values from {fmt.value_str(min(vals))} to {fmt.value_str(max(vals))}"))
            d.p("Parameters that vary between trials (seeds aside):")
            d.bullets(items)
        seeds = sorted(t["seed"].dropna().unique()) if "seed" in t else []
        if seeds:
            d.p(f"Seeds: {', '.join(map(str, seeds))}.")

    def dataset_classes(self):
        """Own data (and any run that recorded them): the dataset, its classes and their counts as found."""
        t = self.raw
        if "found_counts" not in t or t["found_counts"].isna().all():
            return
        for dataset, r in t.dropna(subset=["found_counts"]).groupby("dataset", observed=True):
            first = r.iloc[0]
            found = json.loads(str(first["found_counts"]))
            test = json.loads(str(first["test_counts"])) if "test_counts" in r and pd.notna(first["test_counts"]) else None
            names, mino = compare.class_labels(r), compare.minority_classes(r)
            rows = [{"class": k, "name": names.get(k, str(k)), "minority": "yes" if k in mino else "",
                     "training part (as found)": n, **({"test": test[k]} if test else {})} for k, n in enumerate(found)]
            self.doc.table(pd.DataFrame(rows), f"Dataset `{dataset}`: {len(found)} classes and their counts as found "
                           "(training part before any imposed imbalance, and test part)")

    def imbalance(self):
        t = self.raw
        if "train_counts" not in t or t["train_counts"].isna().all():
            return
        rows = []
        for counts, r in t.dropna(subset=["train_counts"]).groupby("train_counts", observed=True):
            c = json.loads(counts)
            mino, names = compare.minority_classes(r), compare.class_labels(r)
            rows.append({"runs": ", ".join(sorted(set(r["run"].astype(str)))),
                         **{f"{names.get(k, k)}{'*' if k in mino else ''}": n for k, n in enumerate(c)},
                         "total": sum(c), "minority : majority (per class)": fmt.ratio(c, mino)})
        self.doc.table(pd.DataFrame(rows), "Training images per class after the imbalance, before any over-sampling "
                       "(* = minority class)")

    def how_to_read(self):
        d = self.doc
        d.h(2, "How to read this report")
        which = "its final epoch" if self.epoch == "final" else f"its epoch with the best `{self.metric}`"
        d.bullets([
            f"Trials and configurations are **ranked on validation data** by `{self.metric}` "
            f"({'higher' if self.mode == 'max' else 'lower'} is better); test data is only reported, never used to choose.",
            f"Each trial is represented by {which}"
            + (" (as in the search's summary), among the epochs it ran. " if self.epoch == "best" else
               ". Trials stopped early by ASHA count with their last epoch; ") +
            "failed trials are left out of all statistics.",
            "Accuracies are in percent. *minority* = mean accuracy over the minority classes (the ones kept at a "
            "fraction of their images; on your own data, those found with fewer than half the median count unless "
            "named with `minority_classes`), *majority* = over the others, *balanced* = mean over all classes.",
            "Values over seeds read `mean ± std [95% CI]`: std = sample standard deviation over the n seeds, "
            "CI = mean ± t(0.975, n−1)·std/√n (the interval of the mean); with one seed only the mean is shown. "
            "With 2–3 seeds the CI is wide (t = 12.7 and 4.3) and can reach beyond 0–100%: that is the honest width.",
            "A paired t-test compares two configurations on the seeds both ran (same seed = same data split and "
            "initialisation). **within noise** means the difference is not significant at 5% (or fewer than 2 "
            "common seeds): do not call one better than the other.",
        ])

    def top_trials(self):
        d, t = self.doc, self.done.dropna(subset=[self.metric])
        d.h(2, f"Top trials by {fmt.short(self.metric)}{self.suffix}")
        ranked = t.sort_values(self.metric, ascending=self.mode == "min").head(self.top)
        params = compare.varying(self.done)
        rows = []
        for i, (_, r) in enumerate(ranked.iterrows(), 1):
            row = {"rank": i}
            if self.done["run"].nunique() > 1:
                row["run"] = r["run"]
            row["trial"] = r["trial_id"]
            row.update({p: fmt.value_str(r[p]) for p in params})
            if "seed" in r:
                row["seed"] = r["seed"]
            row["epochs"] = f"{r['epochs_run']}" + (" (ASHA stop)" if r["asha_stopped"] else "")
            row[fmt.header(self.metric)] = fmt.num(r[self.metric], self.metric)
            row.update({fmt.header(m): fmt.num(r[m], m) for m in SUMMARY_METRICS if m in r})
            rows.append(row)
        d.table(pd.DataFrame(rows), f"The {len(rows)} best of {len(t)} finished trials; test metrics in percent")

    def task_sections(self, trials):
        """The tables a study task adds (tuner.tasks.Task.report_sections), for the task that ran:
        the `task` column, or for results without it, the task of their dataset."""
        from tuner import tasks

        if "task" in trials and trials["task"].notna().any():
            names = trials["task"].dropna().astype(str).unique()
        else:
            requested = "dataset_requested" if "dataset_requested" in trials else "dataset"
            names = {tasks.for_config({"dataset": str(d)}).name for d in trials[requested].dropna().unique()} \
                if requested in trials else ()
        for name in names:
            sections = tasks.get(name).report_sections(trials)  # built once: a study table per task
            for heading, caption, table in sections:
                self.doc.h(2, f"{heading}{self.suffix}")
                self.doc.table(table, caption)
            if sections and "experiment" in trials:
                # the study's claims: a task study's protocol is the final epoch; the best-validation epoch beside it
                done = compare.completed(trials)
                for exp in trials["experiment"].dropna().astype(str).unique():
                    studies.claims_section(self.doc, studies.selected(trials).loc[done.index], done, exp)

    def config_scores(self, trials: pd.DataFrame, cols: list[str] | None = None) -> tuple[pd.DataFrame, list[str]]:
        """One row per configuration (varying params, seeds aside; or `cols`): selection metric over
        seeds, sorted best first."""
        cols = compare.varying(trials) if cols is None else cols
        # element-wise str(): under pandas 3 astype(str) keeps NaN as a missing value
        key = trials[cols].astype(object).map(str).agg(" | ".join, axis=1) if cols else pd.Series("all", index=trials.index)
        rows = []
        for k, grp in trials.groupby(key, sort=False):
            s = stats.summarize(grp[self.metric])
            rows.append({"key": k, "config": fmt.config_label(grp.iloc[0], cols), **s, "index": grp.index})
        scores = pd.DataFrame(rows).sort_values("mean", ascending=self.mode == "min").reset_index(drop=True)
        return scores, cols

    def reference_mask(self, trials: pd.DataFrame) -> pd.Series:
        """Trials that kept more of the minority images than the others (a balanced-data reference
        arm, e.g. lstm_best's `balanced_reference`): trained on other data, so shown beside the
        candidates but never ranked among them."""
        if "minority_keep" not in trials or trials["minority_keep"].nunique() < 2:
            return pd.Series(False, index=trials.index)
        return trials["minority_keep"] > trials["minority_keep"].min()

    def candidate_scores(self) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
        """(candidates' config scores, references' config scores, the columns that tell configs
        apart): the finished trials with the selection metric, references set aside."""
        scored = self.done.dropna(subset=[self.metric])
        is_ref = self.reference_mask(scored)
        cols = compare.varying(scored)
        scores, _ = self.config_scores(scored[~is_ref], cols)
        refs = self.config_scores(scored[is_ref], cols)[0] if is_ref.any() else scores.iloc[:0]
        return scores, refs, cols

    def best_configuration(self):
        d = self.doc
        scores, refs, cols = self.candidate_scores()
        d.h(2, f"Best configuration (mean over seeds){self.suffix}")
        rows = []
        for label, table in (("", scores.head(self.top)), (" (reference: more minority images, not ranked)", refs)):
            for _, s in table.iterrows():
                grp = self.done.loc[s["index"]]
                rows.append({"configuration": s["config"] + label, "seeds (n)": s["n"],
                             fmt.header(self.metric): fmt.ci(s, self.metric),
                             **{fmt.header(m): fmt.ci(stats.summarize(grp[m]), m) for m in SUMMARY_METRICS if m in grp}})
        d.table(pd.DataFrame(rows), "Configurations ranked by mean validation score over their seeds; "
                "test metrics as mean ± std [95% CI] in percent")
        if scores.empty:
            return
        best = scores.iloc[0]
        best_trials = self.done.loc[best["index"]]
        summary = {m: stats.summarize(best_trials[m]) for m in SUMMARY_METRICS if m in best_trials}
        d.p(f"**Best configuration: {best['config']}** — {fmt.short(self.metric)} {fmt.ci(best, self.metric)} over "
            f"{best['n']} seed(s); on test: " + ", ".join(f"{fmt.short(m)} {fmt.ci(s, m)}" for m, s in summary.items()) + ".")
        if best["n"] < 2:
            d.p("The best configuration has a single finished seed: its rank may be luck. Re-run the top "
                "configurations with 3–5 seeds before drawing conclusions.")
        lines = []
        if len(scores) > 1:
            runner = scores.iloc[1]
            r = self._paired(runner["index"], best["index"], self.metric)
            lines.append(f"vs the runner-up ({runner['config']}) on {fmt.short(self.metric)}: best minus runner-up "
                         + fmt.paired_text(r, self.metric, "the two cannot be told apart"))
        base = self.baseline_config(scores, cols)
        if base is not None and base["key"] != best["key"]:
            for m in ("balanced_acc", "minority_acc"):
                if m in self.done:
                    r = self._paired(base["index"], best["index"], m)
                    lines.append(f"vs the no-remedy baseline ({base['config']}) on {fmt.short(m)}: "
                                 + fmt.paired_text(r, m, "no better than the baseline beyond seed noise"))
        elif base is None and cols:
            lines.append("No configuration of this search has every remedy switched off, so there is no baseline to test against.")
        for _, ref in refs.iterrows():  # how much of the gap to the balanced data is left
            for m in ("balanced_acc", "minority_acc", "majority_acc"):
                if m in self.done:
                    r = self._paired(ref["index"], best["index"], m)
                    lines.append(f"vs the reference ({ref['config']}) on {fmt.short(m)}: best minus reference "
                                 + fmt.paired_text(r, m, "the gap cannot be told from seed noise"))
        if lines:
            d.p("Paired t-tests over seeds of the best configuration:")
            d.bullets(lines)

    def baseline_config(self, scores: pd.DataFrame, cols: list[str]):
        remedies = [c for c in cols if c in compare.NO_REMEDY]
        if not remedies:
            return None
        for _, s in scores.iterrows():
            row = self.done.loc[s["index"]].iloc[0]
            if all(row[c] == compare.NO_REMEDY[c] for c in remedies):
                return s
        return None

    def _paired(self, base_index, cand_index, metric):
        mask_a = pd.Series(self.done.index.isin(base_index), index=self.done.index)
        mask_b = pd.Series(self.done.index.isin(cand_index), index=self.done.index)
        return compare.paired_test(self.done, mask_a, mask_b, metric)

    def comparisons(self, trials: pd.DataFrame, suffix: str, tag: str):
        d = self.doc
        alias = compare.aliases(trials, [p for p in compare.varying(trials) if p != "experiment"])
        params = list(alias)
        d.h(2, "Remedy comparisons" + suffix)
        if not params:
            d.p("No parameter varies between the finished trials of this experiment (only seeds): nothing to compare.")
            return
        for p in params:
            values = trials[p].dropna().unique()
            others = [o for o in params if o != p]
            numeric = pd.api.types.is_numeric_dtype(trials[p]) and not pd.api.types.is_bool_dtype(trials[p])
            label = plots.param_label(p)
            d.h(3, (f"{label} (`{p}`)" if label != p else f"`{p}`") + suffix)
            if alias[p]:
                pairs = trials.drop_duplicates(p)
                d.p(f"{', '.join(f'`{q}`' for q in alias[p])} varies with `{p}` one to one ("
                    + "; ".join(f"{fmt.value_str(r[p])}: " + ", ".join(fmt.value_str(r[q]) for q in alias[p])
                                for _, r in pairs.iterrows()) + "), so it is compared here too.")
            if numeric and (len(values) > MAX_SWEEP_VALUES or (len(values) > 5 and trials[p].value_counts().median() < 2)):
                d.p(f"`{p}` took {len(values)} distinct values, mostly one trial each (a continuous search): one point per trial below; "
                    "see the parameter importance for its overall effect.")
                self.figure(lambda: plots.scatter_plot(trials, p, self.metric, self.figdir, f"scatter_{p}{fmt.tag(tag)}"),
                            f"{fmt.short(self.metric)} of each trial against {plots.param_label(p)}.")
                continue
            if not numeric and len(values) > MAX_GROUPS:
                d.p(f"`{p}` has {len(values)} distinct values: too many to compare one by one.")
                continue
            if others:
                d.p(f"Pooled over the other parameters that vary ({', '.join(others)}): each cell mixes their values. "
                    "The table after it picks, for each value, the best configuration on validation instead.")
            metrics = [m for m in (*SUMMARY_METRICS, self.metric) if m in trials]
            table = compare.sweep(trials, p, metrics)
            d.table(self._wide(table, p, metrics), f"{plots.param_label(p)}: mean ± std [95% CI] over trials (seeds), percent")
            if numeric:
                plot_table = table[table["metric"].isin(["minority_acc", "majority_acc", "acc"])]
                self.figure(lambda: plots.sweep_plot(plot_table, p, self.figdir, f"sweep_{p}{fmt.tag(tag)}"),
                            f"Test accuracy of minority classes, majority classes and overall against {plots.param_label(p)}; "
                            "line = mean over seeds, band = 95% CI.")
            if others:
                best = compare.best_per_remedy(trials, p, self.metric, self.mode, SUMMARY_METRICS, config_cols=params)
                d.table(self._best_wide(best, p), f"Best configuration per value of {p} (chosen on validation), test metrics")
            self._paired_table(trials, p)
            if p == "group" and any(c.startswith("acc_") and c[4:].isdigit() for c in trials.columns):
                self.per_class(trials, tag)
            if p in ("ros_target", "minority_weight") and numeric and "p_I_to_A" in trials:
                self.figure(lambda: plots.p_rates_plot(trials, p, self.figdir, f"p_rates_{p}{fmt.tag(tag)}"),
                            f"Group-to-group prediction rates against {plots.param_label(p)}: left, where true minority "
                            "images are predicted; right, true majority images. Mean over seeds, band = 95% CI.")
            if p == "model" and "group" in params:  # (params holds no aliases: several models per group)
                self.model_table(trials)

    def _wide(self, table: pd.DataFrame, p: str, metrics) -> pd.DataFrame:
        rows = []
        cells = dict(list(table.groupby(p, observed=True)))
        for v in compare.value_order(self.done, p):
            if v not in cells:
                continue
            grp = cells[v]
            by = {r["metric"]: r for _, r in grp.iterrows()}
            row = {p: fmt.value_str(v), "n": int(grp["n"].max())}
            row.update({fmt.header(m): fmt.ci(by[m], m) for m in metrics if m in by})
            rows.append(row)
        return pd.DataFrame(rows)

    def _best_wide(self, best: pd.DataFrame, p: str) -> pd.DataFrame:
        rows = []
        cells = dict(list(best.groupby(p, observed=True)))
        for v in compare.value_order(self.done, p):
            if v not in cells:
                continue
            grp = cells[v]
            first = grp.iloc[0]
            row = {p: fmt.value_str(v), "best configuration": first["config"], "configs compared": first["n_configs"],
                   "n": int(grp["n"].max())}
            row.update({fmt.header(r["metric"]): fmt.ci(r, r["metric"]) for _, r in grp.iterrows()})
            rows.append(row)
        return pd.DataFrame(rows)

    def _paired_table(self, trials: pd.DataFrame, p: str):
        if "seed" not in trials or trials["seed"].nunique() < 2:
            return
        base = compare.baseline_value(trials, p)
        rows = []
        for m in ("balanced_acc", "minority_acc"):
            if m not in trials:
                continue
            res = compare.paired_vs_baseline(trials, p, m, baseline=base)
            for _, r in res.iterrows():
                rows.append({p: fmt.value_str(r[p]), "metric": fmt.header(m), "common seeds": r["n"],
                             "difference vs baseline": fmt.diff(r, m), "p (paired t)": fmt.pvalue(r["p_value"]),
                             "p adjusted (BH)": fmt.pvalue(r["p_adjusted"]),
                             "within noise": "yes" if r["within_noise"] else "no"})
        if rows:
            family = len(res)
            self.doc.table(pd.DataFrame(rows), f"Paired t-tests over seeds against the baseline {p}={fmt.value_str(base)} "
                           "(difference in percentage points, mean [95% CI]). The values of one metric are one family "
                           f"of {family} tests: p is Benjamini-Hochberg adjusted over them, and 'within noise' is "
                           "decided on the adjusted p (>= 0.05), so a sweep of many values claims no chance difference")

    def per_class(self, trials: pd.DataFrame, tag: str):
        table = compare.per_class_table(trials, "group", "acc_", stats_=("mean", "std", "n"))
        groups = list(dict.fromkeys(table.columns.get_level_values(0)))
        mino, names = compare.minority_classes(trials), compare.class_labels(trials)
        rows = []
        for cls in table.index:
            label = names.get(int(cls), cls) + (" (minority)" if int(cls) in mino else "") if cls.isdigit() else cls
            rows.append({"class": label, **{str(g): fmt.num(table.loc[cls, (g, "mean")], "acc")
                                            + (f" ± {fmt.num(table.loc[cls, (g, 'std')], 'acc')}" if table.loc[cls, (g, "n")] > 1 else "")
                                            for g in groups}})
        self.doc.table(pd.DataFrame(rows), "Per-class test accuracy by group: mean ± std over trials, percent")
        self.figure(lambda: plots.per_class_plot(trials, self.figdir, "group", "acc_", f"per_class_group{fmt.tag(tag)}"),
                    "Per-class test accuracy for each group (mean over seeds, error bar = std); grey background = minority classes.")

    def model_table(self, trials: pd.DataFrame):
        models = list(dict.fromkeys(trials["model"].astype(str)))
        wide = compare.model_vs_model(trials, models, "group", SUMMARY_METRICS)
        rows = []
        for (g, m), r in wide.iterrows():
            rows.append({"group": g, "metric": fmt.header(m), **{mod: fmt.ci(r[mod], m) for mod in models if mod in r.index.get_level_values(0)}})
        self.doc.table(pd.DataFrame(rows), "The same remedies side by side per model: mean ± std [95% CI] over seeds, percent")

    def trial_details(self):
        d = self.doc
        t = self.done.dropna(subset=[self.metric])
        t = t[~self.reference_mask(t)].sort_values(self.metric, ascending=self.mode == "min")  # candidates only
        if t.empty:
            return
        best = t.iloc[0]
        params = compare.varying(self.done)
        d.h(2, f"The best trial{self.suffix}")
        unit = "%" if plots.is_percent(self.metric) else ""
        d.p(f"Trial `{best['trial_id']}` ({fmt.config_label(best, params)}, seed {best.get('seed', '–')}) has the best "
            f"{fmt.short(self.metric)}: {fmt.num(best[self.metric], self.metric)}{unit}. Its files are in "
            f"`{best['run']}/{best['logdir']}`; best epoch {fmt.num(best.get('best_epoch'))}, "
            + _checkpoint_note(best))
        cm_col = "confusion"
        if cm_col in best and isinstance(best[cm_col], str):
            self.figure(lambda: plots.confusion_plot(best[cm_col], self.figdir, f"confusion_best{self.tag}",
                                                     f"Test confusion matrix of trial {best['trial_id']}",
                                                     compare.minority_classes(self.done), compare.class_labels(self.done)),
                        "Test confusion matrix of the best trial: colour = share of each true class (row), "
                        "numbers = images.")
        chosen = list(dict.fromkeys(t["trial_id"].astype(str).head(3)))
        scores, _, cols = self.candidate_scores()
        base = self.baseline_config(scores, cols)
        if base is not None:
            b = self.done.loc[base["index"]]
            same_seed = b[b["seed"] == best.get("seed")] if "seed" in b else b
            chosen.append(str((same_seed if len(same_seed) else b).iloc[0]["trial_id"]))
        chosen = list(dict.fromkeys(chosen))
        labels = {}
        for tid in chosen:
            r = self.done[self.done["trial_id"].astype(str) == tid].iloc[0]
            labels[tid] = fmt.config_label(r, params) + (f", seed {r['seed']}" if "seed" in r else "")
        if not self.epochs.empty:
            self.figure(lambda: plots.learning_curves_plot(self.epochs, chosen, self.figdir, labels, f"learning_curves{self.tag}"),
                        "Learning curves of the three best trials" + (" and the no-remedy baseline" if base is not None else "")
                        + ": train (solid) and validation (dashed) per epoch.")

    def search_view(self):
        t = self.done
        searchers = set(t["searcher"].dropna().astype(str)) if "searcher" in t else set()
        if not searchers - {"basic-variant"}:
            return
        d = self.doc
        d.h(2, "Search view (" + ", ".join(sorted(searchers - {"basic-variant"})) + ")" + self.suffix)
        for run, r in t.groupby("run", observed=True, sort=False):
            if str(r["searcher"].iloc[0]) == "basic-variant":
                continue
            tag = self.tag + (fmt.tag(str(run)) if t["run"].nunique() > 1 else "")
            self.figure(lambda: plots.history_plot(r, self.metric, self.mode, self.figdir, f"optimisation_history{tag}"),
                        f"Optimisation history of run {run}: {fmt.short(self.metric)} of each trial in the order the searcher "
                        "proposed it, and the best so far.")
            params = [p for p in compare.varying(r) if p != "experiment"]
            try:
                imp, method = importance.run_importance(r, params, self.metric, self.mode)
            except ValueError as e:
                d.p(f"Parameter importance skipped for run {run}: {e}.")
                continue
            self.figure(lambda: plots.importance_plot(imp, method, self.metric, self.figdir, f"param_importance{tag}"),
                        f"How much of the variation of {fmt.short(self.metric)} each searched parameter explains ({method}, "
                        f"{len(r)} trials; indicative only with few trials).")

    def pareto(self, t: pd.DataFrame):
        """A multi-objective search: its Pareto front and knee, as the search's summary printed them
        (one mode for every objective, as the search gives its searcher)."""
        from tuner.pareto import front_and_knee

        objectives = str(t["objectives"].dropna().iloc[0]).split(",")
        modes = [self.mode] * len(objectives)
        t = t.dropna(subset=objectives) if set(objectives) <= set(t.columns) else t.iloc[:0]
        d = self.doc
        d.h(2, "Pareto front of " + ", ".join(f"`{m}`" for m in objectives) + self.suffix)
        if t.empty:
            d.p("No finished trial reported every objective: no front to draw.")
            return
        points = t[objectives].to_numpy(float)
        on_front, order, knee_row = front_and_knee(points, modes)
        front, knee = t.iloc[order], t.index[knee_row]
        params = [p for p in compare.varying(t) if p not in ("experiment", "objectives")]
        rows = [{"knee": "*" if i == knee else "", "trial": r["trial_id"], **{p: fmt.num(r[p], p) for p in params},
                 "epochs": r["epochs_run"], **{fmt.header(m): fmt.num(r[m], m) for m in objectives},
                 **{fmt.header(m): fmt.num(r[m], m) for m in SUMMARY_METRICS if m in r}} for i, r in front.iterrows()]
        d.table(pd.DataFrame(rows), f"Front: the {len(front)} of {len(t)} trials that no other trial beats in every objective "
                "(final epochs, validation; test metrics at that epoch). Knee (*): the front point closest to the ideal "
                "after scaling each objective to [0, 1] over the front.")
        if len(objectives) == 2:
            self.figure(lambda: plots.pareto_plot(points, on_front, points[knee_row], objectives,
                                                  self.figdir, f"pareto{self.tag}"),
                        f"All {len(t)} trials (grey), the Pareto front (red) and its knee (star).")

    def failures(self):
        d, t = self.doc, self.raw
        d.h(2, "Failed and unfinished trials")
        self.stopped_by_trainable()
        bad = t[t["status"].astype(str) != "TERMINATED"]
        if bad.empty:
            d.p("No trial failed; none is still running or pending.")
            return
        params = compare.varying(t)
        rows = [{"run": r["run"], "trial": r["trial_id"], "status": r["status"], "config": fmt.config_label(r, params),
                 "seed": r.get("seed", "–"), "epochs run": r["epochs_run"], "error": r["error"] if isinstance(r["error"], str) else "",
                 "error file": r["error_file"] if isinstance(r["error_file"], str) else ""} for _, r in bad.iterrows()]
        d.table(pd.DataFrame(rows), "Trials that did not finish (ERROR: raised an exception; RUNNING/PENDING: not done "
                "when the files were read). They are left out of all statistics above.")

    def stopped_by_trainable(self):
        """Trials that ended themselves (e.g. a non-finite loss): finished, but not a normal result;
        and trials that started over because their checkpoint was corrupt."""
        self._noted("stop_reason", "reason", "Trials the trainable stopped itself (status TERMINATED, so they do count "
                    "in the statistics above, with the epochs they ran)")
        self._noted("checkpoint_warning", "warning", "Trials restarted from epoch 1 because the checkpoint they were "
                    "to resume from was corrupt (their last attempt's epochs are the ones used)")

    def _noted(self, column: str, label: str, caption: str):
        t = self.raw
        if column not in t:
            return
        noted = t[t[column].notna() & (t[column].astype(str) != "")]
        if noted.empty:
            return
        params = compare.varying(t)
        rows = [{"run": r["run"], "trial": r["trial_id"], "config": fmt.config_label(r, params), "seed": r.get("seed", "–"),
                 "epochs run": r["epochs_run"], label: r[column]} for _, r in noted.iterrows()]
        self.doc.table(pd.DataFrame(rows), caption)

    def files(self):
        d = self.doc
        d.h(2, "Files")
        d.bullets(["`trials.parquet`: one row per trial (config, final and best-epoch metrics, status, error).",
                   "`epochs.parquet`: one row per trial and epoch (learning curves).",
                   "`figures/`: every figure as PNG and SVG.",
                   "Column meanings: `docs/results_schema.md` in the imbalance-tune repository."])
        d.code(f"import pandas as pd\ntrials = pd.read_parquet('{self.out / 'trials.parquet'}')\n"
               f"trials.sort_values('{self.metric}', ascending={self.mode == 'min'}).head()")


# --- helpers -----------------------------------------------------------------------------------
def _nodes(r: pd.DataFrame) -> str:
    n = r["node_id"].nunique() if "node_id" in r else 0
    return f" ({n} Ray nodes)" if n > 1 else ""


def _checkpoint_note(best: pd.Series) -> str:
    name = best.get("best_checkpoint_dir_name")
    if not isinstance(name, str):
        return "no checkpoint recorded."
    path = Path(str(best.get("run_path", ""))) / str(best["logdir"]) / name
    if path.exists():
        return f"its checkpoint: `{path}`."
    return (f"checkpoint `{name}` (not found at export: the run keeps only its best few checkpoints, or the run "
            "folder was moved).")


def epoch_view(trials: pd.DataFrame, epoch: str) -> pd.DataFrame:
    """epoch='best': every metric column replaced by its best-epoch value (best_<name>)."""
    if epoch == "final":
        return trials
    if epoch != "best":
        raise ValueError(f"epoch must be 'final' or 'best', not {epoch!r}")
    view = trials.copy()
    for c in trials.columns:
        if c.startswith("best_") and c[5:] in view.columns:
            view[c[5:]] = view[c]
    return view


def _first(t: pd.DataFrame, col: str, default):
    return str(t[col].dropna().iloc[0]) if col in t and t[col].notna().any() else default


def write_report(trials: pd.DataFrame, epochs: pd.DataFrame, out, title: str | None = None, epoch: str = "best",
                 top: int = 10) -> tuple[Path, Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    export.write_tables(trials, epochs, out)
    title = title or "Imbalance-remedy search: " + ", ".join(map(str, trials["run"].cat.categories if hasattr(trials["run"], "cat") else trials["run"].unique()))
    # figures/ is ours: drop the figures of an earlier report so the folder matches this one.
    for old in [*(out / "figures").glob("*.png"), *(out / "figures").glob("*.svg")]:
        old.unlink()
    rep = Report(trials, epochs, out, epoch, top)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # nanmean of an all-NaN cell etc.: shown as "–"
        doc = rep.build(title)
    md, html = out / "report.md", out / "report.html"
    md.write_text(render.markdown(doc, out))
    html.write_text(render.to_html(doc, title))
    return md, html


def make_report(run_dirs, out=None, metric: str | None = None, mode: str | None = None, epoch: str = "best",
                top: int = 10) -> tuple[Path, Path]:
    run_dirs = [run_dirs] if isinstance(run_dirs, (str, Path)) else list(run_dirs)
    # a remote run (s3://...) is read through pyarrow.fs; the report is written locally
    run_dirs = [str(p) if "://" in str(p) else Path(p) for p in run_dirs]
    if out is None and isinstance(run_dirs[0], str):
        raise FileNotFoundError(f"{run_dirs[0]} is remote: give --out DIR for the report")
    trials, epochs = export.build(run_dirs, metric, mode)
    return write_report(trials, epochs, out or run_dirs[0] / "report", epoch=epoch, top=top)


def _compute(r: pd.DataFrame) -> str:
    """What every trial's compute was bounded by: optimizer steps (`max_steps`, the same for every arm)
    or epochs (arms that draw more samples per epoch then take more steps), with the steps taken."""
    taken = r["steps"].dropna().astype(int) if "steps" in r else pd.Series(dtype=int)
    span = "" if taken.empty else str(taken.min()) if taken.min() == taken.max() else f"{taken.min()}–{taken.max()}"
    steps = f"; steps taken {span}" if span else ""
    if "max_steps" in r and r["max_steps"].notna().any():
        return f"max_steps={fmt.values(r, 'max_steps')} optimizer steps (compute-matched arms){steps}"
    return f"epochs (arms may differ in optimizer steps){steps}"


def main(argv=None, prog: str = "python -m analysis.report") -> int:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    ap.add_argument("run_dirs", nargs="+", help="Ray Tune run dir(s): STORAGE_PATH/NAME, local or s3://...")
    ap.add_argument("--out", type=Path, default=None, help="output folder (default: RUN_DIR/report)")
    ap.add_argument("--metric", default=None, help="selection metric on validation (default: the run's validation "
                    "metric, else val_balanced_acc)")
    ap.add_argument("--mode", choices=("max", "min"), default=None)
    # best: the same epoch as the search's summary, the study tables and the trial's kept checkpoint
    ap.add_argument("--epoch", choices=("final", "best"), default="best",
                    help="represent each trial by its best epoch on the selection metric (default, as the search's "
                         "summary does) or by its final epoch")
    ap.add_argument("--top", type=int, default=10, help="rows of the ranking tables")
    args = ap.parse_args(argv)
    try:
        md, html = make_report(args.run_dirs, args.out, args.metric, args.mode, args.epoch, args.top)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {md} and {html}")
    return 0


if __name__ == "__main__":
    from tuner.errors import one_line_warnings

    one_line_warnings()
    sys.exit(main())
