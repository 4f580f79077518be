"""Our batched data path (`tuner.remedies` over `DeviceData`) and the per-sample DataLoader reference
of the benchmark (`benchmarks.reference`) draw from the same distributions: same rotation angles and
sign convention, same noise, same over-sampled class counts, same augmentation scope."""
import dataclasses
import math

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from torchvision.transforms import InterpolationMode

from benchmarks import reference
from tuner import remedies
from tuner.remedies import augmentation
from tuner.config import resolve
from tuner.data import make_split
from tuner.device_data import DeviceData

DEG = 20.0


def ours_plan(images, **settings):
    cfg = resolve({"dataset": "mnist-sample", **settings})
    split = make_split(images, cfg)
    dd = DeviceData(images, split, torch.device("cpu"))
    return cfg, split, dd, remedies.epoch_plan(cfg, dd.by_class, torch.Generator().manual_seed(0))


def reference_keys(images, cfg, split):
    sampler = reference.OverSampler(cfg, split.train_idx, images.train_y, images.num_classes, seed=0)
    keys = sampler.keys()
    assert len(keys) == len(sampler)
    return keys


def test_rotate_matches_torchvision_for_fixed_angles_and_turns_counter_clockwise(sample_images):
    x = torch.from_numpy(sample_images.train_x[:8]).float() / 255
    for angle in (-30.0, -7.5, 5.0, 15.0, 45.0, 90.0):
        ours = remedies.rotate(x, torch.full((8,), angle))
        theirs = torch.stack([TF.rotate(img, angle, interpolation=InterpolationMode.BILINEAR) for img in x])
        assert (ours - theirs).abs().max() < 1e-4, angle
        # the opposite sign is far off: same convention (positive = counter-clockwise)
        wrong = torch.stack([TF.rotate(img, -angle, interpolation=InterpolationMode.BILINEAR) for img in x])
        assert (ours - wrong).abs().max() > 0.3, angle
    bar = torch.zeros(1, 1, 28, 28)
    bar[0, 0, 2:6, 10:20] = 1.0  # near the top: counter-clockwise by 90 takes it to the left edge
    assert remedies.rotate(bar, torch.tensor([90.0]))[0, 0, :, :8].sum() > 30


def test_rotation_angles_are_uniform_in_plus_minus_deg_on_both_paths(sample_images, monkeypatch):
    ours_angles, ref_angles = [], []  # the angles each path hands to its rotation (not rotating: fast)

    def record_ours(x, degrees):
        ours_angles.extend(degrees.tolist())
        return x

    def record_ref(img, angle, *a, **k):
        ref_angles.append(angle)
        return img

    monkeypatch.setattr(augmentation, "rotate", record_ours)  # where the batch transform finds it
    monkeypatch.setattr(TF, "rotate", record_ref)  # what transforms.RandomRotation calls
    cfg = resolve({"dataset": "mnist-sample", "rotation_deg": DEG, "augment_scope": "all"})
    x = torch.rand(2000, 1, 28, 28)
    remedies.augment(x, torch.zeros(2000), torch.ones(2000, dtype=torch.bool), cfg, torch.Generator().manual_seed(0))
    data = reference.ImbalancedDataset(sample_images, cfg)
    for i in range(2000):
        data[(i % len(sample_images.train_x), False, None)]
    for angles in (ours_angles, ref_angles):
        a = np.asarray(angles)
        assert len(a) == 2000 and a.min() >= -DEG and a.max() <= DEG
        assert abs(a.mean()) < 1.0 and a.std() == pytest.approx(DEG / math.sqrt(3), rel=0.06)  # uniform


def test_noise_std_on_a_zero_image_is_sigma_on_both_paths(sample_images):
    sigma = 0.3
    cfg = resolve({"dataset": "mnist-sample", "noise_sigma": sigma, "augment_scope": "all"})
    ours = remedies.augment(torch.zeros(256, 1, 28, 28), torch.full((256,), sigma), torch.zeros(256, dtype=torch.bool),
                            cfg, torch.Generator().manual_seed(0))
    zeros = dataclasses.replace(sample_images, train_x=np.zeros_like(sample_images.train_x))
    data = reference.ImbalancedDataset(zeros, cfg)
    mean, std = sample_images.mean[0], sample_images.std[0]
    ref = torch.stack([data[(i, False, None)][0] for i in range(256)]) * std + mean  # undo Normalize
    for x in (ours, ref):
        assert x.std().item() == pytest.approx(sigma, rel=0.02) and abs(x.mean().item()) < 0.01
    # noise copies: each carries its own variance, on both paths
    cfg = resolve({"dataset": "mnist-sample", "noise_copies": [0.25]})
    _, split, _, plan = ours_plan(zeros, noise_copies=[0.25])
    copies = [key for key in reference_keys(zeros, cfg, split) if key[2] is not None]
    assert {key[2] for key in copies} == {0.5} and set(plan.sigma.unique().tolist()) == {0.0, 0.5}
    data = reference.ImbalancedDataset(zeros, cfg)
    ref = torch.stack([data[key][0] for key in copies[:256]]) * std + mean
    assert ref.std().item() == pytest.approx(0.5, rel=0.02)


@pytest.mark.parametrize("settings", [
    {"ros_target": 1.0}, {"ros_target": 0.5}, {"ros_target": 0.2}, {"ros_target": 0.05},
    {"noise_copies": [0.1, 0.2, 0.3]}, {"ros_target": 0.6, "noise_copies": [0.5]}, {},
])
def test_class_counts_after_over_sampling_are_equal(sample_images, settings):
    cfg, split, dd, plan = ours_plan(sample_images, **settings)
    keys = reference_keys(sample_images, cfg, split)
    ref_labels = sample_images.train_y[[i for i, _, _ in keys]]
    assert np.bincount(ref_labels, minlength=10).tolist() == torch.bincount(plan.y, minlength=10).tolist()
    # ROS arithmetic: minority classes reach round(ros_target x mean majority count), never fewer than they had
    counts = split.counts.tolist()
    for c in cfg["minority_classes"]:
        target = max(counts[c], int(round(cfg["ros_target"] * np.mean(counts[5:])))) if cfg["ros_target"] else counts[c]
        assert (ref_labels == c).sum() == target + len(cfg["noise_copies"] or []) * counts[c]
    # every training image is there at least once, on both paths
    assert set(split.train_idx.tolist()) == {i for i, _, _ in keys} == set(plan.idx.tolist())


@pytest.mark.parametrize("scope", ["copies", "minority", "all"])
def test_augment_scope_rules_are_the_same(sample_images, scope):
    cfg, split, dd, plan = ours_plan(sample_images, ros_target=1.0, noise_sigma=0.3, rotation_deg=10.0,
                                     augment_scope=scope)
    keys = reference_keys(sample_images, cfg, split)
    data = reference.ImbalancedDataset(sample_images, cfg)
    ref_scoped = np.array([data.in_scope(int(sample_images.train_y[i]), copy) for i, copy, _ in keys])
    ref_labels = sample_images.train_y[[i for i, _, _ in keys]]
    per_class = lambda labels, mask: np.bincount(np.asarray(labels)[np.asarray(mask)], minlength=10).tolist()
    assert per_class(ref_labels, ref_scoped) == per_class(plan.y.numpy(), plan.rotate.numpy())
    assert torch.equal(plan.rotate, plan.sigma > 0)
    # and the reference transforms exactly the samples in scope
    plain = reference.ImbalancedDataset(sample_images, resolve({"dataset": "mnist-sample"}))
    for key, scoped in list(zip(keys, ref_scoped))[:100]:
        same = torch.equal(data[key][0], plain[key][0])
        assert same != scoped, (key, scoped)


def test_reference_trial_and_evaluation_run(sample_images):
    torch.manual_seed(0)
    trial = reference.ReferenceTrial({"dataset": "mnist-sample", "model": "lstm", "batch_size": 64, "ros_target": 1.0,
                                      "rotation_deg": 15.0, "noise_sigma": 0.2, "augment_scope": "copies"},
                                     sample_images)
    samples, seconds = trial.run(3)
    assert samples == 3 * 64 and seconds > 0 and math.isfinite(trial.total_loss)
    # the usual test loop and our evaluate() agree on the same model
    from tuner.trainable import evaluate

    split = make_split(sample_images, trial.cfg)
    dd = DeviceData(sample_images, split, torch.device("cpu"))
    cm, _ = evaluate(trial.model, dd, dd.test_x[:300], dd.test_y[:300], None, 4096, trial.loss_fn)
    n, _, cm_ref = reference.reference_evaluate(trial.model, sample_images, n=300)
    assert n == 300 and torch.equal(cm, cm_ref)


def test_benchmark_cuts_our_epochs_to_n_batches(sample_images):
    from benchmarks.throughput import OursTrial

    ours = OursTrial({"dataset": "mnist-sample", "model": "lstm", "batch_size": 64, "ros_target": 1.0}, sample_images)
    samples, seconds = ours.run(2)
    assert samples == 128 and seconds > 0
