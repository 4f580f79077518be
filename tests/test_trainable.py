import math

import pytest
import torch

from tuner.data import load_dataset
from tuner.trainable import STATE_FILE, LocalReporter, train

FAST = {"dataset": "mnist-sample", "model": "lstm", "epochs": 1, "batch_size": 128}
DROP = ("epoch_time_s",)


def same(a, b):
    return {k: v for k, v in a.items() if k not in DROP} == {k: v for k, v in b.items() if k not in DROP}


def test_plain_call_reports_every_metric(sample_images):
    (m,) = train(FAST, data=sample_images)
    for key in ["acc", "val_acc", "minority_acc", "val_majority_acc", "balanced_acc", "macro_f1", "p_A_to_I",
                "val_p_I_to_A", "loss", "val_loss", "train_loss", "acc_0", "val_acc_9"]:
        assert key in m and 0 <= m[key] <= (10 if "loss" in key else 1), key
    assert len(m["confusion"]) == 10 and sum(map(sum, m["confusion"])) == 2000  # the whole test set
    assert sum(map(sum, m["val_confusion"])) == 5 * 5 + 5 * 50
    assert m["dataset"] == "mnist-sample" and m["train_counts"] == [45] * 5 + [450] * 5
    assert m["num_params"] == 82186 and m["model_bytes"] == 4 * 82186


def test_same_config_and_seed_give_bit_identical_metrics(sample_images):
    cfg = {**FAST, "epochs": 2, "ros_target": 0.5, "noise_sigma": 0.2, "rotation_deg": 10, "minority_weight": 3,
           "irm_lambda": 10, "irm_anneal_epochs": 1}
    a = train(cfg, data=sample_images)
    b = train(cfg, data=sample_images)
    assert all(same(x, y) for x, y in zip(a, b))
    c = train({**cfg, "seed": 1}, data=sample_images)
    assert not same(a[-1], c[-1])


def test_resume_from_checkpoint_continues_exactly(sample_images, tmp_path):
    cfg = {**FAST, "epochs": 3, "ros_target": 1.0, "rotation_deg": 15}
    straight = train(cfg, data=sample_images)
    first = LocalReporter(tmp_path)
    train({**cfg, "epochs": 1}, data=sample_images, reporter=first)
    assert (tmp_path / STATE_FILE).exists()
    rest = LocalReporter(tmp_path)
    train(cfg, data=sample_images, reporter=rest)
    assert [m["epoch"] for m in rest.history] == [2, 3]
    assert same(rest.history[-1], straight[-1])


def test_corrupt_checkpoint_names_the_file_and_restarts(sample_images, tmp_path, capsys):
    (tmp_path / STATE_FILE).write_bytes(b"PK\x03\x04 truncated")
    rep = LocalReporter(tmp_path)
    train(FAST, data=sample_images, reporter=rep)
    assert f"corrupt checkpoint {tmp_path / STATE_FILE}" in capsys.readouterr().out
    assert [m["epoch"] for m in rep.history] == [1]
    # in the results too: a trial's own output stays in its worker's log
    assert rep.history[0]["checkpoint_warning"].startswith(f"corrupt checkpoint {tmp_path / STATE_FILE} (")
    assert train(FAST, data=sample_images)[0]["checkpoint_warning"] == ""


def test_non_finite_loss_stops_the_trial_with_the_reason(sample_images, monkeypatch):
    from tuner import remedies

    # a loss that diverges: NaN from the first step
    monkeypatch.setitem(remedies.LOSSES, "ce", lambda cfg, counts, w: lambda logits, y: logits.sum() * float("nan"))
    hist = train({**FAST, "epochs": 3}, data=sample_images)
    assert len(hist) == 1 and not math.isfinite(hist[0]["train_loss"])
    assert hist[0]["stop_reason"].startswith("non-finite training loss at epoch 1")


def test_one_epoch_lstm_on_full_imbalanced_mnist(shared_data):
    images = load_dataset("mnist", shared_data, download=False)
    (m,) = train({"dataset": "mnist", "model": "lstm", "epochs": 1, "batch_size": 256}, data=images)
    assert m["train_counts"][:5] == [533, 607, 535, 552, 526]
    assert m["acc"] > 0.5  # one epoch on 33k images already learns the majority digits
    assert sum(map(sum, m["confusion"])) == 10_000


def test_cuda_path_when_available(sample_images):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU here")
    (m,) = train({**FAST, "device": "cuda", "ros_target": 1.0, "rotation_deg": 10}, data=sample_images)
    assert 0 <= m["acc"] <= 1


def test_steps_and_samples_seen_count_the_compute_of_each_arm(sample_images):
    from tuner.config import resolve
    from benchmarks.reference import ros_extra

    bs = FAST["batch_size"]
    plain = train({**FAST, "epochs": 2}, data=sample_images)
    n = sum(plain[0]["train_counts"])  # no remedy: every training image once per epoch
    assert [h["samples_seen"] for h in plain] == [n, 2 * n]
    assert [h["steps"] for h in plain] == [math.ceil(n / bs), 2 * math.ceil(n / bs)]
    ros_cfg = {**FAST, "epochs": 2, "ros_target": 1.0}
    ros = train(ros_cfg, data=sample_images)
    counts = ros[0]["train_counts"]
    # over-sampling draws copies on top (the DataLoader reference's arithmetic, written independently)
    per_epoch = sum(counts) + sum(ros_extra(resolve(ros_cfg), counts, c) for c in range(5))
    assert per_epoch > n and [h["samples_seen"] for h in ros] == [per_epoch, 2 * per_epoch]
    assert [h["steps"] for h in ros] == [math.ceil(per_epoch / bs), 2 * math.ceil(per_epoch / bs)]


def test_max_steps_gives_every_arm_the_same_optimizer_steps(sample_images):
    bs = FAST["batch_size"]
    plain_epoch = train({**FAST, "epochs": 1}, data=sample_images)[-1]
    steps_per_epoch = plain_epoch["steps"]
    budget = steps_per_epoch + 3  # one whole epoch, then 3 steps of the next
    for arm in ({}, {"ros_target": 1.0}):
        hist = train({**FAST, "epochs": 50, "max_steps": budget, **arm}, data=sample_images)
        assert hist[-1]["steps"] == budget and len(hist) == (2 if not arm else hist[-1]["epoch"])
        assert all(h["steps"] <= budget for h in hist)
    plain = train({**FAST, "epochs": 50, "max_steps": budget}, data=sample_images)
    n = sum(plain[0]["train_counts"])
    # the cut second epoch trained on exactly 3 batches of the shuffled epoch
    assert [h["samples_seen"] for h in plain] == [n, n + 3 * bs]
    # an arm that draws more per epoch (ROS) reaches the budget in fewer epochs, never in more steps
    ros = train({**FAST, "epochs": 50, "max_steps": budget, "ros_target": 1.0}, data=sample_images)
    assert ros[-1]["steps"] == budget and ros[-1]["samples_seen"] == budget * bs
