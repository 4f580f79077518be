"""The `digit_pairs` study: is the first of two MNIST digits <= the second?

A pair is two MNIST digits, each 2x2 average-pooled to 14x14, stacked as one 2x14x14 image; the
target is 1 when the first digit's class <= the second's, and both classes come along as
auxiliary labels. The datasets `digit_pairs` (full MNIST) and `digit_pairs-sample` (the shipped
sample) load the digits; the pairing happens inside each trial with its `seed`, so every round of
the study gets new pairs and a new initialisation: `num_pairs` pairs from the MNIST training set
(a `val_fraction` of them held out for selection) and `num_test_pairs` from the test set.

Models (their torch modules are in `tuner.pair_nets`) return a pair-logit tensor or a `PairOut` with
digit logits too. The loss depends on the model's `loss_kind`:
    pair    CE(pair)
    aux     alpha * CE(pair) + beta_t * gamma * (CE(digit 1) + CE(digit 2)),  beta_t = decay ** (epoch - 1)
    digits  CE(digit 1) + CE(digit 2); the pair is predicted by comparing the two predicted digits
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial
from typing import NamedTuple

import numpy as np

from tuner import data
from tuner import metrics as metrics_mod
from tuner.errors import ConfigError
from tuner.lazy import inference_mode, lazy
from tuner.models import build_model, register
from tuner.remedies import Batch, EpochPlan
from tuner.settings import Param, fraction, non_negative, one_of, positive
from tuner.tasks import Task, TaskRun
from tuner.tasks import register as register_task

torch = lazy("torch", globals())  # imported on first use (tuner.lazy): the driver's checks need no torch
nn = lazy("torch.nn", globals())
F = lazy("torch.nn.functional", globals())
pair_nets = lazy("tuner.pair_nets", globals())  # the study's torch modules

# dataset name -> the dataset its digits come from
PAIR_DATASETS = {"digit_pairs": "mnist", "digit_pairs-sample": "mnist-sample"}
PAIR_SHAPE = (2, 14, 14)

PARAMS = {
    "num_pairs": Param(1000, int, positive, "digit_pairs: pairs drawn from the MNIST training set (validation included)"),
    "num_test_pairs": Param(1000, int, positive, "digit_pairs: pairs drawn from the MNIST test set"),
    "pair_aux_alpha": Param(1.0, float, non_negative, "digit_pairs: weight alpha of the pair loss of aux models"),
    "pair_aux_gamma": Param(5.0, float, non_negative, "digit_pairs: weight gamma of the two digit losses of aux models"),
    "pair_aux_decay": Param(0.9, float, fraction, "digit_pairs: beta_t = pair_aux_decay ** (epoch - 1)"),
    "pair_val_pairs": Param("held_out", str, one_of("held_out", "spare"),
                            "digit_pairs validation pairs: held_out = val_fraction of the num_pairs (fewer train); "
                            "spare = drawn from MNIST training images no training pair uses, so all num_pairs train "
                            "(the original study trained on 1000 pairs)"),
}



def check(cfg: dict) -> None:
    """Cross-setting checks, called by tuner.config.resolve (one line naming the value)."""
    from tuner import remedies

    if remedies.active(cfg):  # the pairs trainer has no imbalance: a remedy would be silently ignored
        raise ConfigError(f"digit_pairs trials use no imbalance remedy: unset {', '.join(remedies.active(cfg))}")
    if cfg["precision"] != "fp32":  # the pairs trainer has no autocast: the setting would be silently ignored
        raise ConfigError(f"precision={cfg['precision']!r}: digit_pairs trials run in fp32 only")
    if cfg["channels_last"]:
        raise ConfigError("channels_last=true: digit_pairs trials do not use it; unset it")
    n_val = val_count(cfg)
    if not 1 <= n_val < cfg["num_pairs"] + (cfg["num_pairs"] if cfg["pair_val_pairs"] == "spare" else 0):
        raise ConfigError(f"num_pairs={cfg['num_pairs']} with val_fraction={cfg['val_fraction']:g} leaves {n_val} "
                          "validation pair(s): need at least 1 for validation and 1 for training")
    if cfg["pair_aux_alpha"] == 0 and cfg["pair_aux_gamma"] == 0:
        raise ConfigError("pair_aux_alpha=0 and pair_aux_gamma=0 leave aux models no loss: make one of them > 0")


def val_count(cfg: dict) -> int:
    return int(round(cfg["val_fraction"] * cfg["num_pairs"]))


def _digits(name: str, source: str, root, download) -> data.Images:
    return replace(data.DATASETS[source](root, download), name=name)


for _name, _source in PAIR_DATASETS.items():
    data.register(_name)(partial(_digits, _name, _source))


# --- pairs (host side, numpy) ------------------------------------------------------------------

@dataclass(frozen=True)
class Pairs:
    x: np.ndarray  # (n, 2, 14, 14) float32, pixel scale 0-1
    target: np.ndarray  # (n,) int64: 1 when classes[:, 0] <= classes[:, 1]
    classes: np.ndarray  # (n, 2) int64 digit labels
    source: np.ndarray  # (n, 2) indices into the MNIST split (train or test) the digits came from

    def __len__(self) -> int:
        return len(self.target)

    def take(self, idx) -> "Pairs":
        return Pairs(self.x[idx], self.target[idx], self.classes[idx], self.source[idx])


@dataclass(frozen=True)
class PairSplit:
    train: Pairs
    val: Pairs
    test: Pairs


def pool2x2(x_u8: np.ndarray) -> np.ndarray:
    """(n, 1, H, W) uint8 -> (n, H/2, W/2) float32 on the pixel scale 0-1: the mean of each 2x2 block."""
    n, _, h, w = x_u8.shape
    return x_u8.reshape(n, h // 2, 2, w // 2, 2).astype(np.float32).mean(axis=(2, 4)) / 255


def draw_pairs(x_u8: np.ndarray, y: np.ndarray, n: int, rng: np.random.Generator, where: str = "") -> Pairs:
    """n pairs of distinct images, drawn without replacement."""
    if 2 * n > len(y):
        raise ConfigError(f"{n} pairs need {2 * n} distinct {where} images, but only {len(y)} are available: "
                          "lower the number of pairs or use full MNIST")
    src = rng.permutation(len(y))[: 2 * n].reshape(n, 2)
    classes = y[src]
    x = pool2x2(x_u8[src.ravel()]).reshape(n, 2, x_u8.shape[2] // 2, x_u8.shape[3] // 2)
    return Pairs(x, (classes[:, 0] <= classes[:, 1]).astype(np.int64), classes, src)


def make_pair_split(images: data.Images, cfg: dict) -> PairSplit:
    """Training, validation and test pairs of one trial, all from its `seed`."""
    if images.input_shape != (1, 28, 28) or images.num_classes != 10:
        raise ConfigError(f"digit pairs need 1x28x28 images of 10 digits; {images.name!r} has "
                          f"{'x'.join(map(str, images.input_shape))} images of {images.num_classes} classes")
    train_rng, test_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(cfg["seed"]).spawn(2))
    n_val = val_count(cfg)
    spare = n_val if cfg["pair_val_pairs"] == "spare" else 0  # validation pairs on top of the num_pairs that train
    pool = draw_pairs(images.train_x, images.train_y, cfg["num_pairs"] + spare, train_rng, f"{images.name} training")
    test = draw_pairs(images.test_x, images.test_y, cfg["num_test_pairs"], test_rng, f"{images.name} test")
    # the pool is in random order and its images distinct: its first pairs are a random subset
    return PairSplit(pool.take(slice(n_val, None)), pool.take(slice(0, n_val)), test)


# --- models ----------------------------------------------------------------------------------------

@register("pairs_perceptron")
def pairs_perceptron(input_shape, num_classes, options):
    c, h, w = input_shape
    return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, num_classes))


@register("pairs_mlp")
def pairs_mlp(input_shape, num_classes, options):
    c, h, w = input_shape
    hidden = pair_nets.HIDDEN
    return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, num_classes))


@register("pairs_cnn")
def pairs_cnn(input_shape, num_classes, options):
    c, h, w = input_shape
    side = lambda s: ((s - 2) // 2 - 2) // 2  # noqa: E731  conv 3 without padding, pool, conv, pool
    conv = pair_nets.conv
    return nn.Sequential(*conv(c, 8, 0, False), nn.MaxPool2d(2), *conv(8, 16, 0, False), nn.MaxPool2d(2),
                         *pair_nets.head(16 * side(h) * side(w), num_classes))


@register("pairs_cnn_pad")
def pairs_cnn_pad(input_shape, num_classes, options):
    c, h, w = input_shape
    return nn.Sequential(*pair_nets.padded_trunk(c, False), *pair_nets.head(16 * (h // 2) * (w // 2), num_classes))


@register("pairs_cnn_dropout")
def pairs_cnn_dropout(input_shape, num_classes, options):
    c, h, w = input_shape
    return nn.Sequential(*pair_nets.padded_trunk(c, False),
                         *pair_nets.head(16 * (h // 2) * (w // 2), num_classes, pair_nets.DROPOUT))


@register("pairs_cnn_bn")
def pairs_cnn_bn(input_shape, num_classes, options):
    c, h, w = input_shape
    return nn.Sequential(*pair_nets.padded_trunk(c, True),
                         *pair_nets.head(16 * (h // 2) * (w // 2), num_classes, pair_nets.DROPOUT))


@register("pairs_resnet")
def pairs_resnet(input_shape, num_classes, options):
    # pairs_cnn_bn with 6 more 16-channel convs (3 residual blocks) after its pool, at 7x7
    c, h, w = input_shape
    return nn.Sequential(*pair_nets.padded_trunk(c, True), *(pair_nets.Residual() for _ in range(3)),
                         *pair_nets.head(16 * (h // 2) * (w // 2), num_classes, pair_nets.DROPOUT))


def _check_two_images(input_shape, name):
    if input_shape[0] != 2:
        raise ConfigError(f"model {name!r} reads two 1-channel digits: input shape must be 2xHxW, got {input_shape}")


@register("pairs_siamese")
def pairs_siamese(input_shape, num_classes, options):
    _check_two_images(input_shape, "pairs_siamese")
    return pair_nets.Siamese(input_shape, num_classes, aux=False)


@register("pairs_siamese_aux")
def pairs_siamese_aux(input_shape, num_classes, options):
    _check_two_images(input_shape, "pairs_siamese_aux")
    return pair_nets.Siamese(input_shape, num_classes, aux=True)


@register("pairs_digits")
def pairs_digits(input_shape, num_classes, options):
    _check_two_images(input_shape, "pairs_digits")
    return pair_nets.DigitComparator(input_shape)


# --- loss ------------------------------------------------------------------------------------------

def beta(cfg: dict, epoch: int) -> float:
    return cfg["pair_aux_decay"] ** (epoch - 1)


def loss_weights(model: nn.Module, cfg: dict, epoch: int) -> tuple[float, float]:
    """(weight of CE(pair), weight of CE(digit 1) + CE(digit 2)) for this model at this epoch."""
    kind = getattr(model, "loss_kind", "pair")
    if kind == "aux":
        return cfg["pair_aux_alpha"], beta(cfg, epoch) * cfg["pair_aux_gamma"]
    return (0.0, 1.0) if kind == "digits" else (1.0, 0.0)


def pair_loss(out: pair_nets.PairOut, target, classes, w_pair: float, w_digit: float) -> torch.Tensor:
    loss = out.logits.new_zeros(())
    if w_pair:
        loss = loss + w_pair * F.cross_entropy(out.logits.float(), target)
    if w_digit:
        d = out.digits.float()
        loss = loss + w_digit * (F.cross_entropy(d[:, 0], classes[:, 0]) + F.cross_entropy(d[:, 1], classes[:, 1]))
    return loss


# --- the task: one trial of digit_pairs, driven by the training loop of tuner.trainable --------------

class _OnDevice(NamedTuple):
    x: torch.Tensor  # normalised
    target: torch.Tensor
    classes: torch.Tensor


def _to_device(p: Pairs, mean: float, std: float, device) -> _OnDevice:
    x = (torch.from_numpy(p.x) - mean) / std
    return _OnDevice(x.to(device), torch.from_numpy(p.target).to(device), torch.from_numpy(p.classes).to(device))


@inference_mode
def evaluate(model: nn.Module, s: _OnDevice, batch_size: int) -> dict:
    model.eval()
    cm = torch.zeros(2, 2, dtype=torch.long, device=s.x.device)
    loss_sum = torch.zeros((), device=s.x.device)
    digit_hits = torch.zeros((), dtype=torch.long, device=s.x.device)
    has_digits = False
    for b in range(0, len(s.target), batch_size):
        sl = slice(b, b + batch_size)
        out = pair_nets.as_pair_out(model(s.x[sl]))
        loss_sum += F.cross_entropy(out.logits.float(), s.target[sl], reduction="sum")
        cm += metrics_mod.confusion_matrix(s.target[sl], out.pred, 2)
        if out.digits is not None:
            has_digits = True
            digit_hits += (out.digits.argmax(-1) == s.classes[sl]).sum()
    m = metrics_mod.metrics_from_confusion(cm.cpu(), [0])
    res = {"loss": float(loss_sum) / len(s.target), "acc": m["acc"], "balanced_acc": m["balanced_acc"]}
    if has_digits:  # how well the digit heads read the digits
        res["digit_acc"] = float(digit_hits) / (2 * len(s.target))
    return res


class PairLoss(NamedTuple):
    """The epoch's loss of one model: weights of CE(pair) and of the two digit CEs (`loss_weights`)."""

    w_pair: float
    w_digit: float

    def __call__(self, out: pair_nets.PairOut, target, classes) -> torch.Tensor:
        return pair_loss(out, target, classes, self.w_pair, self.w_digit)


class DigitPairs(Task):
    name = "digit_pairs"
    summary = "pairs of 14x14 MNIST digits: is the first <= the second? (own targets, models and loss)"
    settings = PARAMS
    datasets = tuple(PAIR_DATASETS)
    uses_remedies = False  # no imbalance here: `check` refuses every remedy

    def check(self, cfg):
        check(cfg)

    def check_other(self, cfg):
        if cfg["model"].startswith("pairs_"):
            raise ConfigError(f"model {cfg['model']!r} needs a pairs dataset: set dataset to one of {', '.join(PAIR_DATASETS)}")

    def setup(self, cfg, images, device):
        return PairsRun(cfg, images, device)

    def report_sections(self, trials):
        from analysis.pairs import pairs_display, pairs_table  # the study's protocol: test accuracy at the final epoch

        return [("Study table: test accuracy per architecture", "Test accuracy over rounds (new pairs and initialisation): mean ± sd, "
                 "Student-t 95% CI, percent", pairs_display(pairs_table(trials)))]


class PairsRun(TaskRun):
    def __init__(self, cfg: dict, images: data.Images, device):
        self.cfg, self.device = cfg, device
        split = make_pair_split(images, cfg)
        mean, std = images.mean[0], images.std[0]
        self.train_s, self.val_s, self.test_s = (_to_device(p, mean, std, device) for p in (split.train, split.val, split.test))
        # the digits actually used: a fallback to the shipped sample shows as digit_pairs-sample
        self.dataset_name = {v: k for k, v in PAIR_DATASETS.items()}.get(images.name, images.name)
        self.counts = torch.bincount(self.train_s.target, minlength=2)
        self.is_minority = torch.zeros(2, dtype=torch.bool, device=device)
        self.static = {}

    def build_model(self) -> nn.Module:
        self.model = build_model(self.cfg["model"], PAIR_SHAPE, 2, self.cfg).to(self.device)
        if any(isinstance(m, nn.BatchNorm2d) for m in self.model.modules()):
            self.min_batch = 2  # batch norm cannot train on a single pair
        return self.model

    def base_loss(self):
        return None

    def epoch_loss(self, base_loss, epoch):
        return PairLoss(*loss_weights(self.model, self.cfg, epoch))

    def epoch_plan(self, cfg, gen, running):
        order = torch.randperm(len(self.train_s.target), generator=gen, device=gen.device)
        return EpochPlan(order, self.train_s.target[order], 2)

    def batch(self, plan, s, e):
        idx = plan.idx[s:e]
        target, classes = self.train_s.target[idx], self.train_s.classes[idx]
        return Batch(self.train_s.x[idx], target, loss_of=lambda out, fn: fn(pair_nets.as_pair_out(out), target, classes))

    def predict(self, out):
        return pair_nets.as_pair_out(out).pred

    def evaluate(self, model, precision) -> dict:
        val = evaluate(model, self.val_s, self.cfg["eval_batch_size"])
        test = evaluate(model, self.test_s, self.cfg["eval_batch_size"])
        return {**{f"val_{k}": v for k, v in val.items()}, **test}


TASK = register_task(DigitPairs())
