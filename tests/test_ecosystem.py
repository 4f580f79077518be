"""The tool among others: the `imbalance-tune` console script and the notebook API, experiment
files, the persistent Optuna study, tracking callbacks, remote run dirs, the cluster refusal."""
from __future__ import annotations

import importlib.metadata
import json
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
SMOKE = ["--budget", "smoke", "--num-samples", "2", "--max-epochs", "1"]


def console_script():
    """The function `imbalance-tune` runs: the installed entry point when this checkout is the one
    installed, else the one pyproject names (checked to be the same)."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    target = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]["imbalance-tune"]
    assert target == "tuner.cli:main"
    installed = [ep for ep in importlib.metadata.entry_points(group="console_scripts") if ep.name == "imbalance-tune"]
    if installed:
        assert installed[0].value == target
    module, func = target.split(":")
    return getattr(importlib.import_module(module), func)


def test_console_script_runs_a_search_then_export_and_report(ray_session, tmp_path, capsys):
    main = console_script()
    assert main(["lstm_weighted", *SMOKE, "--storage-path", str(tmp_path), "--name", "C"]) == 0
    out = capsys.readouterr().out
    assert "Best configs by val_balanced_acc" in out and f"imbalance-tune report {tmp_path / 'C'}" in out
    # Ray's TensorBoard event files, one per trial: `tensorboard --logdir RUN_DIR` (README)
    assert len(list((tmp_path / "C").glob("trial_*/events.out.tfevents.*"))) == 2
    assert main(["export", str(tmp_path / "C")]) == 0
    assert len(pd.read_parquet(tmp_path / "C" / "trials.parquet")) == 2
    assert main(["report", str(tmp_path / "C"), "--out", str(tmp_path / "rep")]) == 0
    assert (tmp_path / "rep" / "report.md").exists()
    with pytest.raises(SystemExit) as e:  # the same options and checks as python -m tuner.search
        main(["lstm_weighted", "--num-samples", "0"])
    assert e.value.code == 2 and "--num-samples 0: must be an integer >= 1" in capsys.readouterr().err


def _tensorboard_scalars(folder: Path) -> set:
    """(tag, step, value) of every scalar in the TensorBoard event files of `folder`, read as
    TFRecords (length, its CRC, the Event, its CRC) without TensorBoard."""
    import struct

    from tensorboardX.proto import event_pb2

    found = set()
    for path in folder.glob("events.out.tfevents.*"):
        data, i = path.read_bytes(), 0
        while i < len(data):
            (n,) = struct.unpack("<Q", data[i:i + 8])
            event = event_pb2.Event.FromString(data[i + 12:i + 12 + n])
            found |= {(v.tag, event.step, v.simple_value) for v in event.summary.value if v.HasField("simple_value")}
            i += 12 + n + 4
    return found


class _Trial:  # what the loggers ask of a Tune Trial (a dict key, like Tune's own)
    def __init__(self, **attrs):
        self.__dict__.update(attrs)

    def init_local_path(self):
        pass


def test_the_tensorboard_files_hold_the_scalars_ray_tunes_own_logger_writes(tmp_path):
    pytest.importorskip("tensorboardX")
    from ray.tune.logger import TBXLoggerCallback

    from tuner.ray_compat import tensorboard_log

    results = [{"training_iteration": i, "epoch": i, "val_acc": 0.5 + i / 10, "acc_3": float("nan"), "steps": 20 * i,
                "flag": True, "nested": {"a": 1.5}, "confusion": [[1, 2], [3, 4]], "stop_reason": "",
                "time_total_s": 2.0, "config": {"lr": 0.1}} for i in (1, 2)]
    written = {}
    for name, logger in (("tune", TBXLoggerCallback()), ("ours", tensorboard_log()[0])):
        folder = tmp_path / name
        folder.mkdir()
        trial = _Trial(local_path=str(folder), evaluated_params={"lr": 0.1})
        for result in results:
            logger.log_trial_result(result["training_iteration"], trial, result)
        logger.log_trial_end(trial)
        written[name] = _tensorboard_scalars(folder)
    # the same scalars under the same tags and steps (NaN left out, as Tune does; Tune's logger also
    # wrote a histogram of the list), with their values (float32 in the file)
    assert written["ours"] == written["tune"]
    assert {(tag, step): round(v, 6) for tag, step, v in written["ours"]}[("ray/tune/val_acc", 2)] == 0.7
    assert {tag for tag, _, _ in written["ours"]} == {f"ray/tune/{k}" for k in ("epoch", "val_acc", "steps", "flag",
                                                                             "nested/a")}


def test_api_runs_a_search_and_loads_its_tables_and_optuna_study(ray_session, tmp_path):
    import optuna
    from ray.tune import ResultGrid

    from tuner import load_results, run_search

    grid = run_search("lstm_weighted", budget="smoke", num_samples=3, max_epochs=1, max_concurrent=2,
                      set={"weight_decay": 0.0}, storage_path=str(tmp_path), name="A")
    assert isinstance(grid, ResultGrid) and len(grid) == 3 and not grid.errors
    trials, epochs = load_results(tmp_path / "A")
    assert len(trials) == 3 and len(epochs) == 3 and set(trials["weight_decay"]) == {0.0}
    # the persistent study: every trial Ray ran, with its value, readable while or after the search runs
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(tmp_path / "A" / "optuna.journal")))
    study = optuna.load_study(study_name="A", storage=storage)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 3 and all("minority_weight" in t.params for t in done)
    assert sorted(t.value for t in done) == sorted(trials["val_balanced_acc"])
    # the API resumes by path too (a finished run: nothing left to run, the same trials back)
    again = run_search("lstm_weighted", resume=str(tmp_path / "A"))
    assert sorted(r.metrics["trial_id"] for r in again) == sorted(trials["trial_id"])
    with pytest.raises(TypeError, match="unknown option 'colour'"):
        run_search("lstm_weighted", colour="red")
    from tuner.errors import ConfigError

    with pytest.raises(ConfigError, match="--num-samples 0"):  # the CLI's check, raised rather than exited
        run_search("lstm_weighted", num_samples=0, storage_path=str(tmp_path))


def test_optuna_searcher_one_concurrency_setting_and_constant_liar(tmp_path, sample_images):
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    from tuner.search import build_plan, make_tuner, parse_args

    plan = build_plan(parse_args(["lstm_weighted", "--budget", "smoke", "--storage-path", str(tmp_path), "--name", "O"]))
    tc = make_tuner(plan, sample_images, 2)._local_tuner._tune_config
    # Tune adds its own ConcurrencyLimiter from max_concurrent_trials; two of them made Ray warn
    assert isinstance(tc.search_alg, OptunaSearch) and not isinstance(tc.search_alg, ConcurrencyLimiter)
    assert tc.max_concurrent_trials == 2
    assert tc.search_alg._sampler._constant_liar  # 2 trials at once
    one = build_plan(parse_args(["lstm_weighted", "--budget", "smoke", "--max-concurrent", "1",
                                 "--storage-path", str(tmp_path), "--name", "O1"]))
    assert not make_tuner(one, sample_images, 2)._local_tuner._tune_config.search_alg._sampler._constant_liar


PY_EXPERIMENT = '''
from search_spaces import Budget, Experiment, Range
EXPERIMENT = Experiment(
    "my_weighted_py", "lstm, minority weight 2-4, from a Python file",
    fixed={"model": "lstm", "weight_decay": 1e-4}, space={"minority_weight": Range(2, 4, grid=(2, 4))},
    metric="val_minority_acc",
    budgets={"smoke": Budget(num_samples=1, max_epochs=1, fixed={"dataset": "mnist-sample"}),
             "steps": Budget(num_samples=1, max_epochs=1, min_steps=20, fixed={"dataset": "mnist-sample"})},
)
'''
YAML_EXPERIMENT = """
name: my_weighted_yaml
description: lstm, minority weight 2-4, from a YAML file
fixed: {model: lstm}
space:
  minority_weight: {low: 2, high: 4, grid: [2, 4]}
  lr: [0.001, 0.002]
budgets:
  smoke: {num_samples: 1, max_epochs: 1, fixed: {dataset: mnist-sample}}
  local: local
"""


def test_an_experiment_file_is_listed_and_runs(ray_session, tmp_path, capsys):
    from tuner.search import main

    f = tmp_path / "mine.py"
    f.write_text(PY_EXPERIMENT)
    assert main(["--list", "--experiment-file", str(f)]) == 0
    listed = {ln.split(None, 1)[0]: ln.split(None, 1)[1] for ln in capsys.readouterr().out.splitlines() if ln.strip()}
    assert listed["my_weighted_py"] == "lstm, minority weight 2-4, from a Python file  [mine.py]"
    # a budget of at least 20 steps: 2 epochs of batch 256 on the sample's training images
    assert main(["--experiment-file", str(f), "--budget", "steps", "--storage-path", str(tmp_path), "--name", "F"]) == 0
    out = capsys.readouterr().out
    assert "at least 20 steps: 2 epochs of 10 steps (2475 training images, batch 256)" in out and "selecting on val_minority_acc" in out
    rows = [json.loads(line) for line in next((tmp_path / "F").glob("trial_*/result.json")).read_text().splitlines()]
    assert rows[-1]["experiment"] == "my_weighted_py" and [r["epoch"] for r in rows] == [1, 2]
    assert 2 <= rows[-1]["config"]["minority_weight"] <= 4
    # the run keeps a copy of the file: it resumes after the original is gone
    assert (tmp_path / "F" / "experiment.py").read_text() == PY_EXPERIMENT
    assert json.loads((tmp_path / "F" / "search_options.json").read_text())["experiment"] == "my_weighted_py"


def test_a_yaml_experiment_file_and_its_errors(tmp_path, capsys):
    from tuner.search import build_plan, main, parse_args

    f = tmp_path / "mine.yaml"
    f.write_text(YAML_EXPERIMENT)
    plan = build_plan(parse_args(["--experiment-file", str(f), "--budget", "smoke", "--storage-path", str(tmp_path)]))
    assert plan.experiment.name == "my_weighted_yaml" and set(plan.space) == {"minority_weight", "lr"}
    assert plan.space["lr"].values == (0.001, 0.002) and plan.space["minority_weight"].grid == (2, 4)
    assert plan.fixed["dataset"] == "mnist-sample" and plan.max_epochs == 1
    for text, message in [
        (YAML_EXPERIMENT.replace("fixed:", "fixd:"), "unknown field 'fixd'; allowed: name, description"),
        (YAML_EXPERIMENT.replace("{low: 2, high: 4", "{low: 2, top: 4"), "space minority_weight: expected {low, high"),
        (YAML_EXPERIMENT.replace("max_epochs: 1,", "max_epoch: 1,"), "budget smoke: unknown field 'max_epoch'"),
        (YAML_EXPERIMENT.replace("name: my_weighted_yaml", "name: lstm_weighted"), "'lstm_weighted' is a built-in one"),
        (YAML_EXPERIMENT.replace("fixed: {model: lstm}", "fixed: {model: resnet}"), "unknown model 'resnet'"),
    ]:
        f.write_text(text)
        with pytest.raises(SystemExit) as e:
            main(["--experiment-file", str(f), "--budget", "smoke", "--storage-path", str(tmp_path)])
        err = capsys.readouterr().err
        assert e.value.code == 2 and message in err and err.count("\n") == 1, err


def test_resume_of_a_folder_without_a_run_says_so(tmp_path, capsys):
    from tuner.search import main

    with pytest.raises(SystemExit) as e:
        main(["--resume", str(tmp_path / "nothing")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and f"--resume: {tmp_path / 'nothing'} has no recorded options" in err


def test_a_missing_tracking_package_is_named_with_its_extra(tmp_path, capsys):
    import importlib.util

    from tuner.search import main

    for name in ("mlflow", "wandb"):
        if importlib.util.find_spec(name) is not None:
            continue  # installed here: nothing to refuse
        with pytest.raises(SystemExit) as e:
            main(["lstm_weighted", "--callback", name, "--storage-path", str(tmp_path)])
        err = capsys.readouterr().err
        assert e.value.code == 2 and f"--callback {name} needs the {name} package: pip install 'imbalance-tune[{name}]'" in err


def test_cluster_with_gpu_nodes_refuses_trials_without_gpus(tmp_path):
    from tuner.errors import ConfigError
    from tuner.search import build_plan, check_cluster, parse_args

    nodes = [{"NodeManagerAddress": "10.0.0.1", "Alive": True, "Resources": {"CPU": 8.0}},
             {"NodeManagerAddress": "10.0.0.2", "Alive": True, "Resources": {"CPU": 4.0, "GPU": 1.0}}]
    plan = build_plan(parse_args(["lstm_weighted", "--address", "auto", "--storage-path", str(tmp_path), "--name", "K"]))
    with pytest.raises(ConfigError, match=r"--gpus-per-trial 0 on a cluster with GPU nodes \(10.0.0.2 \(1 GPU\)\)"):
        check_cluster(plan, nodes)
    check_cluster(plan, nodes[:1])  # a CPU cluster: fine
    plan.gpus_per_trial = 0.25
    check_cluster(plan, nodes)  # asks for GPUs: fine


def test_export_reads_a_run_through_pyarrow_fs(tmp_path):
    """A run dir given as a URI (s3://... on a cluster; file:// here, the same pyarrow.fs code path)."""
    from analysis.export import main

    run = tmp_path / "remote" / "R"
    (run / "trial_a" / "checkpoint_000000").mkdir(parents=True)
    (run / "trial_a" / "params.json").write_text(json.dumps({"seed": 0, "epochs": 1, "lr": 0.01}))
    (run / "trial_a" / "result.json").write_text(json.dumps({"epoch": 1, "val_balanced_acc": 0.5, "trial_id": "a",
                                                             "confusion": [[1, 0], [0, 1]]}) + "\n")
    (run / "trial_a" / "checkpoint_000000" / "state.pt").write_bytes(b"x" * 10)
    assert main([f"file://{run}", "--out", str(tmp_path / "out")]) == 0
    trials = pd.read_parquet(tmp_path / "out" / "trials.parquet")
    assert trials["trial_id"].tolist() == ["a"] and trials["lr"].tolist() == [0.01]
    from analysis import load_trials
    from tuner import load_results

    assert load_trials(f"file://{run}")["trial_id"].tolist() == ["a"]
    assert load_results(f"file://{run}")[1]["confusion"].tolist() == ["[[1, 0], [0, 1]]"]


def test_report_importance_reads_the_runs_optuna_study(tmp_path, monkeypatch):
    import optuna

    from analysis import importance
    from tuner.search import optuna_storage

    run = tmp_path / "R"
    study = optuna.create_study(study_name="R", storage=optuna_storage(str(run)), direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=0))  # the same points every run
    for i in range(20):  # the value follows x only: x explains everything, y nothing (8 points were too few for fANOVA)
        trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1), "y": optuna.distributions.FloatDistribution(0, 1)})
        study.tell(trial, trial.params["x"] * 10)
    # the trials table disagrees on purpose (values follow y): the study is what is read
    trials = pd.DataFrame({"x": [t.params["x"] for t in study.trials], "y": [t.params["y"] for t in study.trials],
                           "val_balanced_acc": [t.params["y"] for t in study.trials], "run_path": str(run),
                           "search_metric": "val_balanced_acc"})
    imp, method = importance.run_importance(trials, ["x", "y"], "val_balanced_acc")
    assert method == "fANOVA (Optuna), from the run's Optuna study" and imp.index[0] == "x" and imp["x"] > 0.8
    # another metric than the search's: the study does not know it, the table is replayed
    _, method = importance.run_importance(trials.rename(columns={"val_balanced_acc": "val_macro_f1"}), ["x", "y"], "val_macro_f1")
    assert "from the run's Optuna study" not in method
    # without scikit-learn (the `analysis` extra): with fewer than 20 trials (PED-ANOVA's minimum) the
    # report names the fallback it used
    small = tmp_path / "S"
    few = optuna.create_study(study_name="S", storage=optuna_storage(str(small)), direction="maximize",
                              sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(8):
        trial = few.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
        few.tell(trial, trial.params["x"])
    monkeypatch.setitem(sys.modules, "sklearn", None)
    _, method = importance.run_importance(trials.head(8).assign(run_path=str(small)), ["x", "y"], "val_balanced_acc")
    assert method == "|Spearman correlation| with the metric (normalised)"
    with pytest.raises(LookupError, match=r"pip install 'imbalance-tune\[analysis\]'"):
        importance.study_importance(small / "optuna.journal")


def test_api_runs_an_experiment_object_without_registering_it(ray_session, tmp_path):
    from search_spaces import EXPERIMENTS, Budget, Experiment, Range
    from tuner import run_search

    exp = Experiment("nb_weighted", "defined in a notebook", fixed={"model": "lstm"},
                     space={"minority_weight": Range(2, 4)},
                     budgets={"smoke": Budget(num_samples=1, max_epochs=1, fixed={"dataset": "mnist-sample"})})
    grid = run_search(exp, budget="smoke", storage_path=str(tmp_path), name="NB")
    assert len(grid) == 1 and grid[0].metrics["experiment"] == "nb_weighted"
    assert "nb_weighted" not in EXPERIMENTS  # the registry is left as it was


def test_the_python_example_of_docs_experiments_runs():
    """The docs' example file (docs/experiments.md, 'Python') imports and defines its experiment."""
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "experiments.md").read_text()
    code = re.search(r"## Python\n\n```python\n(.*?)```", doc, re.S).group(1)
    namespace = {}
    exec(compile(code, "docs/experiments.md", "exec"), namespace)
    assert namespace["EXPERIMENT"].name == "my_weighted" and namespace["EXPERIMENT"].budgets["smoke"].max_epochs == 2
