"""Faults: the search survives them and loses no finished work (docs/reliability.md).

The searches here run the real CLI in a subprocess with its own local Ray, so a signal or a
killed worker hits exactly what a user's run would. Two searches carry every fault:

* `faults_run`: five trials (seeds 0-4); seed 1 diverges to NaN, seed 2 runs out of GPU memory
  (both injected by tests/faulty_trainable.py, which the search runs through its TUNER_TRAINABLE
  test hook), seed 3's worker is SIGKILLed, seed 4's checkpoint is truncated and its worker SIGKILLed;
* the signals test: Ctrl-C (SIGINT to the process group, as a terminal sends it), `--resume`,
  SIGTERM to the driver, `--resume` again; the run is exported while it runs.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest

from tests import faulty_trainable

REPO = Path(__file__).resolve().parents[1]
EPOCHS = 3
SMOKE = ["--budget", "smoke", "--max-epochs", str(EPOCHS), "--no-asha"]


# --- helpers ------------------------------------------------------------------------------------

def read_rows(path: Path) -> list[dict]:
    """result.json rows; a line being written right now (no newline yet, or partial) is left out."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    rows = []
    for line in text.splitlines(keepends=True):
        if line.endswith("\n") and line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError:
                pass
    return rows


def trials(run: Path) -> dict[str, list[dict]]:
    return {f.parent.name: read_rows(f) for f in sorted(run.glob("trial_*/result.json"))}


def seed_of(trial_dir: Path) -> int | None:
    try:
        return json.loads((trial_dir / "params.json").read_text())["seed"]
    except (FileNotFoundError, ValueError, KeyError):
        return None


def finished(run: Path, epochs: int) -> dict[str, list[dict]]:
    return {t: rows for t, rows in trials(run).items() if rows and rows[-1]["epoch"] == epochs}


def wait_for(what: str, check, proc: subprocess.Popen, timeout: float = 300, every: float = 0.2):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = check()
        if value:
            return value
        if proc.poll() is not None:
            raise AssertionError(f"the search exited (rc {proc.returncode}) before {what}")
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


class Driver:
    """`python -m tuner.search ...` in its own process group, output in a file."""

    def __init__(self, argv: list[str], log: Path, env: dict | None = None):
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tuner.search", *argv], cwd=REPO, stdout=open(log, "w"), stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}, start_new_session=True,
        )

    def wait(self, timeout: float = 400) -> tuple[int, str]:
        try:
            rc = self.proc.wait(timeout=timeout)
        finally:
            self.kill()
        return rc, self.log.read_text()

    def kill(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def resume_line(out: str) -> list[str]:
    lines = [line for line in out.splitlines() if line.startswith("Resume with: ")]
    assert len(lines) == 1, out[-3000:]
    return shlex.split(lines[0][len("Resume with: "):])


# --- a study (a grid over arms) stopped before most of its trials started, then resumed --------------

def test_a_study_stopped_early_resumes_every_arm_with_its_own_settings(tmp_path):
    """Ray keeps a study's arm settings (tune.sample_from functions) as placeholders in its saved
    state: unless the resume gives the space again, the trials not yet created when the run stopped
    get a placeholder as their config and fail (seen on a GPU: model=('__fn_ph', ...))."""
    run = tmp_path / "study"
    argv = ["rnn_noise_irm", "--budget", "smoke", "--max-epochs", "3", "--max-concurrent", "1",
            "--storage-path", str(tmp_path), "--name", "study"]
    lazy = {"TUNE_MAX_PENDING_TRIALS_PG": "1"}  # Ray creates one pending trial at a time, as in a large grid
    d = Driver(argv, tmp_path / "run1.log", env=lazy)
    try:
        wait_for("a finished trial", lambda: finished(run, 3), d.proc)
        os.killpg(d.proc.pid, signal.SIGINT)
        rc, out = d.wait()
    finally:
        d.kill()
    created = len(list(run.glob("trial_*/params.json")))
    assert rc == 130 and created < 7, (rc, created, out[-2000:])  # most arms were not even created
    rc, out = Driver(["--resume", str(run)], tmp_path / "run2.log", env=lazy).wait()
    assert rc == 0, out[-3000:]
    errors = [p.read_text()[-300:] for p in run.glob("trial_*/error.txt")]
    assert not errors, errors  # without the space on resume: "model=('__fn_ph', ...) has the wrong type"
    by_group = {rows[-1]["group"]: json.loads((run / t / "params.json").read_text()) for t, rows in trials(run).items()}
    assert sorted(by_group) == ["augmented", "combined", "elman_balanced", "irm", "irm_groups", "lstm_balanced",
                                "unbalanced"]
    assert by_group["elman_balanced"]["model"] == "elman" and by_group["irm_groups"]["irm_env"] == "groups"
    assert by_group["irm"]["irm_lambda"] == 1.0 and by_group["unbalanced"]["irm_lambda"] == 0.0


# --- Ctrl-C, SIGTERM, --resume; export while running -----------------------------------------------

def test_ctrl_c_then_sigterm_then_resume_keep_every_finished_trial(tmp_path):
    run, epochs = tmp_path / "S", 2
    argv = ["lstm_weighted", "--budget", "smoke", "--max-epochs", str(epochs), "--no-asha", "--searcher", "random",
            "--num-samples", "6", "--max-concurrent", "1", "--storage-path", str(tmp_path), "--name", "S"]
    # one trial at a time: after a stop there is always work left, however fast the machine is
    expected_resume = ["python", "-m", "tuner.search", "--resume", str(run)]  # the run recorded its options

    # 1. Ctrl-C once a trial has finished: a terminal sends SIGINT to the whole process group
    d = Driver(argv, tmp_path / "run1.log")
    try:
        wait_for("a finished trial", lambda: finished(run, epochs), d.proc)
        snapshot = export_snapshot(run, tmp_path / "snap")  # the analysis export while the search runs
        kept = finished(run, epochs)
        os.killpg(d.proc.pid, signal.SIGINT)
        rc, out = d.wait(timeout=120)
    finally:
        d.kill()
    assert rc == 130, out[-3000:]
    assert "Interrupted (SIGINT)" in out and resume_line(out) == expected_resume
    assert out.count("Stop signal received") == 1  # Ray Tune's graceful stop: trials stopped, state saved
    after_int = trials(run)
    kept.update(finished(run, epochs))
    assert len(kept) < 6, "every trial finished before the Ctrl-C: nothing left to resume"
    check_snapshot(snapshot, after_int, epochs)

    # 2. the printed command resumes; SIGTERM to the driver (kill, a batch scheduler) once it made progress
    resume = [sys.executable, *expected_resume[1:]]
    d = Driver(resume[3:], tmp_path / "run2.log")
    try:
        n_before = sum(map(len, after_int.values()))
        wait_for("a new epoch after the resume", lambda: sum(map(len, trials(run).values())) > n_before, d.proc)
        kept.update(finished(run, epochs))
        os.kill(d.proc.pid, signal.SIGTERM)
        rc, out = d.wait(timeout=120)
    finally:
        d.kill()
    if rc == 0:  # every trial ended before the signal landed: SIGTERM not exercised
        pytest.fail("the resumed search finished before SIGTERM; make the search longer")
    assert rc == 143, out[-3000:]
    assert "Interrupted (SIGTERM)" in out and resume_line(out) == expected_resume
    assert out.count("Stop signal received") == 1  # Ray Tune's graceful stop, as for Ctrl-C
    kept.update(finished(run, epochs))

    # 3. resume to the end: every trial finished once, nothing that had finished changed
    rc, out = Driver(resume[3:], tmp_path / "run3.log").wait()
    assert rc == 0, out[-3000:]
    assert "Interrupted" not in out and "Best configs by val_balanced_acc" in out
    final = trials(run)
    assert len(final) == 6
    for t, rows in final.items():
        reported = [r["epoch"] for r in rows]
        assert reported[-1] == epochs and sorted(set(reported)) == list(range(1, epochs + 1)), (t, reported)
    lost = [t for t, rows in kept.items() if final[t][: len(rows)] != rows]
    assert kept and not lost
    print(f"\nsignals: {len(kept)} trials finished before the stops, lost: {len(lost)}; "
          f"{sum(map(len, final.values()))} epoch rows in the end")


def export_snapshot(run: Path, out: Path) -> dict:
    """Export a running search with the real CLI; return what it wrote (read back from Parquet)."""
    from analysis import export

    assert export.main([str(run), "--out", str(out)]) == 0
    return {"trials": pd.read_parquet(out / export.TRIALS_FILE), "epochs": pd.read_parquet(out / export.EPOCHS_FILE)}


def check_snapshot(snap: dict, later: dict[str, list[dict]], epochs: int) -> None:
    """Exported mid-run: each trial's epochs are a prefix of what it reported in the end, and a trial
    exported as finished has all its epochs."""
    tr, ep = snap["trials"], snap["epochs"]
    assert len(tr) >= 1 and len(ep) >= 1
    by_id = {rows[0]["trial_id"]: t for t, rows in later.items() if rows}
    for trial_id, group in ep.groupby("trial_id", observed=True):
        rows = later[by_id[trial_id]]
        got = list(zip(group["epoch"], group["val_balanced_acc"]))
        assert got == [(r["epoch"], r["val_balanced_acc"]) for r in rows[: len(got)]], trial_id
    done = tr[tr["status"] == "TERMINATED"]
    assert len(done) >= 1
    for trial_id in done["trial_id"]:
        assert sorted(ep.loc[ep["trial_id"] == trial_id, "epoch"]) == list(range(1, epochs + 1))


# --- faults inside trials: NaN, OOM, a killed worker, a corrupt checkpoint ------------------------------

@pytest.fixture(scope="module")
def faults_run(tmp_path_factory):
    """One search, five trials, four faults. Returns what the test did and what the driver printed."""
    store = tmp_path_factory.mktemp("faults")
    ray_tmp = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))  # short: Ray's socket paths have a length limit
    run = store / "F"
    argv = ["lstm_weighted", *SMOKE, "--set", "minority_weight=2", "--seeds", "0,1,2,3,4",
            "--storage-path", str(store), "--name", "F"]
    # the trials run tests/faulty_trainable.py (the search's test hook), its workers import it from the repository
    pythonpath = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = {**faulty_trainable.HOOK, "TUNER_FAULT_INJECT": "nan:1,oom:2", "PYTHONPATH": pythonpath, "RAY_TMPDIR": str(ray_tmp)}
    d = Driver(argv, store / "driver.log", env=env)
    done: dict = {}

    def by_seed(seed):
        for f in run.glob("trial_*/result.json"):
            if seed_of(f.parent) == seed:
                return f.parent, read_rows(f)
        return None, []

    def step():
        # seed 3: kill its worker after epoch 1 -> retried from the epoch-1 checkpoint
        # seed 4: kill its worker, then truncate every checkpoint it has -> warning, restart from epoch 1
        for seed in (3, 4):
            trial, rows = by_seed(seed)
            if seed not in done and rows:
                os.kill(rows[0]["pid"], signal.SIGKILL)
                done[seed] = {"trial": trial.name, "pid": rows[0]["pid"], "epochs_before": len(rows)}
                if seed == 4:
                    done[seed]["corrupted"] = [str(p) for p in sorted(trial.glob("checkpoint_*/state.pt"))]
                    for p in done[seed]["corrupted"]:
                        data = Path(p).read_bytes()
                        Path(p).write_bytes(data[: len(data) // 2])
        return len(done) == 2

    try:
        wait_for("epoch 1 of seeds 3 and 4", step, d.proc, every=0.1)
        rc, out = d.wait()
    finally:
        d.kill()
    worker_logs = "".join(p.read_text(errors="replace") for p in ray_tmp.glob("ray/session_*/logs/worker-*.out"))
    shutil.rmtree(ray_tmp, ignore_errors=True)
    return {"run": run, "rc": rc, "out": out, "killed": done, "worker_logs": worker_logs,
            "seeds": {seed_of(p.parent): p.parent.name for p in run.glob("trial_*/params.json")}}


def test_faults_in_trials_leave_the_search_going(faults_run):
    out, run, seeds = faults_run["out"], faults_run["run"], faults_run["seeds"]
    assert faults_run["rc"] == 0, out[-4000:]
    assert sorted(seeds) == [0, 1, 2, 3, 4]
    rows = {s: read_rows(run / t / "result.json") for s, t in seeds.items()}
    # unaffected trial
    assert [r["epoch"] for r in rows[0]] == [1, 2, 3]
    # NaN: stopped after its first epoch with the reason recorded, not retried
    assert len(rows[1]) == 1 and rows[1][0]["stop_reason"].startswith("non-finite training loss at epoch 1")
    # OOM: the trial failed (after its retries) with the clear message, in error.txt and the summary
    error = (run / seeds[2] / "error.txt").read_text()
    assert "GPU out of memory (model=lstm_mlp, batch_size=" in error and "lower batch_size" in error
    assert re.search(r"failed \S+: RuntimeError: GPU out of memory", out), out[-3000:]
    assert "5 trials: 4 finished" in out and "1 failed" in out


def test_killed_worker_is_retried_from_its_checkpoint(faults_run):
    killed = faults_run["killed"][3]
    rows = read_rows(faults_run["run"] / killed["trial"] / "result.json")
    epochs, pids = [r["epoch"] for r in rows], [r["pid"] for r in rows]
    assert epochs == [1, 2, 3], epochs  # continued from a checkpoint: no epoch trained twice
    assert pids[0] == killed["pid"] and pids[-1] != killed["pid"]  # a new worker finished it


def test_corrupt_checkpoint_is_named_and_the_trial_restarts_from_scratch(faults_run):
    killed = faults_run["killed"][4]
    assert killed["corrupted"]
    rows = read_rows(faults_run["run"] / killed["trial"] / "result.json")
    epochs = [r["epoch"] for r in rows]
    assert epochs[-3:] == [1, 2, 3] and len(epochs) > 3, epochs  # epoch 1 again: started from scratch
    assert rows[-1]["pid"] != killed["pid"]
    named = re.findall(r"WARNING: corrupt checkpoint (\S+)", faults_run["worker_logs"])
    assert named and set(named) <= set(killed["corrupted"]), named
    # and in the trial's results, which the export and the report read
    warned = re.match(r"corrupt checkpoint (\S+) ", rows[-1]["checkpoint_warning"])
    assert warned and warned.group(1) in killed["corrupted"], rows[-1]["checkpoint_warning"]
    assert all(r["checkpoint_warning"] == "" for r in rows[:-3])  # the first attempt restored nothing


def test_export_shows_the_faults(faults_run, tmp_path):
    from analysis import export

    assert export.main([str(faults_run["run"]), "--out", str(tmp_path)]) == 0
    tr = pd.read_parquet(tmp_path / export.TRIALS_FILE).set_index("seed")
    assert sorted(tr.index) == [0, 1, 2, 3, 4]
    assert tr.loc[1, "status"] == "TERMINATED" and tr.loc[1, "stop_reason"].startswith("non-finite training loss")
    assert tr.loc[2, "status"] == "ERROR" and "GPU out of memory" in tr.loc[2, "error"]
    for seed in (0, 3, 4):
        assert tr.loc[seed, "status"] == "TERMINATED" and tr.loc[seed, "epochs_run"] == EPOCHS
        assert pd.isna(tr.loc[seed, "stop_reason"]) or tr.loc[seed, "stop_reason"] == ""
    assert tr.loc[4, "checkpoint_warning"].startswith("corrupt checkpoint ")
    assert (tr.loc[[0, 1, 3], "checkpoint_warning"] == "").all()
    # the report names each fault
    from analysis import report

    assert report.main([str(faults_run["run"]), "--out", str(tmp_path / "report")]) == 0
    md = (tmp_path / "report" / "report.md").read_text()
    for text in ("Trials the trainable stopped itself", "non-finite training loss at epoch 1", "GPU out of memory",
                 "checkpoint they were to resume from was corrupt", tr.loc[4, "checkpoint_warning"][:60]):
        assert text in md, text


def test_a_corrupt_result_file_is_skipped_with_a_warning_naming_it(faults_run, tmp_path):
    from analysis import export

    run = tmp_path / "F"
    shutil.copytree(faults_run["run"], run, ignore=shutil.ignore_patterns("checkpoint_*"))
    assert export.main([str(run), "--out", str(tmp_path / "clean")]) == 0
    clean = pd.read_parquet(tmp_path / "clean" / export.EPOCHS_FILE)
    bad = run / faults_run["seeds"][0] / "result.json"
    bad.write_bytes(b"\x00\xff garbage \x89PNG\r\n" + bad.read_bytes()[:100])  # binary junk, then a cut line
    with pytest.warns(UserWarning, match=re.escape(str(bad))):
        assert export.main([str(run), "--out", str(tmp_path / "out")]) == 0
    tr = pd.read_parquet(tmp_path / "out" / export.TRIALS_FILE)
    ep = pd.read_parquet(tmp_path / "out" / export.EPOCHS_FILE)
    bad_id = read_rows(faults_run["run"] / faults_run["seeds"][0] / "result.json")[0]["trial_id"]
    assert len(tr) == 5 and bad_id in set(clean["trial_id"]) and bad_id not in set(ep["trial_id"])
    others = clean[clean["trial_id"] != bad_id].reset_index(drop=True)
    pd.testing.assert_frame_equal(ep.reset_index(drop=True), others[ep.columns], check_categorical=False)


# --- storage, checkpoints, bad input ------------------------------------------------------------------

def test_parquet_is_never_half_written(tmp_path, monkeypatch):
    """Disk full mid-write: the previous table stays whole, no temp file is left behind."""
    from analysis import export

    run = tmp_path / "R"
    trial = run / "trial_abcde_00000"
    trial.mkdir(parents=True)
    (trial / "params.json").write_text(json.dumps({"seed": 0, "epochs": 1}))
    (trial / "result.json").write_text(json.dumps({"epoch": 1, "val_balanced_acc": 0.5, "trial_id": "abcde_00000"}) + "\n")
    out = tmp_path / "out"
    export.export(run, out)
    before = (out / export.TRIALS_FILE).read_bytes()

    def disk_full(table, where, *a, **k):
        Path(where).write_bytes(b"PAR1 partial")
        raise OSError(28, "No space left on device")

    import pyarrow.parquet as pq

    monkeypatch.setattr(pq, "write_table", disk_full)  # the export writes through pyarrow (list columns)
    with pytest.raises(OSError, match="No space left"):
        export.export(run, out)
    assert (out / export.TRIALS_FILE).read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == [export.EPOCHS_FILE, export.TRIALS_FILE]


def test_checkpoints_load_without_pickle(tmp_path, capsys):
    import torch

    from tuner.trainable import load_state, save_state

    state = {"model": {"w": torch.arange(6.0).reshape(2, 3)}, "epoch": 3}
    save_state(state, tmp_path)
    back = load_state(tmp_path / "state.pt")
    assert back["epoch"] == 3 and torch.equal(back["model"]["w"], state["model"]["w"])

    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"model": Evil(str(marker))}, evil)  # a pickle that runs code when unpickled
    assert load_state(evil) is None and not marker.exists()
    truncated = tmp_path / "cut.pt"
    truncated.write_bytes((tmp_path / "state.pt").read_bytes()[:200])
    assert load_state(truncated) is None
    err = capsys.readouterr().out
    assert f"corrupt checkpoint {evil}" in err and f"corrupt checkpoint {truncated}" in err


class Evil:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def test_no_pickle_loads_of_run_files_in_the_code():
    """Checkpoints and run files are data: torch.load only with weights_only=True, no pickle loads."""
    risky = re.compile(r"pickle\.loads?\(|read_pickle\(|allow_pickle\s*=\s*True|joblib\.load\(|dill\.load")
    for path in [*REPO.glob("tuner/**/*.py"), *REPO.glob("analysis/**/*.py")]:
        text = path.read_text()
        assert not risky.search(text), path
        for call in re.findall(r"torch\.load\([^)]*\)", text):
            assert "weights_only=True" in call, (path, call)


BAD = [  # those of the twelve bad inputs tests/test_search.py does not cover, and an unusable storage path
    (["--set", "loss_fn=magic"], "unknown remedy loss_fn='magic'"),
    (["--set", "minority_keep=1.5"], "minority_keep=1.5 is not allowed: expected a fraction in (0, 1]"),
    (["--set", "rotation_deg=-5"], "rotation_deg=-5.0 is not allowed: expected a number >= 0"),
    (["--storage-path", "/dev/null/x"], "--storage-path '/dev/null/x' is not writable"),
]


def test_bad_input_on_the_real_cli_exits_2_with_one_line_and_no_ray(tmp_path):
    env = {**os.environ, "RAY_TMPDIR": str(tmp_path / "raytmp")}
    procs = []
    for i, (extra, _) in enumerate(BAD):  # all at once: each pays for importing torch
        argv = ["lstm_weighted", "--storage-path", str(tmp_path / "runs"), *extra]
        procs.append(subprocess.Popen([sys.executable, "-m", "tuner.search", *argv], cwd=REPO, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for p, (extra, message) in zip(procs, BAD):
        out, err = p.communicate(timeout=180)
        assert p.returncode == 2, (extra, err)
        assert err.count("\n") == 1 and err.startswith("error: ") and message in err, (extra, err)
        assert out == ""
    assert not (tmp_path / "raytmp").exists()  # no Ray session was started
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders; /dev/null/x covers root")
def test_read_only_storage_path_is_refused_before_ray(tmp_path, capsys):
    from tuner.search import main

    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(SystemExit) as e:
            main(["lstm_weighted", "--storage-path", str(ro)])
    finally:
        ro.chmod(0o700)
    assert e.value.code == 2 and f"--storage-path {str(ro)!r} is not writable" in capsys.readouterr().err


# --- soak: SIGKILL the driver three times at random moments ------------------------------------------

SOAK_EPOCHS = 4
SOAK = ["lstm_weighted", "--budget", "local", "--dataset", "mnist-sample", "--searcher", "grid", "--no-asha",
        "--max-epochs", str(SOAK_EPOCHS)]


@pytest.mark.slow
def test_soak_three_sigkills_end_with_the_same_trials_as_an_uninterrupted_run(tmp_path):
    """The `local` budget (grid over the 9 weights, 4 of its 8 epochs; ASHA off and a grid, so that the set of
    trials is defined by the command alone) on the MNIST sample: killed with SIGKILL three times
    at random moments and resumed, it ends with the same trials and the same numbers as a run
    that was never interrupted."""
    import random

    rng = random.Random(int(os.environ.get("SOAK_SEED", "0")))
    rc, out = Driver([*SOAK, "--storage-path", str(tmp_path), "--name", "ref"], tmp_path / "ref.log").wait(timeout=3600)
    assert rc == 0, out[-3000:]
    ref = trials(tmp_path / "ref")

    run, argv, kept, kills = tmp_path / "soak", [*SOAK, "--storage-path", str(tmp_path), "--name", "soak"], {}, []
    for k in range(3):
        d = Driver(argv + (["--resume"] if k else []), tmp_path / f"soak{k}.log")
        try:
            n0 = sum(map(len, trials(run).values())) if run.exists() else 0
            wait = rng.randint(2, 10)  # epochs reported by this attempt before the kill, then a random delay
            wait_for(f"{wait} new epochs", lambda: sum(map(len, trials(run).values())) >= n0 + wait, d.proc, timeout=1800)
            time.sleep(rng.uniform(0, 5))
            kept.update(finished(run, SOAK_EPOCHS))
            os.killpg(d.proc.pid, signal.SIGKILL)
            d.proc.wait()
            kills.append({"new_epochs": wait, "finished_then": len(finished(run, SOAK_EPOCHS))})
        finally:
            d.kill()
    rc, out = Driver(argv + ["--resume"], tmp_path / "soak-final.log").wait(timeout=3600)
    assert rc == 0, out[-3000:]
    final = trials(run)

    def by_weight(ts):
        return {rows[-1]["config"]["minority_weight"]: rows for rows in ts.values() if rows}

    ref_w, final_w = by_weight(ref), by_weight(final)
    assert sorted(final_w) == sorted(ref_w) and len(ref_w) == 9
    for w, rows in final_w.items():
        last = {r["epoch"]: r for r in rows}  # an epoch re-run after a kill: its last report counts
        assert sorted(last) == list(range(1, SOAK_EPOCHS + 1)), (w, [r["epoch"] for r in rows])
        for r in ref_w[w]:
            for m in ("train_loss", "val_balanced_acc", "acc", "minority_acc"):
                assert last[r["epoch"]][m] == r[m], (w, r["epoch"], m)
    lost = [t for t, rows in kept.items() if final[t][: len(rows)] != rows]
    assert not lost
    reruns = sum(len(rows) - len({r["epoch"] for r in rows}) for rows in final.values())
    print(f"\nsoak: kills {kills}; {len(kept)} trials finished before a kill, lost {len(lost)}; "
          f"{len(final_w)} trials finished, identical to the uninterrupted run; {reruns} epochs trained twice")


def test_first_stop_signal_goes_to_tunes_graceful_stop_and_a_second_one_stops_at_once():
    """main()'s handlers without a search: Tune's SIGUSR1 handler stands in for the one fit() installs."""
    from tuner.search import _restore_signals, _stop_gracefully_on_signals

    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)}
    env_before = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
    graceful = []
    stop = {}
    previous = _stop_gracefully_on_signals(stop)
    try:
        assert os.environ["TUNE_DISABLE_SIGINT_HANDLER"] == "1"  # Tune leaves SIGINT to us
        signal.signal(signal.SIGUSR1, lambda s, f: graceful.append(s))  # what fit() installs while it runs
        os.kill(os.getpid(), signal.SIGTERM)
        assert graceful == [signal.SIGUSR1] and stop == {"signal": signal.SIGTERM}
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
        assert graceful == [signal.SIGUSR1] and stop == {"signal": signal.SIGTERM}
    finally:
        _restore_signals(previous)
    assert {s: signal.getsignal(s) for s in before} == before
    assert os.environ.get("TUNE_DISABLE_SIGINT_HANDLER") == env_before

    stop = {}
    previous = _stop_gracefully_on_signals(stop)  # no fit() running: SIGUSR1 has no Tune handler
    try:
        signal.signal(signal.SIGUSR1, signal.SIG_DFL)
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
        assert stop == {"signal": signal.SIGTERM}
    finally:
        _restore_signals(previous)
    assert {s: signal.getsignal(s) for s in before} == before
