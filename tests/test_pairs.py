"""The digit_pairs study: pair construction, models, the auxiliary loss, the trainer and a smoke search."""
import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from torch.nn import functional as F

from tuner import pair_nets, pairs
from tuner.config import resolve
from tuner.data import Images, load_dataset
from tuner.errors import ConfigError
from tuner.models import build_model, count_parameters
from tuner.trainable import LocalReporter, train

DROP = ("epoch_time_s",)


def same(a, b):
    return {k: v for k, v in a.items() if k not in DROP} == {k: v for k, v in b.items() if k not in DROP}


@pytest.fixture(scope="module")
def pair_images():
    return load_dataset("digit_pairs-sample")


# --- pair construction ------------------------------------------------------------------------------

def test_pool2x2_is_the_mean_of_each_2x2_block():
    x = np.random.default_rng(0).integers(0, 256, (3, 1, 28, 28), dtype=np.uint8)
    got = pairs.pool2x2(x)
    assert got.shape == (3, 14, 14) and got.dtype == np.float32
    want = np.empty((3, 14, 14))
    for n in range(3):
        for i in range(14):
            for j in range(14):
                block = [int(x[n, 0, 2 * i + a, 2 * j + b]) for a in (0, 1) for b in (0, 1)]
                want[n, i, j] = sum(block) / 4 / 255
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def labelled_images(n_train=300, n_test=120, seed=0) -> Images:
    """Every pixel of an image spells out where it comes from: 10 + 20 * class, +1 on the test set."""
    rng = np.random.default_rng(seed)
    train_y, test_y = rng.integers(0, 10, n_train), rng.integers(0, 10, n_test)
    fill = lambda y, odd: np.broadcast_to((10 + 20 * y + odd).astype(np.uint8)[:, None, None, None],  # noqa: E731
                                          (len(y), 1, 28, 28)).copy()
    return Images("synthetic", fill(train_y, 0), train_y, fill(test_y, 1), test_y, (0.1307,), (0.3081,))


def decode(p: pairs.Pairs):
    """(class, from_test) of both digits of every pair, read from the pixels alone."""
    v = np.rint(p.x * 255).astype(int)
    assert (v == v[:, :, :1, :1]).all()  # each pooled digit is still one constant value
    v = v[:, :, 0, 0]
    return (v - 10) // 20, v % 2 == 1


def test_pairs_sizes_sources_and_targets():
    images = labelled_images()
    cfg = resolve({"dataset": "digit_pairs", "model": "pairs_mlp", "num_pairs": 100, "num_test_pairs": 50,
                   "val_fraction": 0.2, "seed": 3})
    split = pairs.make_pair_split(images, cfg)
    assert (len(split.train), len(split.val), len(split.test)) == (80, 20, 50)
    for part, from_test in ((split.train, False), (split.val, False), (split.test, True)):
        assert part.x.shape == (len(part), 2, 14, 14) and part.x.dtype == np.float32
        classes, is_test = decode(part)
        assert (is_test == from_test).all()  # train/val pairs only from MNIST train, test pairs only from test
        assert part.classes.tolist() == classes.tolist()
        assert part.target.tolist() == [int(a <= b) for a, b in classes.tolist()]
    # no digit image is used twice within a split
    train_sources = np.concatenate([split.train.source.ravel(), split.val.source.ravel()])
    assert len(set(train_sources.tolist())) == 200 and len(set(split.test.source.ravel().tolist())) == 100
    assert 0 < split.test.target.mean() < 1


def test_real_digits_are_the_pooled_source_images_and_rounds_differ(pair_images):
    cfg = resolve({"dataset": "digit_pairs-sample", "model": "pairs_cnn"})
    split = pairs.make_pair_split(pair_images, cfg)
    assert (len(split.train), len(split.val), len(split.test)) == (900, 100, 1000)
    for part, x, y in ((split.train, pair_images.train_x, pair_images.train_y),
                       (split.test, pair_images.test_x, pair_images.test_y)):
        src = torch.from_numpy(x[part.source.ravel()]).float() / 255
        pooled = F.avg_pool2d(src, 2).reshape(len(part), 2, 14, 14)
        np.testing.assert_allclose(part.x, pooled.numpy(), rtol=0, atol=1e-6)
        assert part.target.tolist() == [int(y[a] <= y[b]) for a, b in part.source.tolist()]
    again = pairs.make_pair_split(pair_images, cfg)
    assert np.array_equal(again.train.source, split.train.source)
    other = pairs.make_pair_split(pair_images, {**cfg, "seed": 1})
    assert not np.array_equal(other.train.source, split.train.source)
    assert not np.array_equal(other.test.source, split.test.source)


@pytest.mark.parametrize("settings, message", [
    ({"dataset": "mnist", "model": "pairs_cnn"}, "model 'pairs_cnn' needs a pairs dataset"),
    ({"dataset": "digit_pairs", "model": "pairs_cnn", "num_pairs": 4}, "num_pairs=4 with val_fraction=0.1 leaves 0"),
    ({"dataset": "digit_pairs", "model": "pairs_cnn", "pair_aux_decay": 1.5}, "pair_aux_decay=1.5 is not allowed"),
    ({"dataset": "digit_pairs", "model": "pairs_cnn", "pair_aux_alpha": 0, "pair_aux_gamma": 0}, "leave aux models no loss"),
    ({"dataset": "digit_pairs", "model": "pairs_cnn", "minority_weight": 3}, "use no imbalance remedy: unset weighted_loss"),
])
def test_bad_pair_settings_give_one_line(settings, message):
    with pytest.raises(ConfigError) as e:
        resolve(settings)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_too_many_pairs_for_the_sample_is_one_line(pair_images):
    cfg = resolve({"dataset": "digit_pairs-sample", "model": "pairs_cnn", "num_pairs": 3000})
    with pytest.raises(ConfigError, match="3000 pairs need 6000 distinct digit_pairs-sample training images, but only 5000"):
        pairs.make_pair_split(pair_images, cfg)


# --- models -----------------------------------------------------------------------------------------

def conv(c_in, c_out, k=3):
    return c_out * c_in * k * k + c_out


def dense(n_in, n_out):
    return n_in * n_out + n_out


BN8, BN16 = 2 * 8, 2 * 16  # weight and bias per channel
HEAD_PAD = dense(16 * 7 * 7, 100) + dense(100, 2)
DIGIT_NET = conv(1, 8) + BN8 + conv(8, 16) + BN16 + dense(16 * 7 * 7, 100) + dense(100, 10)
HAND_COUNTS = {
    "pairs_perceptron": dense(2 * 14 * 14, 2),  # 786
    "pairs_mlp": dense(392, 100) + dense(100, 100) + dense(100, 2),  # 49602
    # 14 -> 12 (conv) -> 6 (pool) -> 4 (conv) -> 2 (pool)
    "pairs_cnn": conv(2, 8) + conv(8, 16) + dense(16 * 2 * 2, 100) + dense(100, 2),  # 8022
    "pairs_cnn_pad": conv(2, 8) + conv(8, 16) + HEAD_PAD,  # 14 -> 14 -> 14 -> 7
    "pairs_cnn_dropout": conv(2, 8) + conv(8, 16) + HEAD_PAD,
    "pairs_cnn_bn": conv(2, 8) + BN8 + conv(8, 16) + BN16 + HEAD_PAD,
    "pairs_resnet": conv(2, 8) + BN8 + conv(8, 16) + BN16 + 6 * (conv(16, 16) + BN16) + HEAD_PAD,
    "pairs_siamese": DIGIT_NET + dense(20, 100) + dense(100, 2),  # one digit net, shared by both images
    "pairs_siamese_aux": DIGIT_NET + dense(20, 100) + dense(100, 2),
    "pairs_digits": DIGIT_NET,
}


def test_hand_counts_are_the_numbers_in_the_docs():
    assert [HAND_COUNTS[m] for m in ("pairs_perceptron", "pairs_mlp", "pairs_cnn", "pairs_resnet", "pairs_siamese")] == [
        786, 49602, 8022, 94182, 83108]


@pytest.mark.parametrize("name", sorted(HAND_COUNTS))
def test_forward_shape_and_parameter_count(name):
    torch.manual_seed(0)
    model = build_model(name, pairs.PAIR_SHAPE, 2).eval()
    assert count_parameters(model) == HAND_COUNTS[name]
    out = pair_nets.as_pair_out(model(torch.randn(5, *pairs.PAIR_SHAPE)))
    assert out.logits.shape == (5, 2) and torch.isfinite(out.logits).all()
    assert out.pred.shape == (5,) and set(out.pred.tolist()) <= {0, 1}
    has_digits = name in ("pairs_siamese_aux", "pairs_digits")
    assert (out.digits is not None) == has_digits
    if has_digits:
        assert out.digits.shape == (5, 2, 10)


@pytest.mark.parametrize("name", ["pairs_siamese_aux", "pairs_digits"])
def test_the_digit_network_is_shared_by_both_images(name):
    torch.manual_seed(0)
    model = build_model(name, pairs.PAIR_SHAPE, 2).eval()
    x = torch.randn(4, *pairs.PAIR_SHAPE)
    with torch.no_grad():
        a, b = model(x).digits, model(x.flip(1)).digits
    torch.testing.assert_close(a, b.flip(1))


def test_digits_model_predicts_by_comparing_its_predicted_digits():
    torch.manual_seed(1)
    model = build_model("pairs_digits", pairs.PAIR_SHAPE, 2).eval()
    with torch.no_grad():
        out = model(torch.randn(64, *pairs.PAIR_SHAPE))
    d = out.digits.argmax(-1).tolist()
    assert out.pred.tolist() == [int(a <= b) for a, b in d]
    # its pair logits are log P(d1 > d2), log P(d1 <= d2) of the two digit distributions
    p = out.digits.softmax(-1).double()
    le = sum(p[:, 0, i] * p[:, 1, j] for i in range(10) for j in range(10) if i <= j)
    torch.testing.assert_close(out.logits.double().exp(), torch.stack([1 - le, le], 1), rtol=0, atol=1e-5)


# --- loss --------------------------------------------------------------------------------------------

def ce(logits, label):
    return -(logits[label] - math.log(sum(math.exp(v) for v in logits)))


def test_aux_loss_is_alpha_pair_plus_beta_gamma_digits():
    pair = [[2.0, -1.0], [0.5, 0.5]]
    digits = [[[0.0] * 10, [1.0] + [0.0] * 9], [[3.0] + [0.0] * 9, [0.0] * 9 + [2.0]]]
    target, classes = [1, 0], [[4, 0], [0, 9]]
    out = pair_nets.PairOut(torch.tensor(pair), torch.tensor(digits), torch.zeros(2, dtype=torch.long))
    cfg = {"pair_aux_alpha": 1.0, "pair_aux_gamma": 5.0, "pair_aux_decay": 0.5}

    class Aux:
        loss_kind = "aux"

    w_pair, w_digit = pairs.loss_weights(Aux(), cfg, epoch=3)
    assert (w_pair, w_digit) == (1.0, 0.5 ** 2 * 5.0)  # beta_3 = decay ** 2
    l_pair = (ce(pair[0], 1) + ce(pair[1], 0)) / 2
    l_d1 = (ce(digits[0][0], 4) + ce(digits[1][0], 0)) / 2
    l_d2 = (ce(digits[0][1], 0) + ce(digits[1][1], 9)) / 2
    want = 1.0 * l_pair + 0.25 * 5.0 * (l_d1 + l_d2)
    got = pairs.pair_loss(out, torch.tensor(target), torch.tensor(classes), w_pair, w_digit)
    assert float(got) == pytest.approx(want, rel=1e-6)
    assert pairs.loss_weights(build_model("pairs_digits", pairs.PAIR_SHAPE, 2), cfg, 3) == (0.0, 1.0)
    assert pairs.loss_weights(build_model("pairs_siamese", pairs.PAIR_SHAPE, 2), cfg, 3) == (1.0, 0.0)
    assert pairs.loss_weights(build_model("pairs_siamese_aux", pairs.PAIR_SHAPE, 2), cfg, 1) == (1.0, 5.0)


# --- the trainer ---------------------------------------------------------------------------------------

FAST = {"dataset": "digit_pairs-sample", "model": "pairs_siamese_aux", "epochs": 2, "batch_size": 100,
        "group": "siamese_aux", "experiment": "t"}


def test_train_reports_the_pair_metrics_and_resumes_exactly(pair_images, tmp_path):
    straight = train(FAST, data=pair_images)
    m = straight[-1]
    for key in ("train_loss", "train_acc", "val_acc", "val_loss", "val_balanced_acc", "acc", "loss", "balanced_acc",
                "digit_acc", "val_digit_acc"):
        assert 0 <= m[key] <= (20 if "loss" in key else 1), key
    assert round(m["acc"] * 1000) == pytest.approx(m["acc"] * 1000) and round(m["val_acc"] * 100) == pytest.approx(
        m["val_acc"] * 100)  # 1000 test pairs, 100 validation pairs
    assert {k: m[k] for k in ("experiment", "dataset", "seed", "group", "num_params")} == {
        "experiment": "t", "dataset": "digit_pairs-sample", "seed": 0, "group": "siamese_aux", "num_params": 83108}
    first = LocalReporter(tmp_path)
    train({**FAST, "epochs": 1}, data=pair_images, reporter=first)
    rest = LocalReporter(tmp_path)
    train(FAST, data=pair_images, reporter=rest)
    assert [r["epoch"] for r in rest.history] == [2]
    assert same(rest.history[-1], straight[-1])
    assert same(first.history[0], straight[0])


def test_fallback_digits_are_recorded_and_any_model_trains_on_pairs():
    (m,) = train({**FAST, "dataset": "digit_pairs", "model": "cnn", "epochs": 1}, data=load_dataset("mnist-sample"))
    assert m["dataset"] == "digit_pairs-sample" and 0 <= m["acc"] <= 1 and "digit_acc" not in m


# --- the study table -------------------------------------------------------------------------------------

def test_pairs_table_mean_sd_and_ci_per_architecture():
    from analysis.pairs import pairs_display, pairs_table

    trials = pd.DataFrame({
        "experiment": ["digit_pairs"] * 5 + ["other"],
        "status": ["TERMINATED", "TERMINATED", "TERMINATED", "TERMINATED", "ERROR", "TERMINATED"],
        "trial_index": [1, 0, 2, 3, 4, 5],
        "group": ["mlp", "cnn", "mlp", "mlp", "cnn", "mlp"],
        "model": ["pairs_mlp", "pairs_cnn", "pairs_mlp", "pairs_mlp", "pairs_cnn", "pairs_mlp"],
        "num_params": [49602, 8022, 49602, 49602, 8022, 49602],
        "acc": [0.80, 0.70, 0.90, 0.85, 0.10, 0.0],
    })
    t = pairs_table(trials)
    assert t["architecture"].tolist() == ["cnn", "mlp"]  # the order the study ran them
    cnn, mlp = t.iloc[0], t.iloc[1]
    assert (cnn["rounds"], cnn["mean"]) == (1, 0.70) and math.isnan(cnn["sd"])  # the failed round is left out
    assert mlp["rounds"] == 3 and mlp["mean"] == pytest.approx(0.85) and mlp["sd"] == pytest.approx(0.05)
    half = 4.302652729911275 * 0.05 / math.sqrt(3)  # t(0.975, 2)
    assert (mlp["ci95_low"], mlp["ci95_high"]) == (pytest.approx(0.85 - half), pytest.approx(0.85 + half))
    shown = pairs_display(t)
    assert shown["test acc (%)"].tolist() == ["70.0 ± –", "85.0 ± 5.0"] and shown["95% CI"].iloc[0] == "–"


# --- the experiment ----------------------------------------------------------------------------------------

def test_local_plan_runs_every_architecture_every_round(tmp_path):
    from tuner.search import build_plan, parse_args

    plan = build_plan(parse_args(["digit_pairs", "--storage-path", str(tmp_path), "--name", "plan-only"]))
    assert plan.num_trials() == 30 and plan.searcher == "grid" and not plan.asha and plan.metric == "val_acc"
    assert [a["model"] for a in plan.arms] == [f"pairs_{a['group']}" for a in plan.arms] and len(plan.arms) == 10
    assert plan.fixed["dataset"] == "digit_pairs" and plan.fixed["dataset_fallback"]


def test_smoke_search_two_architectures_two_rounds(ray_session, tmp_path, capsys, monkeypatch):
    from analysis import load_trials
    from analysis.pairs import pairs_table
    from search_spaces import EXPERIMENTS
    from tuner.search import main

    exp = EXPERIMENTS["digit_pairs"]
    arms = tuple(a for a in exp.arms if a["group"] in ("perceptron", "siamese_aux"))
    monkeypatch.setitem(EXPERIMENTS, "digit_pairs", exp.with_(arms=arms))
    assert main(["digit_pairs", "--budget", "smoke", "--seeds", "0,1", "--storage-path", str(tmp_path),
                 "--name", "P"]) == 0
    assert "Best configs by val_acc" in capsys.readouterr().out
    rows = {}
    for f in (tmp_path / "P").glob("trial_*/result.json"):
        (r,) = [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
        rows[(r["group"], r["seed"])] = r
    assert sorted(rows) == [("perceptron", 0), ("perceptron", 1), ("siamese_aux", 0), ("siamese_aux", 1)]
    for (group, _), r in rows.items():
        assert r["experiment"] == "digit_pairs" and r["dataset"] == "digit_pairs-sample" and r["epoch"] == 1
        assert r["config"]["model"] == f"pairs_{group}" and ("digit_acc" in r) == (group == "siamese_aux")
    table = pairs_table(load_trials(tmp_path / "P")).set_index("architecture")
    for group in ("perceptron", "siamese_aux"):
        accs = [rows[(group, s)]["acc"] for s in (0, 1)]
        assert table.loc[group, "rounds"] == 2 and table.loc[group, "mean"] == pytest.approx(np.mean(accs))
        assert table.loc[group, "sd"] == pytest.approx(np.std(accs, ddof=1))


def test_pair_datasets_load_by_name_without_importing_pairs_first():
    # a fresh interpreter: only tuner.data imported, as a user's own script would
    code = ("from tuner.data import load_dataset; from tuner.errors import ConfigError\n"
            "print(load_dataset('digit_pairs-sample').name)\n"
            "try: load_dataset('digit_pears')\n"
            "except ConfigError as e: print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    name, error = out.stdout.strip().splitlines()
    assert name == "digit_pairs-sample"
    assert error.startswith("unknown dataset 'digit_pears': choose one of ") and "digit_pairs, " in error


def test_spare_validation_pairs_leave_every_pair_to_train(pair_images):
    held = pairs.make_pair_split(pair_images, resolve({"dataset": "digit_pairs-sample", "model": "pairs_mlp", "num_pairs": 200}))
    spare = pairs.make_pair_split(pair_images, resolve({"dataset": "digit_pairs-sample", "model": "pairs_mlp", "num_pairs": 200,
                                                  "pair_val_pairs": "spare"}))
    assert (len(held.train), len(held.val)) == (180, 20) and (len(spare.train), len(spare.val)) == (200, 20)
    # validation images are MNIST training images no training pair uses
    assert not set(spare.val.source.ravel()) & set(spare.train.source.ravel())
    assert len(set(spare.train.source.ravel())) == 400


def test_paper_budget_trains_the_first_four_models_with_sgd_too(tmp_path):
    from tuner.search import build_plan, parse_args

    paper = build_plan(parse_args(["digit_pairs", "--budget", "paper", "--storage-path", str(tmp_path)]))
    sgd = {a["group"]: a for a in paper.arms if a.get("optimizer") == "sgd"}
    assert sorted(sgd) == ["cnn_pad_sgd", "cnn_sgd", "mlp_sgd", "perceptron_sgd"]
    assert paper.fixed["pair_val_pairs"] == "spare" and len(paper.arms) == 14
    local = build_plan(parse_args(["digit_pairs", "--budget", "local", "--storage-path", str(tmp_path)]))
    assert len(local.arms) == 10 and not any(a.get("optimizer") for a in local.arms)
