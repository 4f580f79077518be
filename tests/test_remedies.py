import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tuner import remedies
from tuner.config import resolve
from tuner.errors import ConfigError

COUNTS = [45] * 5 + [450] * 5  # mnist-sample at 10% minority, after the validation split


def by_class(counts=COUNTS):
    start, out = 0, []
    for n in counts:
        out.append(torch.arange(start, start + n))
        start += n
    return out


def labels_of(plan, counts=COUNTS):
    return torch.bucketize(plan.idx, torch.tensor(np.cumsum(counts)), right=True)


def plan(**settings):
    return remedies.epoch_plan(resolve(settings), by_class(), torch.Generator().manual_seed(0))


def test_no_remedy_is_one_shuffled_pass():
    p = plan()
    assert sorted(p.idx.tolist()) == list(range(sum(COUNTS)))
    assert torch.equal(p.y, labels_of(p)) and p.fields.keys() == {"is_copy", "copy_sigma"}  # no noise, no rotation


@pytest.mark.parametrize("ros_target, expected_minority", [(1.0, 450), (0.2, 90), (0.6, 270), (0.05, 45)])
def test_ros_reaches_the_target_ratio(ros_target, expected_minority):
    p = plan(ros_target=ros_target)
    counts = torch.bincount(labels_of(p), minlength=10).tolist()
    # target = round(ros_target * mean majority count); never fewer than the originals
    assert counts == [expected_minority] * 5 + [450] * 5
    # every original image is still there exactly once
    assert set(range(sum(COUNTS))) <= set(p.idx.tolist())


def test_ros_is_redrawn_each_epoch():
    cfg, gen = resolve({"ros_target": 1.0}), torch.Generator().manual_seed(0)
    a = remedies.epoch_plan(cfg, by_class(), gen).idx
    b = remedies.epoch_plan(cfg, by_class(), gen).idx
    assert not torch.equal(torch.sort(a).values, torch.sort(b).values)


def test_noise_copies_recipe_of_the_rnn_study():
    """Minority restored to balance by 9 copies with noise variances 0.1 .. 0.9."""
    variances = [round(0.1 * k, 1) for k in range(1, 10)]
    p = plan(noise_copies=variances)
    y = labels_of(p)
    assert torch.bincount(y, minlength=10).tolist() == [450] * 10
    minority = y < 5
    sigmas = sorted(set(round(s, 6) for s in p.sigma[minority].tolist()))
    assert sigmas == [0.0] + [round(math.sqrt(v), 6) for v in variances]  # originals stay clean
    # each variance is used once per minority original
    assert ((p.sigma[minority] - math.sqrt(0.5)).abs() < 1e-6).sum() == 5 * 45
    assert (p.sigma[~minority] == 0).all()


@pytest.mark.parametrize("scope", ["copies", "minority", "all"])
def test_augment_scope(scope):
    p = plan(ros_target=1.0, noise_sigma=0.3, rotation_deg=10, augment_scope=scope)
    y = labels_of(p)
    n = len(p.idx)
    is_copy = torch.zeros(n, dtype=torch.bool)
    is_copy[torch.argsort(p.idx, stable=True)[sum(COUNTS):]] = True  # later duplicates are copies
    expected = {"copies": None, "minority": y < 5, "all": torch.ones(n, dtype=torch.bool)}[scope]
    if scope == "copies":
        assert p.rotate.sum() == 5 * (450 - 45) and not p.rotate[y >= 5].any()
    else:
        assert torch.equal(p.rotate, expected)
    assert torch.equal(p.sigma > 0, p.rotate)


def test_noise_has_the_requested_std_and_rotation_keeps_pixels_in_range():
    cfg = resolve({"noise_sigma": 0.3, "rotation_deg": 30, "augment_scope": "all"})
    x = torch.zeros(512, 1, 28, 28)
    out = remedies.augment(x, torch.full((512,), 0.3), torch.zeros(512, dtype=torch.bool), cfg, torch.Generator().manual_seed(0))
    assert out.std().item() == pytest.approx(0.3, rel=0.02) and out.mean().abs() < 0.01


def test_rotation_by_90_degrees_matches_rot90():
    x = torch.zeros(1, 1, 28, 28)
    x[0, 0, 2:6, 10:20] = 1.0  # a bar near the top
    out = remedies.rotate(x, torch.tensor([90.0]))
    # counter-clockwise, like torchvision's rotate: the bar moves to the left edge
    assert torch.allclose(out, torch.rot90(x, 1, dims=(2, 3)), atol=1e-4)


def test_class_weight_vector():
    w = remedies.class_weight_vector(resolve({"minority_weight": 4}))
    assert w.tolist() == [4.0] * 5 + [1.0] * 5
    assert remedies.class_weight_vector(resolve({})) is None
    full = list(range(1, 11))
    assert remedies.class_weight_vector(resolve({"class_weights": full, "minority_weight": 3})).tolist() == full
    # weighted cross-entropy = sum w_y * nll / sum w_y
    logits, y = torch.randn(6, 10), torch.tensor([0, 1, 5, 6, 7, 2])
    loss = remedies.make_loss(resolve({"minority_weight": 4}), COUNTS, "cpu")(logits, y)
    nll = -F.log_softmax(logits, 1)[torch.arange(6), y]
    wy = torch.tensor([4.0, 4, 1, 1, 1, 4])
    assert loss.item() == pytest.approx(((wy * nll).sum() / wy.sum()).item(), rel=1e-5)


Z = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [1.0, -1.0, 0.0], [-0.5, 2.5, 1.0], [0.3, 0.3, -2.0]])
Y = np.array([0, 2, 1, 1, 0])


def _hand_irm(z, y):
    """By hand, for cross-entropy averaged over n samples: sample i's loss gradient with respect to
    the scale w at w = 1 is g_i = sum_k softmax(z_i)_k z_ik - z_iy, its share of the batch gradient
    a_i = g_i / n, and the penalty is sum over ordered pairs i != j of a_i a_j, times n / (n - 1).
    Returns the penalty and its gradient with respect to z (softmax derivatives written out)."""
    n = len(y)
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    g = (p * z).sum(1) - z[np.arange(n), y]
    a = g / n
    penalty = sum(a[i] * a[j] for i in range(n) for j in range(n) if i != j) * n / (n - 1)
    # dg_i/dz_im = p_im + p_im (z_im - sum_k p_ik z_ik) - [m = y_i]; dP/da_i = 2 (sum a - a_i) n / (n - 1)
    dg = p + p * (z - (p * z).sum(1, keepdims=True)) - np.eye(z.shape[1])[y]
    dP_da = 2 * (a.sum() - a) * n / (n - 1)
    return penalty, (dP_da / n)[:, None] * dg


def test_irm_penalty_and_its_gradient_against_a_hand_computation():
    expected, expected_grad = _hand_irm(Z, Y)
    logits = torch.tensor(Z, requires_grad=True)
    got = remedies.irm_penalty(logits, torch.tensor(Y), F.cross_entropy)
    assert got.item() == pytest.approx(expected, rel=1e-9)
    got.backward()  # a training penalty: differentiable with respect to the logits
    np.testing.assert_allclose(logits.grad.numpy(), expected_grad, rtol=1e-7, atol=1e-12)
    # the plain square of the batch gradient (two-halves or whole-batch products) is another number
    p = np.exp(Z) / np.exp(Z).sum(1, keepdims=True)
    batch_gradient = ((p * Z).sum(1) - Z[np.arange(len(Y)), Y]).mean()
    assert batch_gradient**2 != pytest.approx(expected, rel=1e-3)


def test_irm_penalty_is_unbiased_for_the_squared_expected_gradient():
    # batches of 3 drawn independently from a 'population' of 5 samples: averaged over every
    # possible batch (all 5^3 ordered draws, equally likely), the estimator is E[g]^2 exactly
    from itertools import product

    z, y = torch.tensor(Z), torch.tensor(Y)
    p = torch.softmax(z, 1)
    g = (p * z).sum(1) - z[torch.arange(5), y]
    batches = list(product(range(5), repeat=3))
    mean_penalty = np.mean([remedies.irm_penalty(z[list(b)], y[list(b)], F.cross_entropy).item() for b in batches])
    assert mean_penalty == pytest.approx(g.mean().item() ** 2, rel=1e-9)
    squared_batch_gradient = np.mean([g[list(b)].mean().item() ** 2 for b in batches])  # E[G^2] = E[g]^2 + Var/3
    assert squared_batch_gradient == pytest.approx(g.mean().item() ** 2 + g.var(unbiased=False).item() / 3, rel=1e-9)


def test_irm_group_environments_by_hand():
    cfg = resolve({"irm_lambda": 100, "irm_env": "groups"})
    is_minority = torch.tensor([True, False, True])  # classes 0 and 2 form one environment, 1 the other
    got = remedies.irm_environments_penalty(cfg, torch.tensor(Z), torch.tensor(Y), F.cross_entropy, is_minority)
    m = np.isin(Y, [0, 2])
    expected = (_hand_irm(Z[m], Y[m])[0] + _hand_irm(Z[~m], Y[~m])[0]) / 2
    assert got.item() == pytest.approx(expected, rel=1e-9)
    batch = remedies.irm_environments_penalty(resolve({"irm_lambda": 1}), torch.tensor(Z), torch.tensor(Y),
                                              F.cross_entropy, is_minority)
    assert batch.item() == pytest.approx(_hand_irm(Z, Y)[0], rel=1e-9)


def test_irm_group_environments_and_schedule():
    cfg = resolve({"irm_lambda": 100, "irm_env": "groups", "irm_anneal_epochs": 2})
    z, y = torch.randn(8, 10), torch.tensor([0, 1, 2, 3, 5, 6, 7, 8])
    is_minority = torch.tensor([True] * 5 + [False] * 5)
    got = remedies.irm_environments_penalty(cfg, z, y, F.cross_entropy, is_minority)
    m = y < 5
    expected = (remedies.irm_penalty(z[m], y[m], F.cross_entropy) + remedies.irm_penalty(z[~m], y[~m], F.cross_entropy)) / 2
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)
    assert [remedies.irm_weight(cfg, e) for e in (1, 2, 3, 4)] == [1.0, 1.0, 100.0, 100.0]


def test_registry_lists_every_remedy_setting_once():
    names = [k for r in remedies.REMEDIES.values() for k in r.settings]
    assert len(names) == len(set(names))
    assert remedies.active(resolve({"minority_weight": 3, "ros_target": 0.5, "irm_lambda": 1})) == ["weighted_loss", "ros", "irm"]


def test_ros_rho_max_min_counts_against_the_largest_class():
    # minority 45 each; majority 400, 450, 500, 450, 450: mean 450, largest 500
    counts = [45] * 5 + [400, 450, 500, 450, 450]
    gen = torch.Generator().manual_seed(0)
    for rho, reference in (("mean_majority", 450), ("max_min", 500)):
        p = remedies.epoch_plan(resolve({"ros_target": 0.6, "ros_rho": rho}), by_class(counts), gen)
        per_class = torch.bincount(labels_of(p, counts), minlength=10).tolist()
        assert per_class[:5] == [round(0.6 * reference)] * 5 and per_class[5:] == counts[5:]
    with pytest.raises(ConfigError, match="ros_rho='median' is not allowed: expected one of mean_majority, max_min"):
        resolve({"ros_rho": "median"})
