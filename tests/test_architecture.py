"""The architecture's promises (docs/architecture.md): no import cycle in `tuner/`, a training loop
that names no remedy and no study, and a remedy that plugs in from one file (here: this one)."""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]


def module_imports(root: Path, package: str = "tuner") -> dict[str, set[str]]:
    """module -> the modules of `package` it imports, counting imports inside functions.
    `from pkg import name` counts pkg.name where that is a module, else pkg."""
    files = {".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__"): p
             for p in (root / package).rglob("*.py")}
    graph = {}
    for mod, path in files.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the module's package
                    pkg = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
                    base = ".".join(pkg[: len(pkg) - node.level + 1] + ([base] if base else []))
                subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in files]
                deps.update(subs if len(subs) == len(node.names) else [base, *subs])
        graph[mod] = {d for d in deps if d in files and d != mod}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_the_cycle_finder_finds_a_planted_cycle(tmp_path):
    pkg = tmp_path / "tuner"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from tuner import b\n")
    (pkg / "b.py").write_text("def f():\n    from tuner.c import x\n")
    (pkg / "c.py").write_text("import tuner.a\nx = 1\n")
    (pkg / "d.py").write_text("from tuner import a\n")
    assert cycles(module_imports(tmp_path)) == [["tuner.a", "tuner.b", "tuner.c"]]


def test_no_import_cycle_among_the_modules_of_tuner():
    graph = module_imports(ROOT)
    assert len(graph) > 20 and "tuner.remedies.base" in graph
    assert cycles(graph) == []


def test_no_generic_module_imports_a_study():
    graph = module_imports(ROOT)
    importers = sorted(m for m, deps in graph.items() if "tuner.pairs" in deps)
    assert importers == []  # the digit_pairs task is found through its entry point (tuner.plugins)


def test_the_training_loop_names_no_remedy_and_no_study():
    from tuner import remedies, tasks

    tree = ast.parse((ROOT / "tuner" / "trainable.py").read_text())
    words = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    words |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    words |= {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    # "loss" is both a remedy's name (a loss function by name) and the word for the loss itself
    named = set(remedies.REMEDIES) - {"loss"} | set(remedies.params())
    named |= set(tasks.TASKS) - {"classification"} | {"pairs", "digit_pairs", "remix", "irm", "drw", "Remix"}
    assert "minority_weight" in named and "digit_pairs" in named
    assert sorted(words & named) == []


# --- a remedy declared in this file only: label smoothing -------------------------------------------

def _register_label_smoothing():
    from tuner import losses
    from tuner.remedies import Remedy, register
    from tuner.settings import Param, Range

    class LabelSmoothing(Remedy):
        name = "label_smoothing"
        summary = "cross-entropy against (1 - eps) on the label and eps spread over every class"
        settings = {"smoothing_eps": Param(0.0, float, lambda v: None if 0 <= v < 1 else "a fraction in [0, 1)",
                                           "label smoothing eps", label="label smoothing ε", off=0.0,
                                           search=Range(0.0, 0.3, grid=(0.0, 0.2)))}

        def start_epoch(self, ctx):
            eps, weight = ctx.cfg["smoothing_eps"], getattr(ctx.loss, "weight", None)
            ctx.loss = losses.Loss(lambda lo, y: F.cross_entropy(lo, y, reduction="none", label_smoothing=eps), weight)

    return register(LabelSmoothing)


@pytest.fixture
def label_smoothing():
    import cloudpickle

    from tuner.remedies import unregister

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray workers get the class itself
    from tuner.remedies import REMEDIES

    _register_label_smoothing()
    yield REMEDIES["label_smoothing"]
    unregister("label_smoothing")
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def test_a_remedy_from_one_file_changes_the_loss_as_label_smoothing_does(label_smoothing, sample_images):
    from tuner.remedies import active, hooks, running
    from tuner.trainable import train

    cfg = {"dataset": "mnist-sample", "model": "mlp", "epochs": 1, "batch_size": 512}
    assert active({**_resolve(cfg), "smoothing_eps": 0.2}) == ["label_smoothing"]
    assert hooks(running(_resolve({**cfg, "smoothing_eps": 0.2})), "start_epoch")
    # the loss the loop trains on is the smoothed one: an independent computation of it
    logits, y = torch.randn(6, 10), torch.tensor([0, 1, 2, 3, 4, 5])
    eps, logp = 0.2, torch.log_softmax(logits, 1)
    by_hand = -((1 - eps) * logp[torch.arange(6), y] + eps * logp.mean(1)).mean()
    ctx = type("Ctx", (), {"cfg": {"smoothing_eps": eps}, "loss": lambda lo, yy: None})()
    label_smoothing.start_epoch(ctx)
    assert torch.allclose(ctx.loss(logits, y), by_hand, atol=1e-6)
    plain = train(cfg, data=sample_images)[-1]
    smooth = train({**cfg, "smoothing_eps": 0.2}, data=sample_images)[-1]
    assert smooth["remedies"] == "label_smoothing" and plain["remedies"] == ""
    assert smooth["train_loss"] > plain["train_loss"]  # the loop trained on the smoothed loss (the same model and data)


def _resolve(cfg):
    from tuner.config import resolve

    return resolve(cfg)


def test_a_remedy_from_one_file_runs_through_search_export_and_report(label_smoothing, ray_session, tmp_path):
    from analysis.export import main as export
    from analysis.plots import param_label
    from analysis.report import main as report
    from search_spaces import Budget, Experiment
    from tuner import run_search
    from tuner.remedies import search_range

    exp = Experiment("smoothing_sweep", "label smoothing on the sample", fixed={"model": "mlp", "batch_size": 512},
                     space={"smoothing_eps": search_range("smoothing_eps")}, searcher="grid",
                     budgets={"smoke": Budget(num_samples=1, max_epochs=1, seeds=(0, 1),
                                              fixed={"dataset": "mnist-sample"})})
    grid = run_search(exp, budget="smoke", storage_path=str(tmp_path), name="LS")
    assert len(grid) == 4 and not grid.errors
    assert sorted((r.metrics["remedies"], r.config["smoothing_eps"]) for r in grid) == \
        [("", 0.0), ("", 0.0), ("label_smoothing", 0.2), ("label_smoothing", 0.2)]
    run_dir = tmp_path / "LS"
    assert export([str(run_dir)]) == 0
    trials = pd.read_parquet(next(run_dir.rglob("trials.parquet")))
    assert sorted(trials["smoothing_eps"].tolist()) == [0.0, 0.0, 0.2, 0.2]
    assert report([str(run_dir), "--out", str(tmp_path / "rep")]) == 0
    text = (tmp_path / "rep" / "report.md").read_text()
    assert param_label("smoothing_eps") == "label smoothing ε"
    assert "label smoothing ε" in text  # its label, from its declaration
    # its "off" value is the baseline: the configuration with it off, and the paired tests against 0
    assert "no-remedy baseline (smoothing_eps=0" in text and "against the baseline smoothing_eps=0" in text
