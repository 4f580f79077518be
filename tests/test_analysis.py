"""analysis.export / load_* on real Ray Tune run dirs (fake trainable), and analysis.compare on hand-built tables."""
from __future__ import annotations

import json
import math
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import compare, dtypes, export, importance, load_epochs, load_trials, stats
from tests.fixtures import fake_search


@pytest.fixture(scope="session")
def runs(tmp_path_factory, ray_session):  # ray_session (tests/conftest.py): one Ray start for the whole test run
    return fake_search.fake_runs(tmp_path_factory.getbasetemp() / "fake_runs")


@pytest.fixture(scope="session")
def grid(runs):
    return export.build(runs["grid"])


def _copy(run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run, tmp_path / run.name))


def _trial_dir(run: Path, trial_id: str) -> Path:
    return next(d for d in run.iterdir() if d.is_dir() and f"_{trial_id}_" in d.name)


# --- export ---------------------------------------------------------------------------------------
def test_one_row_per_trial_with_config_final_and_best_columns(runs, grid):
    trials, _ = grid
    assert len(trials) == 6 and trials["trial_id"].is_unique
    params = json.loads(next(runs["grid"].glob("*/params.json")).read_text())
    for key in params:
        assert (key if key != "dataset" else "dataset_requested") in trials, key
    for col in ["run", "trial_id", "experiment", "dataset", "seed", "group", "status", "asha_stopped", "epochs_run", "error",
                "wall_time_s", "acc", "val_acc", "minority_acc", "majority_acc", "balanced_acc", "macro_f1", "p_A_to_I",
                "val_p_I_to_A", "acc_0", "acc_9", "val_balanced_acc", "train_loss", "epoch_time_s", "num_params",
                "model_bytes", "train_counts", "confusion", "best_epoch", "best_acc", "best_val_balanced_acc",
                "best_minority_acc", "best_confusion", "hostname", "node_ip"]:
        assert col in trials, col
    assert set(trials["run"]) == {"grid"}
    assert (trials["dataset"] == "mnist-sample").all() and (trials["dataset_requested"] == "mnist").all()
    assert (trials["experiment"] == "fake_weighted").all()


def test_dtypes_are_real(grid):
    trials, epochs = grid
    assert not [c for c in trials if trials[c].dtype == object], "object columns left"
    assert not [c for c in epochs if epochs[c].dtype == object], "object columns left"
    expect = {"seed": "int64", "epochs_run": "int64", "epochs": "int64", "best_epoch": "int64", "num_params": "int64",
              "acc": "float64", "val_balanced_acc": "float64", "minority_weight": "float64", "lr": "float64",
              "wall_time_s": "float64", "asha_stopped": "bool"}
    for col, dtype in expect.items():
        assert str(trials[col].dtype) == dtype, (col, trials[col].dtype)
    for col in ("run", "status", "experiment", "dataset", "model", "error", "confusion", "minority_classes"):
        assert isinstance(trials[col].dtype, pd.CategoricalDtype), col
    assert str(epochs["epoch"].dtype) == "int64" and str(epochs["val_acc"].dtype) == "float64"


def test_asha_stopped_and_failed_trials(grid):
    trials, _ = grid
    stopped = trials[trials["asha_stopped"]]
    assert len(stopped) >= 1
    assert (stopped["status"] == "TERMINATED").all() and (stopped["epochs_run"] < stopped["epochs"]).all()
    expected = (trials["status"] == "TERMINATED") & (trials["epochs_run"] < trials["epochs"])
    assert (trials["asha_stopped"] == expected).all()
    failed = trials[trials["status"] == "ERROR"]
    assert len(failed) == 1
    row = failed.iloc[0]
    assert (row["minority_weight"], row["seed"]) == fake_search.FAIL_AT
    assert row["error"] == "RuntimeError: CUDA out of memory (fake) in epoch 2"
    assert row["error_file"].endswith("error.txt") and not row["asha_stopped"] and row["epochs_run"] == 1
    assert trials.loc[trials["status"] != "ERROR", "error"].isna().all()


def test_best_epoch_and_confusion_match_the_epochs_table(grid):
    trials, epochs = grid
    assert len(epochs) == trials["epochs_run"].sum()
    for _, t in trials.iterrows():
        e = epochs[epochs["trial_id"] == t["trial_id"]].sort_values("epoch")
        assert list(e["epoch"]) == list(range(1, t["epochs_run"] + 1))
        assert t["best_val_balanced_acc"] == e["val_balanced_acc"].max()
        best = e[e["epoch"] == t["best_epoch"]].iloc[0]
        assert t["best_acc"] == best["acc"] and t["best_confusion"] == best["confusion"]
        assert t["acc"] == e["acc"].iloc[-1]
    cm = np.array(json.loads(trials["confusion"].iloc[0]))
    assert cm.shape == (10, 10) and cm.sum() == 1000
    assert json.loads(trials["train_counts"].iloc[0]) == [540] * 5 + [5400] * 5


def test_cli_writes_parquet_atomically_and_roundtrips(runs, grid, tmp_path, capsys):
    assert export.main([str(runs["grid"]), "--out", str(tmp_path / "out")]) == 0
    assert "6 trials" in capsys.readouterr().out
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files == ["epochs.parquet", "trials.parquet"]  # no temp file left behind
    back = pd.read_parquet(tmp_path / "out" / "trials.parquet")
    # lists are native Parquet list columns (polars, DuckDB and pyarrow read lists); from_parquet
    # gives back the JSON text the analysis uses in memory
    pd.testing.assert_frame_equal(dtypes.from_parquet(back), grid[0], check_categorical=False)
    assert back.attrs["selection_metric"] == "val_balanced_acc"
    assert export.main([str(tmp_path / "nothing"), "--out", str(tmp_path / "o2")]) == 2


def test_lists_are_native_parquet_list_columns(runs, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    export.export(runs["grid"], tmp_path)
    for name in ("trials", "epochs"):
        table = pq.read_table(tmp_path / f"{name}.parquet")
        assert table.schema.field("confusion").type == pa.list_(pa.list_(pa.int64())), name
        assert table.schema.field("train_counts").type == pa.list_(pa.int64()), name
        cm = table.column("confusion").to_pylist()[0]
        assert len(cm) == 10 and all(len(row) == 10 for row in cm) and sum(map(sum, cm)) == 1000
    trials = pq.read_table(tmp_path / "trials.parquet")
    assert trials.column("train_counts").to_pylist()[0] == [540] * 5 + [5400] * 5
    assert trials.schema.field("minority_classes").type == pa.list_(pa.int64())  # a config list too
    # the analysis reads the files back as it builds the tables in memory
    from analysis import load_trials

    assert load_trials(tmp_path)["confusion"].tolist() == export.build(runs["grid"])[0]["confusion"].tolist()


def test_run_in_progress(runs, tmp_path):
    run = _copy(runs["grid"], tmp_path)
    trials, _ = export.build(run)
    full = trials[(trials["epochs_run"] == 3)].iloc[0]["trial_id"]
    gone = trials[(trials["epochs_run"] == 3)].iloc[1]["trial_id"]
    # One trial has written 1 epoch and half of the next line; another has not started (no dir yet).
    result = _trial_dir(run, full) / "result.json"
    lines = result.read_text().splitlines()
    result.write_text(lines[0] + "\n" + lines[1][: len(lines[1]) // 2])
    shutil.rmtree(_trial_dir(run, gone))
    state_file = next(run.glob("experiment_state-*.json"))
    state = json.loads(state_file.read_text())
    for item in state["trial_data"]:
        t = json.loads(item[0])
        if t["trial_id"] in (full, gone):
            t["status"] = "RUNNING" if t["trial_id"] == full else "PENDING"
            item[0] = json.dumps(t)
    state_file.write_text(json.dumps(state))
    with pytest.warns(UserWarning, match=re.escape(result.parent.name)):
        trials, epochs = export.build(run)
    assert len(trials) == 6
    row = trials.set_index("trial_id").loc[full]
    assert row["status"] == "RUNNING" and row["epochs_run"] == 1 and not row["asha_stopped"]
    pending = trials.set_index("trial_id").loc[gone]
    assert pending["status"] == "PENDING" and pending["epochs_run"] == 0 and math.isnan(pending["acc"])
    assert pending["minority_weight"] in (1.0, 4.0, 8.0)  # its config comes from the experiment state
    assert str(trials["acc"].dtype) == "float64" and str(trials["epoch"].dtype) == "Int64"

    # Without any experiment state (e.g. copied before Ray wrote one) the status is inferred from the files.
    state_file.unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        inferred = export.build(run)[0].set_index("trial_id")
    assert inferred.loc[full, "status"] == "RUNNING"
    assert (inferred["status"] == "ERROR").sum() == 1
    assert (inferred["status"] == "TERMINATED").sum() == 3 and len(inferred) == 5


def test_corrupt_result_file_warns_and_keeps_the_rest(runs, tmp_path):
    run = _copy(runs["grid"], tmp_path)
    victim = _trial_dir(run, export.build(runs["grid"])[0].iloc[0]["trial_id"])
    lines = (victim / "result.json").read_text().splitlines()
    (victim / "result.json").write_text(lines[0] + "\n\x00\x00garbage{{\n" + "\n".join(lines[1:]) + "\n")
    with pytest.warns(UserWarning, match=re.escape(victim.name) + r".*result.json.*line 2"):
        trials, epochs = export.build(run)
    assert len(trials) == 6 and len(epochs) == export.build(runs["grid"])[1].shape[0]
    (victim / "result.json").write_bytes(b"\xff\xfe not json at all")
    with pytest.warns(UserWarning, match=re.escape(victim.name)):
        trials, _ = export.build(run)
    assert len(trials) == 6 and trials["acc"].notna().sum() == 5


def test_the_command_line_warns_in_one_line(runs, tmp_path):
    import subprocess
    import sys

    run = _copy(runs["grid"], tmp_path)
    victim = _trial_dir(run, export.build(runs["grid"])[0].iloc[0]["trial_id"])
    (victim / "result.json").write_bytes(b"\xff\xfe not json at all")
    done = subprocess.run([sys.executable, "-m", "analysis.export", str(run), "--out", str(tmp_path / "t")],
                          capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("warning: ") and victim.name in lines[0], done.stderr


def test_merging_runs_and_load_functions(runs, tmp_path):
    merged, epochs = export.build([runs["grid"], runs["groups"]])
    assert list(merged["run"].cat.categories) == ["grid", "groups"]
    assert (merged["run"] == "groups").sum() == 12 and (merged["run"] == "grid").sum() == 6
    assert set(epochs["run"]) == {"grid", "groups"}
    assert str(merged["seed"].dtype) == "int64" and isinstance(merged["group"].dtype, pd.CategoricalDtype)

    export.export(runs["groups"], tmp_path / "g")
    from_parquet = load_trials(tmp_path / "g")
    assert len(from_parquet) == 12 and len(load_trials(tmp_path / "g" / "trials.parquet")) == 12
    assert len(load_epochs(tmp_path / "g")) == len(load_epochs(runs["groups"]))
    mixed = load_trials([runs["grid"], tmp_path / "g"])  # a run dir and an export, merged
    assert len(mixed) == 18 and set(mixed["run"]) == {"grid", "groups"}
    assert not [c for c in mixed if mixed[c].dtype == object]
    with pytest.raises(FileNotFoundError):
        load_trials(tmp_path / "missing")


def test_trial_stopped_by_the_trainable_is_not_asha_stopped():
    from analysis.frames import trials_table
    from analysis.rundir import RunFiles, TrialFiles

    rows = [{"epoch": 1, "val_balanced_acc": 0.5, "done": True, "stop_reason": "non-finite training loss at epoch 1"}]
    t = TrialFiles("abcde_00000", "train_abcde_00000_0_lr=10", {"epochs": 3, "lr": 10.0}, rows, "TERMINATED")
    df = trials_table([RunFiles("r", Path("/nowhere/r"), [t], None, "basic-variant", None)])
    assert df.loc[0, "status"] == "TERMINATED" and not df.loc[0, "asha_stopped"]
    assert df.loc[0, "stop_reason"].startswith("non-finite") and "best_stop_reason" not in df
    assert df.loc[0, "best_epoch"] == 1 and df.loc[0, "run_path"] == str(Path("/nowhere/r"))


def test_optuna_run_is_recognised(runs):
    trials, _ = export.build(runs["optuna"])
    assert set(trials["searcher"]) == {"optuna"} and len(trials) == 6
    assert trials["trial_index"].tolist() == sorted(trials["trial_index"])
    assert trials["minority_weight"].nunique() == 6


def test_trial_dirs_named_by_id_as_tuner_search_does(runs, tmp_path):
    # tuner.search names trial dirs trial_<trial id>: no counter, so the order comes from ids / start times.
    run = _copy(runs["optuna"], tmp_path)
    before = export.build(runs["optuna"])[0].set_index("trial_id")["trial_index"]
    for d in [d for d in run.iterdir() if d.is_dir()]:
        d.rename(run / f"trial_{json.loads((d / 'result.json').read_text().splitlines()[0])['trial_id']}")
    after = export.build(run)[0]
    assert len(after) == 6 and set(after["status"]) == {"TERMINATED"}
    assert after.set_index("trial_id")["trial_index"].to_dict() == before.to_dict()
    grid = _copy(runs["grid"], tmp_path)
    for d in [d for d in grid.iterdir() if d.is_dir()]:
        d.rename(grid / f"trial_{d.name.split('_')[2]}_{d.name.split('_')[3]}")
    trials = export.build(grid)[0]
    assert trials["trial_index"].tolist() == list(range(6)) and (trials["status"] == "ERROR").sum() == 1


def test_selection_metric_can_be_changed(runs):
    trials, _ = export.build(runs["grid"], metric="val_loss")
    assert trials.attrs["selection_mode"] == "min" and set(trials["selection_metric"]) == {"val_loss"}
    epochs = export.build(runs["grid"])[1]
    for _, t in trials.iterrows():
        assert t["best_val_loss"] == epochs.loc[epochs["trial_id"] == t["trial_id"], "val_loss"].min()


# --- compare: hand-computed numbers ----------------------------------------------------------------
T975_2 = 4.302653  # t_{0.975, 2}


def _table():
    # 2 remedy values x 3 seeds; minority_weight=1: acc 0.8, 0.9, 1.0.
    return pd.DataFrame({
        "trial_id": [f"t{i}" for i in range(6)],
        "status": ["TERMINATED"] * 6,
        "minority_weight": [1.0, 1.0, 1.0, 4.0, 4.0, 4.0],
        "seed": [0, 1, 2, 0, 1, 2],
        "acc": [0.8, 0.9, 1.0, 0.85, 0.95, 0.96],
        "minority_acc": [0.5, 0.6, 0.7, 0.8, 0.8, 0.8],
        "majority_acc": [0.99, 0.98, 0.97, 0.9, 0.9, 0.9],
    })


def test_sweep_mean_std_ci():
    s = compare.sweep(_table(), "minority_weight")
    row = s[(s["minority_weight"] == 1.0) & (s["metric"] == "acc")].iloc[0]
    assert row["mean"] == pytest.approx(0.9) and row["std"] == pytest.approx(0.1) and row["n"] == 3
    half = T975_2 * 0.1 / math.sqrt(3)
    assert half == pytest.approx(0.248414, abs=1e-6)
    assert row["ci95_low"] == pytest.approx(0.9 - half) and row["ci95_high"] == pytest.approx(0.9 + half)
    const = s[(s["minority_weight"] == 4.0) & (s["metric"] == "minority_acc")].iloc[0]
    assert const["std"] == pytest.approx(0.0) and const["ci95_low"] == pytest.approx(0.8)
    assert list(s.columns) == ["minority_weight", "metric", "mean", "std", "n", "ci95_low", "ci95_high"]


def test_sweep_single_seed_and_by():
    t = _table()
    t["model"] = ["cnn", "lstm2"] * 3
    one = compare.sweep(t.iloc[[0]], "minority_weight", ["acc"])
    assert one["n"].iloc[0] == 1 and math.isnan(one["std"].iloc[0]) and math.isnan(one["ci95_low"].iloc[0])
    by = compare.sweep(t, "minority_weight", ["acc"], by="model")
    cell = by[(by["model"] == "cnn") & (by["minority_weight"] == 1.0)].iloc[0]
    assert cell["n"] == 2 and cell["mean"] == pytest.approx(0.9)  # seeds 0 and 2: 0.8, 1.0


def test_per_class_table():
    rows = []
    for group, base in (("unbalanced", 0.5), ("augmented", 0.7)):
        for seed, noise in ((0, -0.1), (1, 0.1)):
            rows.append({"group": group, "seed": seed, "minority_classes": "[0, 1, 2, 3, 4]",
                         **{f"acc_{c}": (base + noise if c < 5 else 0.9) for c in range(10)}})
    t = pd.DataFrame(rows)
    table = compare.per_class_table(t)
    assert list(table.columns) == ["unbalanced", "augmented"]
    assert list(table.index) == [str(c) for c in range(10)] + ["minority mean", "majority mean"]
    assert table.loc["0", "unbalanced"] == pytest.approx(0.5) and table.loc["9", "augmented"] == pytest.approx(0.9)
    assert table.loc["minority mean", "augmented"] == pytest.approx(0.7)
    assert table.loc["majority mean", "unbalanced"] == pytest.approx(0.9)
    with_std = compare.per_class_table(t, stats_=("mean", "std"))
    assert with_std.loc["0", ("unbalanced", "std")] == pytest.approx(math.sqrt(0.02))
    three = compare.per_class_table(t, minority=[0, 1, 2])
    assert three.loc["minority mean", "unbalanced"] == pytest.approx(0.5)
    assert three.loc["majority mean", "unbalanced"] == pytest.approx((2 * 0.5 + 5 * 0.9) / 7)


def test_best_per_remedy_chooses_on_validation_and_reports_test():
    rows = []
    for group in ("unbalanced", "irm"):
        for lr, val, test in ((0.1, 0.9, 0.6), (0.01, 0.8, 0.95)):
            for seed in (0, 1, 2):
                rows.append({"trial_id": f"{group}{lr}{seed}", "group": group, "lr": lr, "seed": seed,
                             "val_balanced_acc": val + 0.01 * seed + (0.05 if group == "irm" and lr == 0.01 else 0),
                             "acc": test + 0.01 * seed, "minority_acc": test, "majority_acc": test,
                             "balanced_acc": test})
    t = pd.DataFrame(rows)
    best = compare.best_per_remedy(t, "group")
    unb = best[(best["group"] == "unbalanced") & (best["metric"] == "acc")].iloc[0]
    assert unb["config"] == "lr=0.1" and unb["mean"] == pytest.approx(0.61) and unb["n"] == 3 and unb["n_configs"] == 2
    assert unb["ci95_high"] - unb["mean"] == pytest.approx(T975_2 * 0.01 / math.sqrt(3), rel=1e-5)
    irm = best[(best["group"] == "irm") & (best["metric"] == "val_balanced_acc")].iloc[0]
    assert irm["config"] == "lr=0.1" and irm["mean"] == pytest.approx(0.91)  # 0.91 > 0.85 + 0.01
    worst = compare.best_per_remedy(t, "group", mode="min")
    assert set(worst.loc[worst["metric"] == "acc", "config"]) == {"lr=0.01"}
    assert best["metric"].tolist()[:5] == ["val_balanced_acc", "acc", "minority_acc", "majority_acc", "balanced_acc"]


def test_model_vs_model():
    t = pd.DataFrame({"model": ["cnn"] * 4 + ["lstm2"] * 4, "group": ["a", "a", "b", "b"] * 2, "seed": [0, 1] * 4,
                      "acc": [0.8, 1.0, 0.5, 0.7, 0.6, 0.6, 0.9, 0.9]})
    wide = compare.model_vs_model(t, by="group", metrics=["acc"])
    assert list(wide.columns.get_level_values(0).unique()) == ["cnn", "lstm2"]
    assert wide.loc[("a", "acc"), ("cnn", "mean")] == pytest.approx(0.9)
    assert wide.loc[("a", "acc"), ("cnn", "std")] == pytest.approx(math.sqrt(0.02))
    assert wide.loc[("b", "acc"), ("lstm2", "n")] == 2 and wide.loc[("b", "acc"), ("lstm2", "std")] == 0
    assert set(wide.columns.get_level_values(1)) == set(stats.STATS)


def test_paired_test_matches_scipy_and_flags_noise():
    from scipy.stats import ttest_rel

    t = pd.DataFrame({"remedy": ["none"] * 3 + ["w"] * 4, "seed": [0, 1, 2, 0, 1, 2, 9],
                      "balanced_acc": [0.80, 0.85, 0.90, 0.82, 0.88, 0.91, 0.2]})
    r = compare.paired_test(t, {"remedy": "none"}, {"remedy": "w"}, "balanced_acc")
    assert r["n"] == 3 and r["seeds"] == "0,1,2"  # seed 9 has no baseline: not paired
    assert r["diff_mean"] == pytest.approx(0.02) and r["diff_std"] == pytest.approx(0.01)
    assert r["t"] == pytest.approx(0.02 / (0.01 / math.sqrt(3)))
    assert r["p_value"] == pytest.approx(ttest_rel([0.82, 0.88, 0.91], [0.80, 0.85, 0.90]).pvalue)
    assert r["p_value"] == pytest.approx(0.0742, abs=1e-3) and r["within_noise"]
    assert r["diff_ci95_low"] == pytest.approx(0.02 - T975_2 * 0.01 / math.sqrt(3))
    assert r["baseline_mean"] == pytest.approx(0.85) and r["candidate_mean"] == pytest.approx(0.87)

    big = t.assign(balanced_acc=[0.80, 0.85, 0.90, 0.90, 0.96, 1.00, 0.2])
    r = compare.paired_test(big, big["remedy"] == "none", lambda d: d["remedy"] == "w", "balanced_acc")
    assert r["p_value"] < 0.01 and not r["within_noise"]
    one = compare.paired_test(t[t["seed"] == 0], {"remedy": "none"}, {"remedy": "w"}, "balanced_acc")
    assert one["n"] == 1 and math.isnan(one["p_value"]) and one["within_noise"]


def test_paired_vs_baseline_uses_the_no_remedy_value():
    t = _table()
    res = compare.paired_vs_baseline(t, "minority_weight", "minority_acc")
    assert len(res) == 1 and res.iloc[0]["baseline"] == 1.0 and res.iloc[0]["minority_weight"] == 4.0
    assert res.iloc[0]["diff_mean"] == pytest.approx(0.2) and res.iloc[0]["n"] == 3


def _bh_by_hand(p):
    """Benjamini-Hochberg written out: sort ascending, p_(i) * m / i, then the running minimum from the top."""
    order = sorted(range(len(p)), key=lambda i: p[i])
    m, adjusted, running = len(p), [0.0] * len(p), 1.0
    for rank in range(m, 0, -1):
        i = order[rank - 1]
        running = min(running, p[i] * m / rank)
        adjusted[i] = running
    return adjusted


def test_a_sweep_of_paired_tests_is_corrected_as_one_family():
    from scipy.stats import ttest_rel

    base = [0.80, 0.85, 0.90]
    # four values: one clear gain, one borderline gain (raw p < 0.05), two with no real difference
    values = {2.0: [0.90, 0.96, 1.00], 3.0: [0.835, 0.87, 0.935], 4.0: [0.81, 0.84, 0.91], 5.0: [0.79, 0.86, 0.89]}
    rows = [{"minority_weight": 1.0, "seed": s, "minority_acc": v} for s, v in enumerate(base)]
    rows += [{"minority_weight": w, "seed": s, "minority_acc": v} for w, vs in values.items() for s, v in enumerate(vs)]
    res = compare.paired_vs_baseline(pd.DataFrame(rows), "minority_weight", "minority_acc").set_index("minority_weight")
    raw = [ttest_rel(values[w], base).pvalue for w in values]
    assert res["p_value"].tolist() == pytest.approx(raw)
    assert res["p_adjusted"].tolist() == pytest.approx(_bh_by_hand(raw))
    assert raw[1] < 0.05 <= res.loc[3.0, "p_adjusted"]  # significant alone, not among four tests
    assert res.loc[3.0, "within_noise"] and not res.loc[2.0, "within_noise"]
    assert res["within_noise"].tolist() == [not (p < 0.05) for p in _bh_by_hand(raw)]


def test_aliases_are_params_that_vary_together():
    t = pd.DataFrame({"group": ["a", "a", "b", "b"], "model": ["m1", "m1", "m2", "m2"], "lr": [0.1, 0.2, 0.1, 0.2],
                      "x": [1.0, 2.0, 3.0, 4.0], "y": [5.0, 6.0, 7.0, 8.0]})
    assert compare.aliases(t, ["group", "model", "lr"]) == {"group": ["model"], "lr": []}
    assert compare.aliases(t, ["x", "y"]) == {"x": [], "y": []}  # continuous: every trial its own value


def test_completed_and_varying(grid):
    trials, _ = grid
    done = compare.completed(trials)
    assert (done["status"] == "TERMINATED").all() and len(done) == 5
    assert len(compare.completed(trials, include_stopped=False)) == 5 - trials["asha_stopped"].sum()
    assert compare.varying(trials) == ["minority_weight"]


def test_importance_ranks_the_parameter_that_matters():
    rng = np.random.default_rng(0)
    t = pd.DataFrame({"lr": rng.uniform(1e-4, 1e-2, 20), "minority_weight": rng.uniform(1, 8, 20)})
    t["val_balanced_acc"] = 0.5 + 0.05 * t["minority_weight"] + rng.normal(0, 0.001, 20)
    imp, method = importance.param_importance(t, ["lr", "minority_weight"], "val_balanced_acc")
    assert imp.index[0] == "minority_weight" and imp.sum() == pytest.approx(1.0) and method
    with pytest.raises(ValueError, match="at least"):
        importance.param_importance(t.head(3), ["lr"], "val_balanced_acc")
    corr = importance._correlation(t, ["lr", "minority_weight"], "val_balanced_acc")
    assert corr.index[0] == "minority_weight"


def test_error_headline_is_the_exception_line_or_what_a_dead_worker_says():
    from analysis.rundir import error_headline

    traceback = ("Failure # 1 (occurred at 2026-11-20_10-00-00)\n"
                 "\x1b[36mray::ImplicitFunc.train()\x1b[39m (pid=123, ip=10.0.0.1)\n"
                 "  File \"/x/trainable.py\", line 10, in train\n"
                 "    raise RuntimeError(\"CUDA out of memory\")\n"
                 "    ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n"
                 "RuntimeError: CUDA out of memory\n"
                 "  more detail\n")
    assert error_headline(traceback) == "RuntimeError: CUDA out of memory"
    # a killed worker: Ray writes no traceback, only its header and the actor's fate
    died = ("Failure # 1 (occurred at 2026-11-20_10-00-00)\n"
            "The actor died unexpectedly before finishing this task.\n"
            "\tclass_name: ImplicitFunc\n\tpid: 4242\n")
    assert error_headline(died) == "The actor died unexpectedly before finishing this task."
    assert error_headline("Failure # 2 (occurred at 2026-11-20_10-00-05)\n") == "Failure # 2 (occurred at 2026-11-20_10-00-05)"
