"""What the search prints: the plan before it starts (`describe`), the best configs when it ends
(`summary`; for a multi-objective search also the Pareto front, `pareto_summary`), and the command
that resumes an interrupted run (`resume_command`)."""
from __future__ import annotations

import numpy as np

from tuner import config as config_mod
from tuner import data as data_mod
from tuner.pareto import front_and_knee
from tuner.plan import PROG, SUMMARY_METRICS, Plan


def describe(plan: Plan, images=None, split_counts=None) -> str:
    exp = plan.experiment
    searched = ", ".join(f"{k} {v.describe()}" for k, v in plan.space.items()) or "nothing (fixed settings)"
    lines = [
        f"Experiment  {exp.name}: {exp.description}",
        f"Budget      {plan.budget_name}: {plan.num_trials()} trials x up to {plan.max_epochs} epochs, "
        f"seeds {plan.seeds}" + (f", arms {[a.get('group') for a in plan.arms]}" if plan.arms else ""),
        f"Model       {plan.fixed.get('model', config_mod.CORE['model'].default)}",
        f"Data        {images.name if images else plan.fixed['dataset']}"
        + (f", training counts per class {list(split_counts)}" if split_counts is not None else ""),
        *(f"            {line}" for line in (owndata_lines(plan, images) if images is not None else [])),
        f"Searcher    {plan.searcher} over {searched}; selecting on {plan.metric} ({plan.mode})",
        f"Scheduler   " + (f"ASHA (grace {plan.grace_period} epochs, reduction factor {plan.reduction_factor})"
                           if plan.asha else "none: every trial runs to the end"),
        f"Resources   {plan.cpus_per_trial:g} CPU, {plan.gpus_per_trial:g} GPU per trial"
        + (f", at most {plan.max_concurrent} at once" if plan.max_concurrent else ""),
        f"Results     {plan.run_dir}",
    ]
    return "\n".join(lines + [f"Note        {n}" for n in plan.notes])


def owndata_lines(plan: Plan, images) -> list[str]:
    """Own data: what was found (classes, counts, minority classes), shown before the search starts."""
    if not data_mod.is_own(images.name):
        return []
    from tuner import owndata

    return owndata.describe(images, plan.fixed.get("minority_classes", []))


def best_epoch_rows(result_grid, plan: Plan) -> list[dict]:
    """Per trial, the epoch with the best validation metric (selection never looks at test)."""
    rows = []
    for r in result_grid:
        df = r.metrics_dataframe
        row = {"trial_id": r.metrics.get("trial_id", "?") if r.metrics else "?", "status": "ERROR" if r.error else "OK",
               "config": r.config}
        if df is not None and len(df) and plan.metric in df:
            best = df.loc[df[plan.metric].idxmax() if plan.mode == "max" else df[plan.metric].idxmin()]
            row.update({k: best.get(k) for k in ("epoch", plan.metric, *SUMMARY_METRICS)})
            row["epochs_run"] = int(df["epoch"].max())
            # a trial that spent its budget in optimizer steps (--max-steps) ran to its end
            row["steps_done"] = bool(plan.max_steps and "steps" in df and df["steps"].max() >= plan.max_steps)
        if r.error:
            row["error"] = str(r.error).strip().splitlines()[-1][:120]
        rows.append(row)
    key = (lambda x: -x.get(plan.metric, float("-inf"))) if plan.mode == "max" else (lambda x: x.get(plan.metric, float("inf")))
    return sorted(rows, key=lambda x: key(x) if x.get(plan.metric) == x.get(plan.metric) and plan.metric in x else float("inf"))


def summary(result_grid, plan: Plan, top: int = 10, prog: str = PROG) -> str:
    rows = best_epoch_rows(result_grid, plan)
    params = plan.shown_params()
    head = ["rank", "trial", *params, "epoch", plan.metric, *SUMMARY_METRICS]
    table = [head]
    for i, row in enumerate([r for r in rows if plan.metric in r][:top], 1):
        table.append([str(i), row["trial_id"], *(_fmt(row["config"].get(p)) for p in params),
                      f"{row['epoch']:.0f}/{row['epochs_run']}", *(_fmt(row[m]) for m in (plan.metric, *SUMMARY_METRICS))])
    failed = [r for r in rows if r["status"] == "ERROR"]
    stopped = sum(1 for r in rows if r.get("epochs_run", plan.max_epochs) < plan.max_epochs and not r.get("steps_done"))
    out = [
        f"\nBest configs by {plan.metric} (validation; test metrics at that epoch):",
        _aligned(table),
        f"\n{len(rows)} trials: {len(rows) - len(failed)} finished ({stopped} stopped early by ASHA or a stop reason), "
        f"{len(failed)} failed.",
    ]
    out += [f"  failed {r['trial_id']}: {r.get('error', '')}" for r in failed]
    if plan.objectives:
        out += pareto_summary(result_grid, plan)
    report = "python -m analysis.report" if prog == PROG else f"{prog} report"
    out += [f"Results:  {plan.run_dir}", f"Analyse:  {report} {plan.run_dir}"]
    return "\n".join(out)


# --- multi-objective searches: the Pareto front and its knee ------------------------------------

def pareto_summary(result_grid, plan: Plan) -> list[str]:
    """The front over every trial's final epoch (what the multi-objective searcher was told), the
    knee point, and a plot `pareto.png` in the run folder."""
    objectives = list(plan.objectives)
    rows = [{"trial_id": r.metrics.get("trial_id", "?"), "config": r.config, **r.metrics} for r in result_grid
            if r.metrics and all(np.isfinite(r.metrics.get(m, np.nan)) for m in objectives)]
    if not rows:
        return ["\nPareto front: no trial reported " + ", ".join(objectives)]
    points = np.array([[row[m] for m in objectives] for row in rows])
    on_front, order, knee_row = front_and_knee(points, [plan.mode] * len(objectives))
    front, knee = [rows[i] for i in order], rows[knee_row]
    params = plan.shown_params(groups=False)
    head = ["knee", "trial", *params, "epoch", *objectives, *SUMMARY_METRICS]
    table = [head] + [["*" if r is knee else "", r["trial_id"], *(_fmt(r["config"].get(p)) for p in params),
                       str(r.get("epoch")), *(_fmt(r.get(m)) for m in (*objectives, *SUMMARY_METRICS))] for r in front]
    out = [
        f"\nPareto front of {', '.join(objectives)} ({plan.mode}) over {len(rows)} trials "
        "(final epochs, validation; test metrics at that epoch):",
        _aligned(table),
        f"Knee (*): trial {knee['trial_id']}, the front point closest to the ideal (every objective at its best) "
        "after scaling each objective to [0, 1] over the front.",
    ]
    if len(objectives) == 2 and "://" not in plan.storage_path:
        from analysis.plots import pareto_plot  # matplotlib only when there is a front to draw

        path = pareto_plot(points, on_front, [knee[m] for m in objectives], objectives, plan.run_dir, "pareto")
        out.append(f"Plot:     {path}")
    return out


def _aligned(table: list[list[str]]) -> str:
    widths = [max(len(r[c]) for r in table) for c in range(len(table[0]))]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(r, widths)) for r in table)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 1000 else f"{v:.3g}"
    return str(v)


def resume_command(argv: list[str], plan: Plan, prog: str = PROG) -> str:
    """The command that continues this run: its folder holds the options it was started with."""
    import shlex

    return shlex.join([*(["python", "-m", "tuner.search"] if prog == PROG else [prog]), "--resume", plan.run_dir])
