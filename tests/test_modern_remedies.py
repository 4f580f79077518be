"""The modern remedies (tuner.losses, class-aware sampling) against hand computations on tiny examples."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tuner import losses, remedies
from tuner.config import resolve
from tuner.errors import ConfigError
from tuner.trainable import STATE_FILE, LocalReporter, train

LOGITS = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [1.0, -1.0, 0.0], [-0.5, 2.5, 1.0]])
Y = np.array([0, 2, 1, 1])
COUNTS3 = [16, 81, 1]  # n^(-1/4) = 1/2, 1/3, 1


def softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def nll(z, y):
    return -np.log(softmax(z)[np.arange(len(y)), y])


def weighted_mean(terms, w, y):
    return (w[y] * terms).sum() / w[y].sum()


def loss_of(settings, counts=COUNTS3, epoch=1, logits=LOGITS, y=Y):
    fn = remedies.make_loss(resolve(settings), counts, "cpu")
    return losses.for_epoch(fn, epoch)(torch.tensor(logits, dtype=torch.float32), torch.tensor(y)).item()


def cb_by_hand(counts, beta):
    """Effective numbers as the geometric series 1 + beta + ... + beta^(n-1); weights ~ 1/E, sum C."""
    inv = np.array([1 / sum(beta**k for k in range(n)) for n in counts])
    return inv * len(counts) / inv.sum()


def test_class_balanced_weights_and_loss():
    w = cb_by_hand([2, 8], 0.5)  # E = 1.5 and 1.9921875
    assert w == pytest.approx([1.1410, 0.8590], abs=1e-4)
    assert losses.class_balanced_weights([2, 8], 0.5).tolist() == pytest.approx(w.tolist(), rel=1e-6)
    expected = weighted_mean(nll(LOGITS, Y), cb_by_hand(COUNTS3, 0.9), Y)
    assert loss_of({"cb_beta": 0.9}) == pytest.approx(expected, rel=1e-5)
    # loss_fn=cb is cross-entropy with class-balanced weights, beta 0.9999 unless cb_beta is set
    assert loss_of({"loss_fn": "cb"}) == pytest.approx(weighted_mean(nll(LOGITS, Y), cb_by_hand(COUNTS3, 0.9999), Y), rel=1e-5)
    assert loss_of({"loss_fn": "cb", "cb_beta": 0.9}) == pytest.approx(expected, rel=1e-5)
    # beta -> 0 gives equal weights: plain cross-entropy
    assert loss_of({"cb_beta": 0.0}) == pytest.approx(nll(LOGITS, Y).mean(), rel=1e-6)


@pytest.mark.parametrize("gamma", [0.0, 1.0, 2.5])
def test_focal_loss_with_and_without_class_weights(gamma):
    p = softmax(LOGITS)[np.arange(4), Y]
    terms = -((1 - p) ** gamma) * np.log(p)
    assert loss_of({"loss_fn": "focal", "focal_gamma": gamma}) == pytest.approx(terms.mean(), rel=1e-5)
    # composes with hand-set weights (classes 0 and 1 minority, weight 4) and class-balanced ones
    hand = np.array([4.0, 4.0, 1.0])
    got = loss_of({"loss_fn": "focal", "focal_gamma": gamma, "minority_classes": [0, 1], "minority_weight": 4})
    assert got == pytest.approx(weighted_mean(terms, hand, Y), rel=1e-5)
    got = loss_of({"loss_fn": "focal", "focal_gamma": gamma, "cb_beta": 0.99})
    assert got == pytest.approx(weighted_mean(terms, cb_by_hand(COUNTS3, 0.99), Y), rel=1e-5)


def test_focal_with_gamma_0_is_cross_entropy():
    z, y = torch.randn(32, 10), torch.randint(0, 10, (32,))
    assert losses.focal_terms(0.0)(z, y).mean().item() == pytest.approx(F.cross_entropy(z, y).item(), rel=1e-6)


def test_ldam_margins_and_loss():
    # m_j = C / n_j^(1/4) = C * (1/2, 1/3, 1), the largest (rarest class) scaled to ldam_max_margin
    assert losses.ldam_margins(COUNTS3, 0.6).tolist() == pytest.approx([0.3, 0.2, 0.6], rel=1e-6)
    margins, s = np.array([0.3, 0.2, 0.6]), 4.0
    shifted = LOGITS.copy()
    shifted[np.arange(4), Y] -= margins[Y]
    expected = nll(s * shifted, Y).mean()
    assert loss_of({"loss_fn": "ldam", "ldam_max_margin": 0.6, "ldam_s": s}) == pytest.approx(expected, rel=1e-5)


def test_drw_defers_class_balanced_weights_to_drw_epoch():
    cfg = {"loss_fn": "ldam", "ldam_s": 1.0, "drw_epoch": 3}
    plain = loss_of({"loss_fn": "ldam", "ldam_s": 1.0})
    shifted = LOGITS.copy()
    shifted[np.arange(4), Y] -= losses.ldam_margins(COUNTS3, 0.5).numpy()[Y]
    deferred = weighted_mean(nll(shifted, Y), cb_by_hand(COUNTS3, 0.9999), Y)
    assert [loss_of(cfg, epoch=e) for e in (1, 2)] == pytest.approx([plain, plain], rel=1e-6)
    assert [loss_of(cfg, epoch=e) for e in (3, 4)] == pytest.approx([deferred, deferred], rel=1e-5)
    # cb_beta, when set, is the deferred weights' beta; DRW works with any re-weightable loss
    assert loss_of({"cb_beta": 0.9, "drw_epoch": 2}, epoch=2) == pytest.approx(
        weighted_mean(nll(LOGITS, Y), cb_by_hand(COUNTS3, 0.9), Y), rel=1e-5)
    assert deferred != pytest.approx(plain)


def test_logit_adjusted_and_balanced_softmax():
    prior = np.array(COUNTS3) / sum(COUNTS3)
    for tau in (0.0, 0.5, 1.0, 2.0):
        expected = nll(LOGITS + tau * np.log(prior), Y).mean()
        assert loss_of({"loss_fn": "logit_adjusted", "la_tau": tau}) == pytest.approx(expected, rel=1e-5)
    expected = nll(LOGITS + np.log(COUNTS3), Y).mean()
    assert loss_of({"loss_fn": "balanced_softmax"}) == pytest.approx(expected, rel=1e-5)
    # the same loss as logit adjustment with tau = 1: log N shifts every logit alike
    assert loss_of({"loss_fn": "logit_adjusted", "la_tau": 1.0}) == pytest.approx(expected, rel=1e-5)


def test_mixed_loss_is_the_weighted_mix_of_both_labels():
    y_b, lam = np.array([1, 0, 2, 1]), np.array([0.25, 1.0, 0.0, 0.6])
    w = np.array([3.0, 1.0, 2.0])
    la, lb = nll(LOGITS, Y), nll(LOGITS, y_b)
    expected = (lam * w[Y] * la + (1 - lam) * w[y_b] * lb).sum() / (lam * w[Y] + (1 - lam) * w[y_b]).sum()
    loss = remedies.make_loss(resolve({"class_weights": [3.0, 1.0, 2.0] + [1.0] * 7}), COUNTS3, "cpu")
    z = torch.tensor(LOGITS, dtype=torch.float32)
    got = loss.mixed(z, torch.tensor(Y), torch.tensor(y_b), torch.tensor(lam, dtype=torch.float32))
    assert got.item() == pytest.approx(expected, rel=1e-5)
    # lam = 1 everywhere is the plain loss on y
    ones = torch.ones(4)
    assert loss.mixed(z, torch.tensor(Y), torch.tensor(y_b), ones).item() == pytest.approx(loss(z, torch.tensor(Y)).item())


def test_remix_label_rule():
    lam = torch.tensor([0.3, 0.7, 0.3, 0.7, 0.3, 0.45])
    n_a = torch.tensor([500.0, 500, 50, 50, 100, 140])
    n_b = torch.tensor([50.0, 50, 500, 500, 100, 50])
    got = losses.remix_labels(lam, n_a, n_b, kappa=3.0, tau=0.5)
    # a majority image (10x) under tau -> label all minority (0); the same pair the other way -> 1;
    # equal counts, or a ratio under kappa (2.8), -> mixup's lam
    assert got.tolist() == pytest.approx([0.0, 0.7, 0.3, 1.0, 0.3, 0.45])


def test_remix_mixes_images_and_labels_consistently():
    cfg = resolve({"remix_alpha": 1.0})
    counts = torch.tensor([500] * 5 + [50] * 5)
    gen = torch.Generator().manual_seed(0)
    mix = losses.Remix(cfg, counts, gen)
    y = torch.arange(10).repeat(20)
    x = y.float().view(-1, 1, 1, 1).expand(-1, 1, 2, 2) / 10  # each image constant = its label / 10
    xm, y_b, lam_y = mix(x, y)
    assert sorted(y_b.tolist()) == sorted(y.tolist())  # a permutation of the batch
    # where no Remix rule fires, the label weight is the pixel weight: x = lam y/10 + (1 - lam) y_b/10
    plain = (counts[y] == counts[y_b]) & (y != y_b)
    lam = (xm[:, 0, 0, 0] - y_b / 10) / ((y - y_b) / 10)
    assert torch.allclose(lam[plain], lam_y[plain], atol=1e-5)
    # majority (500) with minority (50): when the minority image dominates the pixels, all of the label is its
    lam_all = torch.where(y != y_b, (xm[:, 0, 0, 0] - y_b / 10) / ((y - y_b) / 10), lam_y)
    major_minor = (counts[y] == 500) & (counts[y_b] == 50) & (lam_all < 0.5)
    assert major_minor.any() and (lam_y[major_minor] == 0).all()
    assert 0.35 < lam_all[y != y_b].mean() < 0.65  # Beta(1, 1): mean 1/2


COUNTS = [45] * 5 + [450] * 5


def by_class(counts=COUNTS):
    start, out = 0, []
    for n in counts:
        out.append(torch.arange(start, start + n))
        start += n
    return out


def test_class_sampling_probabilities():
    p = remedies.class_sampling_probs(COUNTS, 0.5).tolist()
    minority = 1 / (5 + 5 * math.sqrt(10))  # sqrt(45) / (5 sqrt(45) + 5 sqrt(450))
    assert p == pytest.approx([minority] * 5 + [math.sqrt(10) * minority] * 5, rel=1e-9)
    assert remedies.class_sampling_probs(COUNTS, 0.0).tolist() == pytest.approx([0.1] * 10)
    assert remedies.class_sampling_probs(COUNTS, 1.0).tolist() == pytest.approx([45 / 2475] * 5 + [450 / 2475] * 5)


@pytest.mark.parametrize("q", [0.0, 0.5, 1.0])
def test_class_aware_sampling_plan(q):
    cfg = resolve({"sampling_q": q, "rotation_deg": 10, "noise_sigma": 0.2})
    plan = remedies.epoch_plan(cfg, by_class(), torch.Generator().manual_seed(0))
    n = sum(COUNTS)
    assert len(plan.idx) == n  # the same epoch size as a natural pass
    label_of = torch.bucketize(plan.idx, torch.tensor(np.cumsum(COUNTS)), right=True)
    assert torch.equal(label_of, plan.y)
    freq = torch.bincount(plan.y, minlength=10).double() / n
    p = remedies.class_sampling_probs(COUNTS, q)
    assert (freq - p).abs().max() < 4 * math.sqrt(0.25 / n)  # within 4 standard errors
    # augmentation follows augment_scope (default: minority)
    assert torch.equal(plan.rotate, plan.y < 5) and torch.equal(plan.sigma > 0, plan.y < 5)
    # draws repeat minority images when their class is over-sampled
    if q < 1:
        assert len(set(plan.idx[plan.y < 5].tolist())) < int((plan.y < 5).sum())


@pytest.mark.parametrize("settings, message", [
    ({"sampling_q": 0.5, "ros_target": 1.0}, "sampling_q=0.5 with ros_target=1: both choose the epoch's sample"),
    ({"sampling_q": 0.5, "noise_copies": [0.1]}, "sampling_q=0.5 with noise_copies"),
    ({"sampling_q": 0.0, "augment_scope": "copies", "rotation_deg": 10}, "augment_scope='copies' with sampling_q=0"),
    ({"loss_fn": "logit_adjusted", "minority_weight": 3}, "loss_fn=logit_adjusted with minority_weight=3"),
    ({"loss_fn": "balanced_softmax", "cb_beta": 0.99}, "loss_fn=balanced_softmax with cb_beta=0.99"),
    ({"loss_fn": "balanced_softmax", "drw_epoch": 2}, "loss_fn=balanced_softmax with drw_epoch=2"),
    ({"cb_beta": 0.99, "minority_weight": 3}, "minority_weight=3 with cb_beta"),
    ({"loss_fn": "cb", "class_weights": [1.0] * 10}, "class_weights with loss_fn=cb"),
    ({"drw_epoch": 2, "minority_weight": 3}, "minority_weight=3 with drw_epoch"),
    ({"remix_alpha": 1.0, "irm_lambda": 10}, "remix_alpha=1 with irm_lambda=10"),
    ({"cb_beta": 1.0}, "cb_beta=1.0 is not allowed: expected a beta in [0, 1)"),
    ({"sampling_q": 2}, "sampling_q=2.0 is not allowed: expected a power in [0, 1]"),
    ({"loss_fn": "hinge"}, "unknown remedy loss_fn='hinge'"),
])
def test_nonsense_combinations_are_rejected_with_one_line(settings, message):
    with pytest.raises(ConfigError) as e:
        resolve(settings)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_sensible_combinations_are_accepted():
    for settings in [
        {"loss_fn": "focal", "cb_beta": 0.999, "sampling_q": 0.5, "rotation_deg": 10},
        {"loss_fn": "ldam", "drw_epoch": 3, "cb_beta": 0.99, "remix_alpha": 1.0},
        {"loss_fn": "logit_adjusted", "la_tau": 1.5, "ros_target": 0.5, "remix_alpha": 0.5},
        {"loss_fn": "focal", "minority_weight": 4},
    ]:
        resolve(settings)


def test_active_names_the_modern_remedies():
    cfg = resolve({"loss_fn": "ldam", "drw_epoch": 3, "sampling_q": 0.5, "remix_alpha": 1.0})
    assert remedies.active(cfg) == ["ldam", "drw", "class_aware_sampling", "remix"]
    assert remedies.active(resolve({"loss_fn": "cb"})) == ["cb"]


FAST = {"dataset": "mnist-sample", "model": "lstm", "epochs": 2, "batch_size": 128}


@pytest.fixture(scope="module")
def tiny_images(sample_images):
    """A fifth of the shipped sample: two epochs of training in a few seconds."""
    from dataclasses import replace

    return replace(sample_images, train_x=sample_images.train_x[:1000], train_y=sample_images.train_y[:1000],
                   test_x=sample_images.test_x[:200], test_y=sample_images.test_y[:200])


def test_training_switches_drw_per_epoch_uses_remix_and_resumes_exactly(tiny_images, tmp_path, monkeypatch):
    epochs, mixed = [], []
    at, mix = losses.Loss.at, losses.Loss.mixed
    monkeypatch.setattr(losses.Loss, "at", lambda self, e: epochs.append(e) or at(self, e))
    monkeypatch.setattr(losses.Loss, "mixed", lambda self, *a: mixed.append(1) or mix(self, *a))
    cfg = {**FAST, "loss_fn": "ldam", "drw_epoch": 2, "remix_alpha": 0.5, "sampling_q": 0.3}
    straight = train(cfg, data=tiny_images)
    assert epochs == [1, 2] and len(mixed) == 2 * math.ceil(sum(straight[-1]["train_counts"]) / 128)
    assert straight[-1]["remedies"] == "ldam,drw,class_aware_sampling,remix"
    assert all(math.isfinite(h["train_loss"]) for h in straight)
    # the Remix and sampling draws come from the checkpointed generator: a resumed run is identical
    train({**cfg, "epochs": 1}, data=tiny_images, reporter=LocalReporter(tmp_path))
    assert (tmp_path / STATE_FILE).exists()
    rest = LocalReporter(tmp_path)
    train(cfg, data=tiny_images, reporter=rest)
    drop = ("epoch_time_s",)
    assert {k: v for k, v in rest.history[-1].items() if k not in drop} == {
        k: v for k, v in straight[-1].items() if k not in drop}


def test_lstm_best_local_budget_reruns_the_tuned_config_over_five_seeds_beside_the_reference(tmp_path):
    from search_spaces.modern import BEST, REFERENCE
    from tuner.search import build_plan, param_space, parse_args

    plan = build_plan(parse_args(["lstm_best", "--storage-path", str(tmp_path), "--name", "B"]))
    assert plan.searcher == "grid" and plan.seeds == [0, 1, 2, 3, 4] and plan.num_trials() == 10
    assert plan.metric == "val_balanced_acc" and not plan.asha
    space = param_space(plan)
    assert space["seed"] == {"grid_search": [0, 1, 2, 3, 4]}
    assert space["group"] == {"grid_search": ["best", "balanced_reference"]}
    assert {k: plan.fixed[k] for k in BEST} == BEST
    # each arm's settings as its trials get them: the best arm every searched setting at its tuned
    # value, the reference all of MNIST with every remedy off
    for group, expect in (("best", {**BEST, "minority_keep": 0.1}), ("balanced_reference", {**BEST, **REFERENCE})):
        cfg = {"group": group}
        for key in (*plan.space, "minority_keep"):
            spec = space.get(key, plan.fixed.get(key))
            if isinstance(spec, dict) and "grid_search" in spec:
                (cfg[key],) = spec["grid_search"]
            elif hasattr(spec, "func"):  # tune.sample_from: the arm's value
                cfg[key] = spec.func(cfg)
            else:
                cfg[key] = spec
        assert {k: cfg[k] for k in plan.space} == {k: expect[k] for k in plan.space}, group
        assert cfg["minority_keep"] == expect.get("minority_keep", 0.1)
    from tuner.remedies import active
    # the reference trains as the best arm does (the same schedule), with no imbalance remedy
    reference = resolve({**BEST, **{k: v for k, v in REFERENCE.items() if k != "group"}})
    assert active(reference) == ["cosine_lr"] and active(resolve(BEST)) == ["rotation", "ldam", "drw", "cosine_lr"]
    # the search budget searches the whole space with Optuna, one seed, no reference arm; with
    # --rerun-top and --seeds (one command) the seeds are the re-run's, not the search's
    for extra in ([], ["--rerun-top", "2", "--seeds", "0,1,2,3,4"]):
        search = build_plan(parse_args(["lstm_best", "--budget", "search", "--storage-path", str(tmp_path), "--name",
                                        "S", *extra]))
        assert search.searcher == "optuna" and search.seeds == [0] and search.asha and search.arms == ()


def test_cosine_schedule_sets_each_epochs_learning_rate_by_the_formula():
    from tuner.remedies import REMEDIES, EpochContext

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    cfg = {"lr": 0.1, "epochs": 3}
    got = []
    for epoch in (1, 2, 3):
        REMEDIES["cosine_lr"].start_epoch(EpochContext(cfg, epoch, None, None, None, None, None, opt, None))
        got.append(opt.param_groups[0]["lr"])
    # (1 + cos(pi * (e - 1) / 3)) / 2 = 1, 3/4, 1/4
    assert got == pytest.approx([0.1, 0.075, 0.025])


def test_cosine_schedule_trains_and_resumes_exactly(sample_images, tmp_path):
    from tuner.trainable import LocalReporter, train

    cfg = {"dataset": "mnist-sample", "model": "mlp", "epochs": 2, "batch_size": 256, "lr_schedule": "cosine"}
    straight = train(cfg, data=sample_images)
    constant = train({**cfg, "lr_schedule": "constant"}, data=sample_images)
    assert straight[0]["train_loss"] == constant[0]["train_loss"]  # epoch 1 runs at lr either way
    assert straight[1]["train_loss"] != constant[1]["train_loss"] and straight[1]["remedies"] == "cosine_lr"
    train({**cfg, "epochs": 2}, data=sample_images, reporter=LocalReporter(tmp_path))  # checkpoints each epoch
    (tmp_path / "state.pt").unlink()
    first = LocalReporter(tmp_path)
    train({**cfg, "epochs": 1}, data=sample_images, reporter=first)
    rest = LocalReporter(tmp_path)
    train(cfg, data=sample_images, reporter=rest)
    assert rest.history[-1]["train_loss"] == straight[1]["train_loss"]


def test_posthoc_logit_adjustment_moves_decisions_to_rare_classes_and_leaves_training_alone(sample_images):
    from tuner.remedies import REMEDIES
    from tuner.trainable import train

    counts = torch.tensor([1, 3])
    adjusted = REMEDIES["posthoc_logit_adjustment"].adjust_logits(torch.zeros(1, 2), {"posthoc_tau": 1.0}, counts)
    assert adjusted[0].tolist() == pytest.approx([math.log(4), math.log(4 / 3)])  # -log(1/4), -log(3/4)
    cfg = {"dataset": "mnist-sample", "model": "mlp", "epochs": 1, "batch_size": 256}
    plain = train(cfg, data=sample_images)[-1]
    post = train({**cfg, "posthoc_tau": 1.0}, data=sample_images)[-1]
    assert post["train_loss"] == plain["train_loss"]  # the same training, bit for bit
    assert post["remedies"] == "posthoc_logit_adjustment"
    assert post["minority_acc"] > plain["minority_acc"] and post["confusion"] != plain["confusion"]


def test_weight_ema_averages_the_weights_by_the_formula_and_evaluates_the_average(sample_images):
    from tuner.remedies import Remedy, register, unregister
    from tuner.trainable import train

    seen = {}

    class Recorder(Remedy):  # registered after weight_ema: sees each step's weights after its update
        name = "test_recorder"
        settings = {}

        def runs(self, cfg):
            return True

        def after_step(self, ctx):
            seen.setdefault("weights", []).append([p.detach().clone() for p in ctx.model.parameters()])
            seen["ema"] = ctx.trial["weight_ema"]

    register(Recorder)
    try:
        cfg = {"dataset": "mnist-sample", "model": "mlp", "epochs": 2, "batch_size": 256, "ema_decay": 0.9}
        averaged = train(cfg, data=sample_images)
    finally:
        unregister("test_recorder")
    plain = train({**cfg, "ema_decay": 0.0}, data=sample_images)
    # by hand: e_1 = w_1, e_k = 0.9 e_(k-1) + 0.1 w_k over every optimizer step of the trial
    steps = seen["weights"]
    assert len(steps) == averaged[-1]["steps"] > 10
    expected = steps[0]
    for w in steps[1:]:
        expected = [0.9 * e + 0.1 * x for e, x in zip(expected, w)]
    for e, p in zip(expected, seen["ema"].module.parameters()):
        torch.testing.assert_close(p, e, rtol=1e-5, atol=1e-6)
    # training is unchanged; the evaluation reads the average
    assert [m["train_loss"] for m in averaged] == [m["train_loss"] for m in plain]
    assert averaged[-1]["remedies"] == "weight_ema" and averaged[-1]["confusion"] != plain[-1]["confusion"]


def test_weight_ema_resumes_exactly_from_a_checkpoint(sample_images, tmp_path):
    from tuner.trainable import LocalReporter, train

    cfg = {"dataset": "mnist-sample", "model": "mlp", "epochs": 3, "batch_size": 256, "ema_decay": 0.95}
    straight = train(cfg, data=sample_images)
    train({**cfg, "epochs": 1}, data=sample_images, reporter=LocalReporter(tmp_path))
    saved = torch.load(tmp_path / STATE_FILE, weights_only=True)
    assert int(saved["remedies"]["weight_ema"]["n_averaged"]) == straight[0]["steps"]
    rest = LocalReporter(tmp_path)
    train(cfg, data=sample_images, reporter=rest)
    assert [m["epoch"] for m in rest.history] == [2, 3]
    assert rest.history[-1]["confusion"] == straight[-1]["confusion"]
    assert rest.history[-1]["val_loss"] == straight[-1]["val_loss"]


def test_weight_ema_decay_is_checked_before_training():
    with pytest.raises(ConfigError, match="ema_decay"):
        resolve({"ema_decay": 1.0})


def test_lstm_balanced_screen_runs_each_family_once_beside_the_reference(tmp_path):
    from tuner.remedies import active
    from tuner.search import build_plan, parse_args

    plan = build_plan(parse_args(["lstm_balanced_screen", "--storage-path", str(tmp_path), "--name", "S"]))
    assert plan.searcher == "grid" and plan.seeds == [0] and plan.num_trials() == 10 and not plan.asha
    arms = {a["group"]: resolve({**plan.fixed, **{k: v for k, v in a.items()}}) for a in plan.arms}
    assert arms["balanced_reference"]["minority_keep"] == 1.0 and active(arms["balanced_reference"]) == ["cosine_lr"]
    assert active(arms["ce"]) == ["cosine_lr"]
    assert active(arms["ldam_drw_rot_all"]) == ["rotation", "ldam", "drw", "cosine_lr"]
    assert arms["ldam_drw_rot_all"]["augment_scope"] == "all"
