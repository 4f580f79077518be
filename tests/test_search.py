"""The search service end to end: real Ray Tune searches on the shipped MNIST sample."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tuner.search import main

REPO = Path(__file__).resolve().parents[1]


def trial_results(run_dir: Path) -> dict[str, list[dict]]:
    out = {}
    for f in sorted(run_dir.glob("trial_*/result.json")):
        lines = [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
        out[f.parent.name] = lines
    return out


def test_smoke_search_writes_one_result_per_trial_and_picks_the_best(ray_session, tmp_path, capsys):
    assert main(["lstm_weighted", "--budget", "smoke", "--dataset", "mnist-sample", "--num-samples", "4",
                 "--max-epochs", "2", "--storage-path", str(tmp_path), "--name", "N"]) == 0
    out = capsys.readouterr().out
    results = trial_results(tmp_path / "N")
    assert len(results) == 4
    for rows in results.values():
        assert rows[-1]["experiment"] == "lstm_weighted" and rows[-1]["dataset"] == "mnist-sample"
        assert rows[-1]["config"]["minority_weight"] >= 2 and "seed" in rows[-1]["config"]
    # the summary's first row is the trial with the best validation metric over all its epochs
    best = max(results.items(), key=lambda kv: max(r["val_balanced_acc"] for r in kv[1]))
    table = out.split("Best configs by val_balanced_acc")[1].splitlines()
    first_row = table[2].split()
    assert first_row[0] == "1" and first_row[1] == best[1][0]["trial_id"]
    assert float(first_row[4]) == pytest.approx(max(r["val_balanced_acc"] for r in best[1]), abs=1e-4)
    assert "python -m analysis.report" in out
    # ASHA (grace 1 epoch, reduction factor 2) stopped at least one trial after its first epoch
    assert min(len(rows) for rows in results.values()) == 1 and max(len(rows) for rows in results.values()) == 2


def test_grid_over_seeds_and_the_baseline(ray_session, tmp_path, capsys):
    assert main(["lstm_baseline", "--budget", "smoke", "--seeds", "0,1", "--max-epochs", "1",
                 "--storage-path", str(tmp_path), "--name", "B"]) == 0
    results = trial_results(tmp_path / "B")
    combos = sorted((r[-1]["config"]["minority_keep"], r[-1]["seed"]) for r in results.values())
    assert combos == [(0.1, 0), (0.1, 1), (1.0, 0), (1.0, 1)]
    counts = {r[-1]["config"]["minority_keep"]: r[-1]["train_counts"] for r in results.values()}
    assert counts[1.0] == [450] * 10 and counts[0.1] == [45] * 5 + [450] * 5


def test_existing_name_is_never_overwritten(ray_session, tmp_path, capsys):
    args = ["lstm_weighted", "--budget", "smoke", "--num-samples", "1", "--max-epochs", "1",
            "--storage-path", str(tmp_path), "--name", "once"]
    assert main(args) == 0
    with pytest.raises(SystemExit) as e:
        main(args)
    assert e.value.code == 2
    assert "already exists" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["no_such_experiment"], "unknown experiment 'no_such_experiment'; known experiments:"),
    (["lstm_weighted", "--num-samples", "0"], "--num-samples 0: must be an integer >= 1"),
    (["lstm_weighted", "--set", "colour=red"], "--set colour: unknown setting"),
    (["lstm_weighted", "--set", "minority_weight=heavy"], "minority_weight='heavy' has the wrong type"),
    (["lstm_weighted", "--set", "minority_weight=-2"], "minority_weight=-2.0 is not allowed: expected a number > 0"),
    (["lstm_weighted", "--set", "model=resnet"], "unknown model 'resnet'"),
    (["lstm_weighted", "--dataset", "svhn"], "unknown dataset 'svhn'"),
    (["lstm_weighted", "--set", "minority_classes=[0,10]"], "expected a list of class labels in 0-9"),
    (["lstm_weighted", "--set", "minority_keep=0"], "minority_keep=0.0 is not allowed"),
    (["lstm_noise", "--set", "noise_sigma=-1"], "noise_sigma=-1.0 is not allowed"),
    (["lstm_weighted", "--data-dir", "/no/such/folder"], "--data-dir '/no/such/folder' does not exist"),
    (["lstm_weighted", "--address", "not an address"], "--address 'not an address' is malformed"),
    (["lstm_weighted", "--budget", "huge"], "--budget 'huge': choose one of smoke, local, paper"),
    (["lstm_weighted", "--metric", "accuracy"], "--metric 'accuracy'"),
    (["lstm_weighted", "--seeds", "a,b"], "--seeds 'a,b': expected comma-separated integers"),
    (["lstm_weighted", "--gpus-per-trial", "1.5"], "--gpus-per-trial 1.5"),
    (["lstm_weighted", "--resume", "--name", "never-ran"], "--resume: no run 'never-ran'"),
])
def test_bad_input_exits_2_with_one_line_before_ray_starts(argv, message, capsys, tmp_path):
    import ray

    was_running = ray.is_initialized()
    with pytest.raises(SystemExit) as e:
        main([*argv, "--storage-path", str(tmp_path)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert message in err, err
    if not message.startswith("unknown experiment"):
        assert err.count("\n") == 1, err  # one line
    assert ray.is_initialized() == was_running  # nothing started


def test_list_shows_every_experiment(capsys):
    assert main(["--list"]) == 0
    out = capsys.readouterr().out
    for name in ["lstm_baseline", "lstm_weighted", "lstm_ros", "lstm_noise", "lstm_rotation", "lstm_irm",
                 "lstm_combined", "cnn_weighted", "cnn_combined"]:
        assert f"\n{name} " in f"\n{out}"


def test_resume_by_path_after_the_driver_is_killed_keeps_every_finished_trial(tmp_path, capsys):
    """SIGKILL the whole driver (and its local Ray) mid-search, then `imbalance-tune --resume RUN_DIR`."""
    args = [sys.executable, "-m", "tuner.search", "lstm_weighted", "--budget", "smoke", "--searcher", "random",
            "--num-samples", "4", "--max-epochs", "3", "--no-asha", "--storage-path", str(tmp_path), "--name", "R"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    run = tmp_path / "R"
    deadline = time.time() + 240
    finished_before = {}
    while time.time() < deadline:
        results = trial_results(run) if run.exists() else {}
        finished_before = {k: v for k, v in results.items() if v and v[-1]["epoch"] == 3}
        if finished_before:
            break
        time.sleep(0.5)
    assert finished_before, "no trial finished in time"
    time.sleep(1.0)  # let the experiment snapshot catch up with that finish
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    # the run recorded its options: a resume that types another --budget (other data) is refused
    with pytest.raises(SystemExit) as e:
        main(["--resume", str(run), "--budget", "local"])
    assert e.value.code == 2
    assert ("--resume: run 'R' was started with --budget smoke but this command gives --budget local; drop it to "
            "continue with the run's") in capsys.readouterr().err
    # one command, the run's folder, brings it back (as the console script: python -m tuner.cli)
    done = subprocess.run([sys.executable, "-m", "tuner.cli", "--resume", str(run)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = trial_results(run)
    assert len(results) == 4
    for trial, rows in results.items():
        epochs = [r["epoch"] for r in rows]
        assert epochs[-1] == 3 and sorted(set(epochs)) == [1, 2, 3], (trial, epochs)
    for trial, rows in finished_before.items():
        assert results[trial][: len(rows)] == rows  # finished work kept as it was
    assert "Best configs by val_balanced_acc" in done.stdout


def fake_run(tmp_path: Path, config: dict, dataset_used: str) -> Path:
    """A run folder as Ray leaves it after an interruption: an experiment snapshot and one trial."""
    run = tmp_path / "old"
    (run / "trial_a").mkdir(parents=True)
    (run / "experiment_state-2026-01-01_00-00-00.json").write_text("{}")
    (run / "trial_a" / "params.json").write_text(json.dumps(config))
    (run / "trial_a" / "result.json").write_text(json.dumps({"epoch": 1, "dataset": dataset_used}) + "\n")
    return run


LOCAL_WEIGHTED = {"budget": "local", "dataset": "mnist", "dataset_fallback": True, "epochs": 8,
                  "experiment": "lstm_weighted", "minority_weight": 3.5, "model": "lstm_mlp", "seed": 0,
                  "weight_decay": 0.0001}


@pytest.mark.parametrize("config, argv, message", [
    (LOCAL_WEIGHTED, ["lstm_weighted", "--max-epochs", "4"],
     "run 'old' has epochs=8 but this command gives 4; resume with --max-epochs 8"),
    (LOCAL_WEIGHTED, ["lstm_weighted", "--dataset", "mnist-sample", "--max-epochs", "8"],
     "run 'old' has dataset='mnist' but this command gives 'mnist-sample'; resume with --dataset mnist"),
    (LOCAL_WEIGHTED, ["lstm_irm"], "run 'old' has experiment='lstm_weighted' but this command gives 'lstm_irm'"),
    ({**LOCAL_WEIGHTED, "minority_keep": 0.2}, ["lstm_weighted", "--max-epochs", "8"],
     "run 'old' was started with --set minority_keep=0.2; add it to the resume command"),
    ({**LOCAL_WEIGHTED, "minority_classes": [0, 1]}, ["lstm_weighted", "--set", "minority_classes=[0,1,2]", "--max-epochs", "8"],
     "run 'old' has minority_classes=[0, 1] but this command gives [0, 1, 2]; resume with --set minority_classes=[0,1]"),
])
def test_resume_with_other_options_than_the_run_is_refused_before_ray(config, argv, message, tmp_path, capsys):
    import ray

    was_running = ray.is_initialized()
    fake_run(tmp_path, config, config["dataset"])
    with pytest.raises(SystemExit) as e:
        main([*argv, "--storage-path", str(tmp_path), "--name", "old", "--resume"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert f"error: --resume: {message}" in err and err.count("\n") == 1, err
    assert ray.is_initialized() == was_running


def test_resume_on_a_machine_that_falls_back_to_the_sample_is_refused(tmp_path, capsys):
    """The run trained on full MNIST; here its default dataset is missing and falls back to the
    shipped sample: continuing would train its trials on other data."""
    empty = tmp_path / "no-data"
    empty.mkdir()
    fake_run(tmp_path, {**LOCAL_WEIGHTED, "data_dir": "/cluster/data"}, "mnist")
    with pytest.raises(SystemExit) as e, pytest.warns(UserWarning, match="falling back to the shipped 'mnist-sample'"):
        main(["lstm_weighted", "--max-epochs", "8", "--data-dir", str(empty), "--storage-path", str(tmp_path), "--name", "old", "--resume"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert ("error: --resume: run 'old' trained on dataset 'mnist' but this command loaded 'mnist-sample'; "
            "resume where 'mnist' is available (--data-dir) or start a new --name") in err


def test_the_paper_budget_never_falls_back_to_the_sample(tmp_path, capsys):
    empty = tmp_path / "no-data"
    empty.mkdir()
    with pytest.raises(SystemExit) as e:
        main(["rnn_noise_irm", "--budget", "paper", "--data-dir", str(empty), "--storage-path", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1
    assert "dataset 'mnist' unavailable" in err and str(empty) in err
    assert "--budget paper runs on the real data only" in err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_grid_over_several_seeds_runs_without_asha_unless_asked(tmp_path):
    from tuner.search import build_plan, parse_args

    def plan(*argv):
        return build_plan(parse_args(["lstm_weighted", *argv, "--storage-path", str(tmp_path)]))

    one = plan()  # one seed: Optuna with ASHA, as declared
    assert one.searcher == "optuna" and one.asha
    several = plan("--seeds", "0,1,2")  # seed means and paired tests need every trial at the same epochs
    assert several.searcher == "grid" and not several.asha
    assert any("ASHA off: a grid over several seeds" in n for n in several.notes)
    assert plan("--seeds", "0,1,2", "--asha").asha  # asked for: kept


def test_max_steps_makes_every_arm_train_the_same_steps(ray_session, tmp_path, capsys):
    from analysis.export import main as export
    from tuner.search import main

    assert main(["lstm_ros", "--budget", "smoke", "--max-steps", "12", "--searcher", "grid", "--set", "ros_target=1.0",
                 "--set", "batch_size=256", "--seeds", "0", "--storage-path", str(tmp_path), "--name", "S"]) == 0
    out = capsys.readouterr().out
    assert "compute-matched: every trial trains 12 optimizer steps (epochs up to 200)" in out
    assert "1 finished (0 stopped early by ASHA or a stop reason)" in out  # the steps budget is the trial's end
    assert export([str(tmp_path / "S")]) == 0
    import pandas as pd

    trials = pd.read_parquet(next((tmp_path / "S").rglob("trials.parquet")))
    assert len(trials) == 1 and (trials["max_steps"] == 12).all() and not trials["asha_stopped"].any()
    epochs = pd.read_parquet(next((tmp_path / "S").rglob("epochs.parquet")))
    assert epochs["steps"].max() == 12  # the last epoch was cut at the budget


def test_max_steps_must_be_positive(tmp_path):
    from tuner.search import main

    with pytest.raises(SystemExit) as e:
        main(["lstm_ros", "--budget", "smoke", "--max-steps", "0", "--storage-path", str(tmp_path)])
    assert e.value.code == 2


def test_rerun_top_reruns_the_best_configurations_over_the_seeds(ray_session, tmp_path, capsys):
    """Select on validation, then re-run: the 2 best of 3 minority weights, each over 2 seeds to the end."""
    import pandas as pd

    from analysis.export import build
    from tuner.search import main

    base = ["lstm_weighted", "--budget", "smoke", "--storage-path", str(tmp_path), "--set", "model=mlp"]
    assert main(base + ["--num-samples", "3", "--max-epochs", "2", "--name", "search"]) == 0
    trials, _ = build(str(tmp_path / "search"), "val_balanced_acc", "max")
    scored = trials.groupby("minority_weight")["best_val_balanced_acc"].mean().sort_values(ascending=False)
    capsys.readouterr()
    assert main(base + ["--rerun-top", "2", "--from-run", str(tmp_path / "search"), "--seeds", "0,1",
                        "--max-epochs", "2"]) == 0
    out = capsys.readouterr().out
    assert "re-run of" in out and "top1:" in out and "top2:" in out
    rerun, _ = build(str(tmp_path / "search-top2"), "val_balanced_acc", "max")
    assert len(rerun) == 4 and set(rerun["status"]) == {"TERMINATED"} and not rerun["asha_stopped"].any()
    assert (rerun["epochs_run"] == 2).all() and set(rerun["rerun_of"]) == {str(tmp_path / "search")}
    chosen = rerun.groupby("group")["minority_weight"].first()
    assert [chosen["top1"], chosen["top2"]] == pytest.approx(list(scored.index[:2]))  # the two best, in order
    assert sorted(rerun["seed"].tolist()) == [0, 0, 1, 1]


def test_rerun_top_errors_are_one_line(tmp_path, capsys):
    from tuner.search import main

    for extra, message in ((["--from-run", str(tmp_path / "none")], "--from-run needs --rerun-top K"),
                           (["--rerun-top", "2", "--from-run", str(tmp_path / "none")], "does not exist")):
        with pytest.raises(SystemExit) as e:
            main(["lstm_weighted", "--budget", "smoke", "--storage-path", str(tmp_path), *extra])
        assert e.value.code == 2 and message in capsys.readouterr().err
