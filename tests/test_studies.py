"""The studies (search_spaces/studies.py) and their report layouts (analysis/studies.py).

Fast tests check the plans (no Ray), the settings each arm's trials get, the remedies' counts and
the report functions on hand-built tables against independent computations. One real smoke study
(rnn_noise_irm on mnist-sample) runs in the default suite; the other smoke studies are `slow`.
"""
import json
import math
import shlex

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats as st

from analysis import load_epochs, load_trials
from analysis import studies as study_report
from tuner import config as config_mod
from tuner import remedies
from tuner.search import build_plan, main, param_space, parse_args, parse_sets

STUDIES = ["rnn_noise_irm", "lstm_weighted_loss", "ros_vs_weights", "cifar_vgg"]
MINORITY = [0, 1, 2, 3, 4]


def plan(tmp_path, *argv):
    return build_plan(parse_args([*argv, "--storage-path", str(tmp_path)]))


def trial_configs(p) -> list[dict]:
    """Every trial config Ray Tune will create from the plan (its own variant generator, no cluster)."""
    from ray.tune.search.variant_generator import generate_variants

    return [config_mod.resolve(cfg) for _, cfg in generate_variants(param_space(p))]


# --- plans --------------------------------------------------------------------------------------
@pytest.mark.parametrize("study, epochs, settings, trials", [
    ("rnn_noise_irm", 100, {"model": "lstm", "batch_size": 1024, "lr": 1e-3, "optimizer": "adam"}, 11 * 5),
    # + the noise_rotation_100 arm and the original's final ReLU (issue 16)
    ("lstm_weighted_loss", 50, {"model": "lstm_mlp", "lr": 1e-3, "weight_decay": 1e-4, "optimizer": "adam",
                                "final_relu": True}, 16 * 5),
    # + the _rot_all arms: rotation of every training image, as the original (issue 16)
    ("ros_vs_weights", 100, {"lr": 0.01, "batch_size": 256}, 32 * 2 * 5),
    ("cifar_vgg", 100, {"dataset": "cifar10", "model": "vgg", "vgg_variant": "vgg16", "pretrained": True,
                        "batch_size": 1024, "lr": 1e-3}, 11 * 5),
])
def test_paper_budget_has_the_original_settings(tmp_path, study, epochs, settings, trials):
    p = plan(tmp_path, study, "--budget", "paper")
    assert p.max_epochs == epochs and p.seeds == [0, 1, 2, 3, 4] and p.searcher == "grid" and not p.asha
    assert {k: p.fixed[k] for k in settings} == settings
    assert p.num_trials() == trials


@pytest.mark.parametrize("study", STUDIES)
def test_smoke_and_local_budgets_are_cpu_sized(tmp_path, study):
    smoke, local = plan(tmp_path, study, "--budget", "smoke"), plan(tmp_path, study)
    assert local.budget_name == "local" and smoke.max_epochs == 1 and local.max_epochs <= 10  # docs/studies.md: 1-7 min each here
    assert smoke.seeds == local.seeds == [0]
    if study == "cifar_vgg":  # VGG16 needs a GPU and ImageNet weights: the CPU budgets train a tiny VGG
        for p in (smoke, local):
            assert p.fixed["dataset"] == "cifar10" and p.fixed["vgg_variant"] == "tiny" and p.fixed["pretrained"] is False
    else:
        assert smoke.fixed["dataset"] == "mnist-sample" and local.fixed["dataset"] == "mnist"


def test_rnn_noise_irm_arms_give_each_group_its_settings(tmp_path):
    configs = {c["group"]: c for c in trial_configs(plan(tmp_path, "rnn_noise_irm", "--budget", "paper", "--seeds", "0"))}
    sweep = ["irm_lambda_0.1", "irm_lambda_1", "irm_lambda_10", "irm_lambda_100"]
    assert sorted(configs) == sorted(["elman_balanced", "lstm_balanced", "unbalanced", "augmented", "irm", "combined",
                                      "irm_groups", *sweep])
    variances = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    expect = {  # group: (model, minority_keep, noise_copies, irm_lambda, irm_env, irm_anneal_epochs)
        "elman_balanced": ("elman", 1.0, None, 0.0, "batch", 0), "lstm_balanced": ("lstm", 1.0, None, 0.0, "batch", 0),
        "unbalanced": ("lstm", 0.1, None, 0.0, "batch", 0), "augmented": ("lstm", 0.1, variances, 0.0, "batch", 0),
        # IRM as the original ran it: environments are the training batches
        "irm": ("lstm", 0.1, None, 1.0, "batch", 0), "combined": ("lstm", 0.1, variances, 1.0, "batch", 0),
        "irm_groups": ("lstm", 0.1, None, 1.0, "groups", 0),
        **{g: ("lstm", 0.1, None, lam, "batch", 10) for g, lam in zip(sweep, (0.1, 1.0, 10.0, 100.0))},
    }
    for group, settings in expect.items():
        c = configs[group]
        got = (c["model"], c["minority_keep"], c["noise_copies"], c["irm_lambda"], c["irm_env"], c["irm_anneal_epochs"])
        assert got == settings, group
        assert c["batch_size"] == 1024 and c["epochs"] == 100


def test_the_lambda_sweep_runs_in_the_paper_budget_only(tmp_path):
    for budget in ("smoke", "local"):
        groups = {c["group"] for c in trial_configs(plan(tmp_path, "rnn_noise_irm", "--budget", budget))}
        assert groups == {"elman_balanced", "lstm_balanced", "unbalanced", "augmented", "irm", "combined",
                          "irm_groups"}, budget


def test_ros_vs_weights_runs_every_arm_for_both_models(tmp_path):
    configs = trial_configs(plan(tmp_path, "ros_vs_weights", "--budget", "paper", "--seeds", "0"))
    by = {tuple(c["group"].split(":")): c for c in configs}
    assert len(configs) == len(by) == 64 and all(c["model"] == model for (model, _), c in by.items())
    # lr 0.01 for both; each model with the optimizer that trains it at that rate
    assert {(c["model"], c["optimizer"], c["lr"]) for c in configs} == {("cnn", "sgd", 0.01), ("lstm2", "adam", 0.01)}
    c = by[("lstm2", "ros_0.6_rot")]
    assert (c["ros_target"], c["rotation_deg"], c["augment_scope"], c["minority_weight"]) == (0.6, 25.0, "copies", 1.0)
    c = by[("cnn", "weight_4_rot")]
    assert (c["ros_target"], c["rotation_deg"], c["augment_scope"], c["minority_weight"]) == (0.0, 25.0, "minority", 4.0)
    c = by[("cnn", "ros_1")]
    assert (c["ros_target"], c["rotation_deg"]) == (1.0, 0.0)
    assert by[("cnn", "balanced")]["minority_keep"] == 1.0 and by[("cnn", "unbalanced")]["minority_keep"] == 0.1


def test_a_budget_can_run_a_subset_of_the_arms(tmp_path):
    p = plan(tmp_path, "ros_vs_weights", "--budget", "smoke")
    arms = ["balanced", "unbalanced", "ros_0.2", "ros_1", "ros_0.2_rot", "ros_1_rot", "weight_2", "weight_10",
            "weight_2_rot", "weight_10_rot"]
    assert [a["group"] for a in p.arms] == [f"{m}:{a}" for m in ("cnn", "lstm2") for a in arms]
    assert p.num_trials() == 20 and len(trial_configs(p)) == 20


def test_lstm_weighted_loss_arms(tmp_path):
    configs = {c["group"]: c for c in trial_configs(plan(tmp_path, "lstm_weighted_loss", "--budget", "smoke"))}
    assert [configs[f"weight_{w}"]["minority_weight"] for w in range(2, 11)] == [float(w) for w in range(2, 11)]
    assert (configs["noise_40"]["ros_target"], configs["noise_40"]["noise_sigma"], configs["noise_40"]["augment_scope"]) == (0.4, 0.3, "copies")
    assert (configs["rotation_100"]["ros_target"], configs["rotation_100"]["rotation_deg"]) == (1.0, 15.0)
    assert configs["unbalanced"]["minority_weight"] == 1.0 and configs["unbalanced"]["ros_target"] == 0.0
    c = configs["noise_rotation_100"]  # the original's noise + rotation arm
    assert (c["ros_target"], c["noise_sigma"], c["rotation_deg"], c["augment_scope"]) == (1.0, 0.3, 15.0, "copies")
    assert not any(c["final_relu"] for c in configs.values())  # the CPU budgets keep today's head


def test_lstm_weighted_loss_paper_budget_has_the_final_relu(tmp_path):
    configs = trial_configs(plan(tmp_path, "lstm_weighted_loss", "--budget", "paper", "--seeds", "0"))
    assert len(configs) == 16 and all(c["final_relu"] is True and c["model"] == "lstm_mlp" for c in configs)
    off = trial_configs(plan(tmp_path, "lstm_weighted_loss", "--budget", "paper", "--seeds", "0", "--set",
                             "final_relu=false"))
    assert not any(c["final_relu"] for c in off)


def test_ros_vs_weights_rotate_all_arms(tmp_path):
    by = {c["group"]: c for c in trial_configs(plan(tmp_path, "ros_vs_weights", "--budget", "local"))}
    for model in ("cnn", "lstm2"):
        for arm, key, value in (("ros_0.2_rot_all", "ros_target", 0.2), ("ros_1_rot_all", "ros_target", 1.0),
                                ("weight_2_rot_all", "minority_weight", 2.0), ("weight_10_rot_all", "minority_weight", 10.0)):
            c = by[f"{model}:{arm}"]
            assert (c["augment_scope"], c["rotation_deg"], c[key]) == ("all", 25.0, value)
    assert len(by) == 28  # 20 arms of before + the 8 _rot_all arms
    smoke = {c["group"] for c in trial_configs(plan(tmp_path, "ros_vs_weights", "--budget", "smoke"))}
    assert len(smoke) == 20 and not any(g.endswith("_rot_all") for g in smoke)  # smoke as before


def test_augmentation_arms_raise_the_minority_count_as_the_studies_say():
    """Counts per class of one epoch's sample (epoch_plan) for 600 images of each minority class and
    6000 of each majority class: noise copies restore balance; ros_target 0.4 / 1.0 reach 40% / 100%."""
    by_class = [torch.arange(600) if c in MINORITY else torch.arange(6000) for c in range(10)]
    base = config_mod.resolve({})

    def counts(**settings):
        ep = remedies.epoch_plan({**base, **settings}, by_class, torch.Generator().manual_seed(0))
        return np.bincount(ep.y.numpy(), minlength=10).tolist()

    from search_spaces.studies import NOISE_VARIANCES

    assert counts(noise_copies=NOISE_VARIANCES) == [6000] * 10
    assert counts(ros_target=0.4, augment_scope="copies") == [2400] * 5 + [6000] * 5
    assert counts(ros_target=1.0, augment_scope="copies") == [6000] * 10


def test_follow_up_study_needs_the_class_weights(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["lstm_class_weights", "--storage-path", str(tmp_path)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "lstm_class_weights needs --set class_weights=VALUE" in err and err.count("\n") == 1
    p = plan(tmp_path, "lstm_class_weights", "--set", "class_weights=[3,9,2,2,10,1,1,1,1,1]")
    assert p.fixed["class_weights"] == [3, 9, 2, 2, 10, 1, 1, 1, 1, 1] and [a["group"] for a in p.arms] == ["class_weights"]


# --- report functions on hand-built tables ----------------------------------------------------------
def fake_trials(experiment: str, arms: list[dict], seeds=(0, 1, 2), model="lstm", dataset="mnist") -> pd.DataFrame:
    """A trials table as analysis.load_trials returns it: metrics at the selected epoch as best_*.
    Accuracies are drawn at random; the group metrics are computed from them as the trainable does."""
    rng = np.random.default_rng(0)
    rows = []
    for i, arm in enumerate(arms):
        for s in seeds:
            acc = rng.uniform(0.2, 1.0, 10)
            val = rng.uniform(0.2, 1.0, 10)
            row = {"run": "R", "trial_id": f"t{i}_{s}", "trial_index": len(rows), "experiment": experiment, "seed": s,
                   "status": "TERMINATED", "asha_stopped": False, "model": model, "dataset": dataset,
                   "dataset_requested": dataset, "budget": "local", "minority_weight": 1.0, "ros_target": 0.0,
                   "rotation_deg": 0.0, "minority_keep": 0.1, "num_params": 1000, "model_bytes": 4000, **arm}
            for prefix, a in (("", acc), ("val_", val)):
                row.update({f"best_{prefix}acc_{c}": a[c] for c in range(10)})
                row.update({f"best_{prefix}minority_acc": a[:5].mean(), f"best_{prefix}majority_acc": a[5:].mean(),
                            f"best_{prefix}balanced_acc": a.mean(), f"best_{prefix}acc": a.mean()})
            p = rng.uniform(0, 0.3, 4)
            row.update({f"best_{k}": v for k, v in zip(study_report.P_RATES, p)})
            row.update(best_epoch=2, best_confusion=json.dumps(np.diag(np.full(10, 10)).tolist()))
            # final-epoch values differ: the studies must read the selected epoch
            row.update({k[5:]: -1.0 for k in list(row) if k.startswith("best_") and k != "best_confusion"})
            rows.append(row)
    return pd.DataFrame(rows)


def epochs_of(trials: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame([{"run": "R", "trial_id": r["trial_id"], "epoch": e, "acc": 0.5 + 0.1 * e,
                          "minority_acc": 0.1 * e} for _, r in trials.iterrows() for e in (1, 2)])


def independent_cell(values, ci=False) -> str:
    v = np.asarray(values, float) * 100
    m, sd = v.mean(), v.std(ddof=1)
    half = st.t.ppf(0.975, len(v) - 1) * sd / math.sqrt(len(v))
    return f"{m:.1f} ± {sd:.1f}" + (f" [{m - half:.1f}, {m + half:.1f}]" if ci else "")


def test_per_class_table_is_mean_sd_over_seeds_at_the_selected_epoch():
    t = study_report.selected(fake_trials("rnn_noise_irm", [{"group": "unbalanced"}, {"group": "irm"}]))
    table = study_report.per_class_table(t, ["unbalanced", "irm"]).set_index("class")
    irm = t[t["group"] == "irm"]
    assert table.loc["3 *", "irm"] == independent_cell(irm["best_acc_3"])
    assert table.loc["7", "unbalanced"] == independent_cell(t[t["group"] == "unbalanced"]["best_acc_7"])
    minority = irm[[f"best_acc_{c}" for c in MINORITY]].mean(axis=1)
    assert table.loc["**minority mean**", "irm"] == independent_cell(minority, ci=True)
    assert table.loc["seeds (n)", "irm"] == "3"
    assert study_report.cell([0.5]) == "50.0" and study_report.cell([]) == "–"


def test_best_class_weights_choose_on_validation_and_the_command_round_trips(tmp_path):
    arms = [{"group": "unbalanced"}] + [{"group": f"weight_{w}", "minority_weight": float(w)} for w in range(2, 11)]
    t = study_report.selected(fake_trials("lstm_weighted_loss", arms))
    sweep = t[t["minority_weight"] != 1]
    expect = [1.0] * 10
    for c in MINORITY:  # independent: the weight whose seeds have the highest mean validation accuracy of class c
        means = {w: sweep.loc[sweep["minority_weight"] == w, f"best_val_acc_{c}"].mean() for w in range(2, 11)}
        expect[c] = float(max(means, key=means.get))
    best = study_report.best_class_weights(t)
    assert best["weights"] == expect
    assert len(set(expect[:5])) > 1  # the test data really has different best weights per class
    cmd = study_report.class_weights_command(t, best["weights"])
    argv = shlex.split(cmd)
    assert argv[:4] == ["python", "-m", "tuner.search", "lstm_class_weights"]
    args = parse_args(argv[3:])
    assert parse_sets(args.set)["class_weights"] == expect
    assert (args.budget, args.dataset, args.seeds) == ("local", "mnist", "0,1,2")
    assert build_plan(parse_args([*argv[3:], "--storage-path", str(tmp_path)])).fixed["class_weights"] == expect


def _study_markdown(trials, epochs, out):
    sections = study_report.study_sections(trials, epochs, out)
    assert len(sections) == 1
    title, md, figures = sections[0]
    assert all(f.exists() and f.suffix == ".png" for f in figures)
    return title, md, figures


def test_noise_irm_layout(tmp_path):
    arms = [{"group": g} for g in ("elman_balanced", "lstm_balanced", "unbalanced", "augmented", "irm", "combined")]
    t = fake_trials("cifar_vgg", arms, dataset="cifar10")
    title, md, figures = _study_markdown(t, epochs_of(t), tmp_path)
    assert title.startswith("Study cifar_vgg")
    head = next(line for line in md.splitlines() if line.startswith("| class |"))
    assert head == "| class | unbalanced | augmented | irm | combined |"  # no vgg_balanced arm in this table
    assert "| 3 cat * |" in md  # CIFAR-10 class names
    assert [f.name for f in figures] == ["cifar_vgg_learning_curves.png"]
    assert "difference vs unbalanced" in md and "test data is only reported, never used to choose" in md


def test_weighted_loss_layout_with_the_follow_up_run(tmp_path):
    arms = [{"group": "balanced", "minority_keep": 1.0}, {"group": "unbalanced"}, {"group": "noise_40"},
            *({"group": f"weight_{w}", "minority_weight": float(w)} for w in range(2, 11))]
    t = pd.concat([fake_trials("lstm_weighted_loss", arms), fake_trials("lstm_class_weights", [{"group": "class_weights"}])])
    title, md, figures = _study_markdown(t, epochs_of(t), tmp_path)
    assert "| class | balanced | unbalanced | noise_40 | class_weights |" in md
    assert "| 10 |" in md and "| 1 (unbalanced) |" in md  # the sweep table, with the unbalanced run as weight 1
    assert "python -m tuner.search lstm_class_weights" in md and "by its test accuracy" in md
    names = [f.name for f in figures]
    assert names[:2] == ["lstm_weighted_loss_per_class_vs_weight.png", "lstm_weighted_loss_sweep_minority_weight.png"]
    assert sum("confusion" in n for n in names) == 3  # unbalanced, best uniform weight, per-class weights
    # the follow-up run alone (its config has no minority_weight) still gets its per-class table
    alone = fake_trials("lstm_class_weights", [{"group": "class_weights"}]).drop(columns="minority_weight")
    _, md, _ = _study_markdown(alone, epochs_of(alone), tmp_path / "alone")
    assert "| class | class_weights |" in md


def test_ros_vs_weights_layout(tmp_path):
    arms = [{"group": "balanced", "minority_keep": 1.0}, {"group": "unbalanced"},
            *({"group": f"ros_{r:g}{s}", "ros_target": r, "rotation_deg": d} for r in (0.2, 1.0) for s, d in (("", 0.0), ("_rot", 25.0))),
            *({"group": f"weight_{w}{s}", "minority_weight": float(w), "rotation_deg": d} for w in (2, 10) for s, d in (("", 0.0), ("_rot", 25.0)))]
    t = pd.concat([fake_trials("ros_vs_weights", [{**a, "group": f"{m}:{a['group']}"} for a in arms], model=m)
                   .assign(trial_id=lambda d, m=m: m + d["trial_id"], num_params=n, model_bytes=4 * n)
                   for m, n in (("cnn", 1_000_000), ("lstm2", 130_000))])
    title, md, figures = _study_markdown(t, epochs_of(t), tmp_path)
    assert [f.name for f in figures] == ["ros_vs_weights_p_rates_ros.png", "ros_vs_weights_p_rates_weight.png"]
    assert "| cnn | 1000000 | 4000000 | 3.81 |" in md
    # the unbalanced run starts both sweeps: 1/rho = kept fraction 0.1, weight 1, with and without rotation
    sel = study_report.selected(t)
    unb = sel[sel["group"] == "lstm2:unbalanced"]
    row = f"| lstm2 | yes | 0.1 | 3 | {independent_cell(unb['best_minority_acc'])} |"
    assert row in md and row.replace("| 0.1 |", "| 1 |") in md
    assert "| all images |" not in md and "minority, final epoch" in md


def test_ros_vs_weights_layout_tells_the_rotation_of_every_image_apart(tmp_path):
    arms = [{"group": "unbalanced"}, {"group": "ros_1", "ros_target": 1.0},
            {"group": "ros_1_rot", "ros_target": 1.0, "rotation_deg": 25.0, "augment_scope": "copies"},
            {"group": "ros_1_rot_all", "ros_target": 1.0, "rotation_deg": 25.0, "augment_scope": "all"}]
    t = fake_trials("ros_vs_weights", [{**a, "group": f"cnn:{a['group']}"} for a in arms], model="cnn")
    _, md, _ = _study_markdown(t, epochs_of(t), tmp_path)
    sel = study_report.selected(t)
    for group, label in (("cnn:ros_1_rot_all", "all images"), ("cnn:ros_1_rot", "yes"), ("cnn:ros_1", "no")):
        r = sel[sel["group"] == group]
        assert f"| cnn | {label} | 1 | 3 | {independent_cell(r['best_minority_acc'])} |" in md, label
    # the unbalanced run starts each curve, the all-images one included
    unb = independent_cell(sel[sel["group"] == "cnn:unbalanced"]["best_minority_acc"])
    assert f"| cnn | all images | 0.1 | 3 | {unb} |" in md
    assert "cnn: rotation helps ROS (the original rotated every image) | cnn:ros_1_rot_all > cnn:ros_1 |" in md


# --- real searches ----------------------------------------------------------------------------
def result_rows(run_dir):
    return {f.parent.name: [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
            for f in run_dir.glob("trial_*/result.json")}


def test_rnn_noise_irm_smoke_runs_and_reports(ray_session, tmp_path, capsys):
    assert main(["rnn_noise_irm", "--budget", "smoke", "--storage-path", str(tmp_path), "--name", "S"]) == 0
    results = result_rows(tmp_path / "S")
    last = {rows[-1]["group"]: rows[-1] for rows in results.values()}
    assert sorted(last) == sorted(["elman_balanced", "lstm_balanced", "unbalanced", "augmented", "irm", "combined",
                                   "irm_groups"])
    assert all(r["dataset"] == "mnist-sample" and r["epoch"] == 1 for r in last.values())
    # train_counts are before over-sampling: the imbalanced split, and the full one for the balanced arms
    assert last["unbalanced"]["train_counts"] == last["augmented"]["train_counts"]
    assert last["lstm_balanced"]["train_counts"][0] > 5 * last["unbalanced"]["train_counts"][0]
    assert last["combined"]["remedies"] == "noise_copies,irm" and last["elman_balanced"]["remedies"] == ""
    trials, epochs = load_trials(tmp_path / "S"), load_epochs(tmp_path / "S")
    (title, md, figures), = study_report.study_sections(trials, epochs, tmp_path / "report")
    table = {line.split(" | ")[0]: line.split(" | ")[1:] for line in md.splitlines() if line.startswith("| ")}
    assert table["| class"] == ["unbalanced", "augmented", "irm", "combined", "irm_groups", "lstm_balanced |"]
    for i, g in enumerate(["unbalanced", "augmented", "irm", "combined"]):
        assert table["| 2 *"][i].strip(" |") == f"{last[g]['acc_2'] * 100:.1f}"  # one seed: the value itself
        assert table["| **minority mean**"][i].strip(" |") == f"{last[g]['minority_acc'] * 100:.1f}"
    assert figures[0].exists()


@pytest.mark.slow
def test_lstm_weighted_loss_smoke_then_the_printed_follow_up(ray_session, tmp_path):
    assert main(["lstm_weighted_loss", "--budget", "smoke", "--storage-path", str(tmp_path), "--name", "W"]) == 0
    trials = load_trials(tmp_path / "W")
    assert len(trials) == 16 and set(trials["status"].astype(str)) == {"TERMINATED"}
    (_, md, _), = study_report.study_sections(trials, load_epochs(tmp_path / "W"), tmp_path / "report")
    cmd = next(line for line in md.splitlines() if line.startswith("`python -m tuner.search")).strip("`")
    argv = shlex.split(cmd)[3:]
    assert main([*argv, "--storage-path", str(tmp_path), "--name", "C"]) == 0
    both = load_trials([tmp_path / "W", tmp_path / "C"])
    (_, md2, figures), = study_report.study_sections(both, load_epochs([tmp_path / "W", tmp_path / "C"]), tmp_path / "r2")
    assert "class_weights |" in md2 and sum("confusion" in f.name for f in figures) == 3


@pytest.mark.slow
def test_ros_vs_weights_smoke(ray_session, tmp_path):
    assert main(["ros_vs_weights", "--budget", "smoke", "--storage-path", str(tmp_path), "--name", "R"]) == 0
    trials = load_trials(tmp_path / "R")
    assert len(trials) == 20 and set(trials["status"].astype(str)) == {"TERMINATED"}
    sizes = trials.groupby("model", observed=True)["model_bytes"].unique()
    assert all(len(v) == 1 for v in sizes)  # one size per model
    (_, md, figures), = study_report.study_sections(trials, load_epochs(tmp_path / "R"), tmp_path / "report")
    assert len(figures) == 2 and "Model size" in md


@pytest.mark.slow
def test_cifar_vgg_smoke_on_a_tiny_image_folder(ray_session, tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 60), ("test", 10)):
        for c, name in enumerate(["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]):
            d = tmp_path / "data" / "cifar10" / split / name
            d.mkdir(parents=True)
            for i in range(n):
                pixels = np.clip(rng.normal(25 * c, 40, (32, 32, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(d / f"{i}.png")
    assert main(["cifar_vgg", "--budget", "smoke", "--data-dir", str(tmp_path / "data"), "--storage-path", str(tmp_path),
                 "--name", "V"]) == 0
    trials = load_trials(tmp_path / "V")
    assert len(trials) == 6 and set(trials["status"].astype(str)) == {"TERMINATED"}
    assert set(trials["dataset"].astype(str)) == {"cifar10"}
    (_, md, _), = study_report.study_sections(trials, load_epochs(tmp_path / "V"), tmp_path / "report")
    assert "| 3 cat * |" in md and "cifar_cnn_balanced" in md
