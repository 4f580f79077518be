"""Class-imbalance remedies: their settings (declared once, with defaults and search ranges) and
their code, all batched tensor ops on the trial's device.

A remedy is switched on by its settings (`minority_weight=5`, `ros_target=0.6`, ...), so any
combination is one config. The four places a remedy can act are:
  loss weights   -> `class_weight_vector`
  the loss       -> `LOSSES[config["loss_fn"]]`
  each epoch's sample of training indices (over-sampling, copies) -> `epoch_plan`
  each batch's pixels (noise, rotation)  -> `augment`
plus the IRM penalty added to the loss (`irm_penalty`, `irm_weight`).
Adding a remedy is one `Remedy` entry (its settings) plus its code in one of those places.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from tuner import losses
from tuner.config import Param, non_negative, one_of, positive
from tuner.errors import ConfigError


@dataclass(frozen=True)
class Remedy:
    name: str
    summary: str
    params: dict[str, Param]
    active: Callable[[dict], bool]
    search_range: dict[str, tuple] = field(default_factory=dict)  # name -> (low, high, "linear"|"log"|"int")


def _variances(v):
    return None if all(isinstance(x, (int, float)) and x >= 0 for x in v) else "a list of variances >= 0"


def _weights(v):
    # one per class: 10 on the built-in datasets (tuner.config), the class count on own data (tuner.owndata)
    if v and all(isinstance(x, (int, float)) and x > 0 for x in v):
        return None
    return "a list of per-class weights, one per class, each > 0"


LOSSES: dict[str, Callable] = {}  # name -> make(config, counts, weight) -> loss(logits, y) ; filled below

REMEDIES: dict[str, Remedy] = {
    r.name: r
    for r in [
        Remedy(
            "weighted_loss",
            "cross-entropy weight of the minority classes (majority 1), or a full per-class vector",
            {
                "minority_weight": Param(1.0, float, positive, "loss weight of each minority class"),
                "class_weights": Param(None, list, _weights, "per-class loss weights (overrides minority_weight)"),
            },
            lambda c: c["minority_weight"] != 1.0 or c["class_weights"] is not None,
            {"minority_weight": (2.0, 10.0, "linear")},
        ),
        Remedy(
            "ros",
            "random over-sampling of each minority class up to ros_target x the mean majority count, redrawn each epoch",
            {"ros_target": Param(0.0, float, lambda v: None if 0 <= v <= 10 else "a ratio in [0, 10] (0 = off)")},
            lambda c: c["ros_target"] > 0,
            {"ros_target": (0.2, 1.0, "linear")},
        ),
        Remedy(
            "noise_copies",
            "each minority image gets one extra copy per listed variance, with Gaussian noise of that variance",
            {"noise_copies": Param(None, list, _variances, "noise variances of the copies, e.g. [0.1, ..., 0.9]")},
            lambda c: bool(c["noise_copies"]),
        ),
        Remedy(
            "noise",
            "Gaussian pixel noise (std noise_sigma, pixels in [0, 1]) on the images in augment_scope",
            {"noise_sigma": Param(0.0, float, non_negative, "std of the Gaussian noise, pixel scale 0-1")},
            lambda c: c["noise_sigma"] > 0,
            {"noise_sigma": (0.05, 1.0, "linear")},
        ),
        Remedy(
            "rotation",
            "random rotation, uniform in [-rotation_deg, rotation_deg] degrees, of the images in augment_scope",
            {"rotation_deg": Param(0.0, float, non_negative, "maximum rotation angle in degrees")},
            lambda c: c["rotation_deg"] > 0,
            {"rotation_deg": (0.0, 30.0, "linear")},
        ),
        Remedy(
            "augment_scope",
            "which images noise and rotation apply to",
            {
                "augment_scope": Param(
                    "minority",
                    str,
                    one_of("copies", "minority", "all"),
                    "copies: over-sampled copies only; minority: every minority image; all: every image",
                )
            },
            lambda c: False,
        ),
        Remedy(
            "irm",
            "IRMv1 penalty (unbiased, over all pairs of distinct samples of each environment) with anneal-then-penalise",
            {
                "irm_lambda": Param(0.0, float, non_negative, "IRM penalty weight after the anneal epochs (0 = off)"),
                "irm_env": Param("batch", str, one_of("batch", "groups"), "environments: the batch (the original study's), or minority vs majority classes"),
                "irm_anneal_epochs": Param(0, int, non_negative, "epochs with penalty weight 1 before irm_lambda applies"),
            },
            lambda c: c["irm_lambda"] > 0,
            {"irm_lambda": (1e-2, 1e4, "log")},
        ),
        Remedy(
            "loss",
            "the loss function by name",
            {"loss_fn": Param("ce", str, None, "loss function by name")},
            lambda c: c["loss_fn"] != "ce" and c["loss_fn"] not in REMEDIES,  # named losses show under their name
        ),
        # --- the modern remedies (code: tuner.losses; class-aware sampling: `class_aware_plan`) ---
        Remedy(
            "cb",
            "class-balanced weights (Cui et al. 2019) ~ 1 / effective number (1 - beta^n) / (1 - beta), with any loss",
            {"cb_beta": Param(None, float, lambda v: None if 0 <= v < 1 else "a beta in [0, 1) (None = off)",
                              "class-balanced weights' beta; loss_fn=cb uses 0.9999 when unset")},
            lambda c: c["cb_beta"] is not None or c["loss_fn"] == "cb",
            {"cb_beta": (0.9, 0.9999, "linear")},
        ),
        Remedy(
            "focal",
            "focal loss -(1 - p_t)^gamma log p_t (loss_fn=focal), with any class weights",
            {"focal_gamma": Param(2.0, float, non_negative, "focusing parameter (0 = cross-entropy)")},
            lambda c: c["loss_fn"] == "focal",
            {"focal_gamma": (0.0, 5.0, "linear")},
        ),
        Remedy(
            "ldam",
            "LDAM (Cao et al. 2019): cross-entropy of s * (logits - m_y), m_j ~ n_j^(-1/4) (loss_fn=ldam)",
            {
                "ldam_max_margin": Param(0.5, float, positive, "margin of the rarest class"),
                "ldam_s": Param(30.0, float, positive, "logit scale"),
            },
            lambda c: c["loss_fn"] == "ldam",
            {"ldam_max_margin": (0.1, 1.0, "linear"), "ldam_s": (1.0, 30.0, "log")},
        ),
        Remedy(
            "drw",
            "deferred re-weighting: no class weights until epoch drw_epoch, class-balanced ones (beta cb_beta or 0.9999) from it on",
            {"drw_epoch": Param(0, int, non_negative, "first epoch (1-based) with class-balanced weights (0 = off)")},
            lambda c: c["drw_epoch"] > 0,
            {"drw_epoch": (2, 10, "int")},
        ),
        Remedy(
            "logit_adjusted",
            "logit-adjusted loss (Menon et al. 2021): cross-entropy of logits + la_tau * log(prior) (loss_fn=logit_adjusted)",
            {"la_tau": Param(1.0, float, non_negative, "strength of the prior adjustment")},
            lambda c: c["loss_fn"] == "logit_adjusted",
            {"la_tau": (0.0, 2.0, "linear")},
        ),
        Remedy(
            "balanced_softmax",
            "balanced softmax (Ren et al. 2020): cross-entropy of logits + log(n_j) (loss_fn=balanced_softmax)",
            {},
            lambda c: c["loss_fn"] == "balanced_softmax",
        ),
        Remedy(
            "class_aware_sampling",
            "each epoch: as many draws as training images, class c with probability ~ n_c^sampling_q (0 balanced, 1 natural)",
            {"sampling_q": Param(None, float, lambda v: None if 0 <= v <= 1 else "a power in [0, 1] (None = off)",
                                 "class sampling power q (None = every image once per epoch)")},
            lambda c: c["sampling_q"] is not None,
            {"sampling_q": (0.0, 1.0, "linear")},
        ),
        Remedy(
            "remix",
            "Remix (Chou et al. 2020): mixup, lam ~ Beta(alpha, alpha), label to the minority image when "
            "n_i / n_j >= remix_kappa and lam < remix_tau",
            {
                "remix_alpha": Param(0.0, float, non_negative, "Beta(alpha, alpha) of the mixing weight (0 = off)"),
                "remix_kappa": Param(3.0, float, lambda v: None if v >= 1 else "a count ratio >= 1"),
                "remix_tau": Param(0.5, float, lambda v: None if 0 <= v <= 1 else "a fraction in [0, 1]"),
            },
            lambda c: c["remix_alpha"] > 0,
            {"remix_alpha": (0.1, 2.0, "log"), "remix_kappa": (1.5, 10.0, "log"), "remix_tau": (0.3, 0.7, "linear")},
        ),
    ]
}

PARAMS: dict[str, Param] = {k: p for r in REMEDIES.values() for k, p in r.params.items()}


def check(cfg: dict) -> None:
    """Cross-setting checks the per-setting ones cannot make."""
    if cfg["loss_fn"] not in LOSSES:
        raise ConfigError(f"unknown remedy loss_fn={cfg['loss_fn']!r}: choose one of {', '.join(sorted(LOSSES))}")
    losses.check(cfg)
    q = cfg["sampling_q"]
    if q is not None and (cfg["ros_target"] > 0 or cfg["noise_copies"]):
        other = f"ros_target={cfg['ros_target']:g}" if cfg["ros_target"] > 0 else "noise_copies"
        raise ConfigError(f"sampling_q={q:g} with {other}: both choose the epoch's sample; set only one of them")
    if q is not None and cfg["augment_scope"] == "copies" and (cfg["noise_sigma"] > 0 or cfg["rotation_deg"] > 0):
        raise ConfigError(
            f"augment_scope='copies' with sampling_q={q:g}: class-aware sampling makes no copies; "
            "use augment_scope=minority or all"
        )


def active(cfg: dict) -> list[str]:
    return [r.name for r in REMEDIES.values() if r.active(cfg)]


# --- loss -----------------------------------------------------------------------------------

def class_weight_vector(cfg: dict, num_classes: int = 10) -> torch.Tensor | None:
    if cfg["class_weights"] is not None:
        return torch.tensor(cfg["class_weights"], dtype=torch.float32)
    if cfg["minority_weight"] == 1.0:
        return None
    w = torch.ones(num_classes)
    w[list(cfg["minority_classes"])] = cfg["minority_weight"]
    return w


LOSSES.update(losses.LOSSES)  # ce, cb, focal, ldam, logit_adjusted, balanced_softmax


def make_loss(cfg: dict, counts, device) -> Callable:
    w = class_weight_vector(cfg, len(counts))
    loss = LOSSES[cfg["loss_fn"]](cfg, counts, None if w is None else w.to(device))
    return loss.to(device) if isinstance(loss, losses.Loss) else loss  # its margins and weights too


# --- which images each epoch: over-sampling and noisy copies -----------------------------

@dataclass
class EpochPlan:
    idx: torch.Tensor  # indices into the full training images, shuffled
    y: torch.Tensor  # their labels
    sigma: torch.Tensor  # per-sample noise std (0 = none)
    rotate: torch.Tensor  # per-sample bool: rotate this one


def class_sampling_probs(counts, q: float) -> torch.Tensor:
    """Class-aware sampling: P(class c) = n_c^q / sum_k n_k^q (q = 0 balanced, q = 1 natural)."""
    n = torch.as_tensor(counts, dtype=torch.float64)
    p = torch.where(n > 0, n.clamp(min=1) ** q, torch.zeros_like(n))
    return p / p.sum()


def class_aware_plan(cfg: dict, by_class: list[torch.Tensor], gen: torch.Generator) -> EpochPlan:
    """The sampler family that contains ROS: as many draws as training images, each a class drawn
    with `class_sampling_probs`, then an image of that class uniformly; all on the device."""
    device = by_class[0].device
    counts = torch.tensor([len(m) for m in by_class], device=device)
    n = int(counts.sum())
    probs = class_sampling_probs(counts.cpu(), cfg["sampling_q"]).to(device, torch.float32)
    y = torch.multinomial(probs, n, replacement=True, generator=gen)
    start = torch.cumsum(counts, 0) - counts
    pick = start[y] + (torch.rand(n, generator=gen, device=device) * counts[y]).long().clamp(max=counts[y] - 1)
    idx = torch.cat(by_class)[pick]
    is_minority = torch.zeros(len(by_class), dtype=torch.bool, device=device)
    is_minority[sorted(cfg["minority_classes"])] = True
    # no copies here ("copies" with augmentation is rejected by `check`)
    scope = cfg["augment_scope"]
    in_scope = is_minority[y] if scope == "minority" else torch.full_like(y, scope == "all", dtype=torch.bool)
    sigma = torch.where(in_scope, cfg["noise_sigma"], 0.0).float()
    return EpochPlan(idx, y, sigma, in_scope & (cfg["rotation_deg"] > 0))


def epoch_plan(cfg: dict, by_class: list[torch.Tensor], gen: torch.Generator) -> EpochPlan:
    """The epoch's training sample: every training image once, plus over-sampled minority copies
    (ROS, redrawn each epoch) and noisy copies; shuffled; with per-sample augmentation settings."""
    if cfg["sampling_q"] is not None:
        return class_aware_plan(cfg, by_class, gen)  # an alternative sample of the same size
    minority = set(cfg["minority_classes"])
    device = by_class[0].device
    counts = [len(m) for m in by_class]
    majority_counts = [n for c, n in enumerate(counts) if c not in minority]
    idx, label, is_copy, sigma, fixed = [], [], [], [], []

    def add(members, c: int, copy: bool, noise: float | None = None):
        n = len(members)
        idx.append(members)
        label.append(torch.full((n,), c, dtype=torch.long, device=device))
        is_copy.append(torch.full((n,), copy, dtype=torch.bool, device=device))
        sigma.append(torch.full((n,), cfg["noise_sigma"] if noise is None else noise, device=device))
        fixed.append(torch.full((n,), noise is not None, dtype=torch.bool, device=device))

    for c, members in enumerate(by_class):
        add(members, c, False)
    for c in sorted(minority):
        members = by_class[c]
        if cfg["ros_target"] > 0 and majority_counts:
            extra = int(round(cfg["ros_target"] * sum(majority_counts) / len(majority_counts))) - len(members)
            if extra > 0:
                add(members[torch.randint(len(members), (extra,), generator=gen, device=device)], c, True)
        for variance in cfg["noise_copies"] or []:
            add(members, c, True, math.sqrt(variance))

    idx, label, is_copy, sigma, fixed = (torch.cat(t) for t in (idx, label, is_copy, sigma, fixed))
    # noise_copies carry their own noise whatever the scope; noise_sigma and rotation follow the scope
    is_minority = torch.zeros(len(counts), dtype=torch.bool, device=device)
    is_minority[sorted(minority)] = True
    scope = {"copies": is_copy, "minority": is_minority[label], "all": torch.ones_like(is_copy)}
    in_scope = scope[cfg["augment_scope"]]
    sigma = torch.where(in_scope | fixed, sigma, torch.zeros_like(sigma))
    rotate = in_scope & (cfg["rotation_deg"] > 0)
    perm = torch.randperm(len(idx), generator=gen, device=device)
    return EpochPlan(idx[perm], label[perm], sigma[perm], rotate[perm])


# --- what each batch looks like: batched augmentation ----------------------------------------

def rotate(x: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """Rotate each image of a batch (B, C, H, W) counter-clockwise by its angle, one affine grid for
    the whole batch (bilinear, zero fill) - the batched form of torchvision's RandomRotation."""
    rad = degrees.to(x.dtype) * (math.pi / 180)
    cos, sin = torch.cos(rad).view(-1, 1, 1, 1), torch.sin(rad).view(-1, 1, 1, 1)
    # grid_sample maps output coords to input coords: the inverse rotation; y points down in images.
    # This is the grid F.affine_grid makes for theta = [[cos, -sin, 0], [sin, cos, 0]], written out
    # as cos * (x, y) + sin * (-y, x): affine_grid's per-image 3x2 bmm was most of the cost on CPU.
    base, perp = _pixel_grid(x.shape[-2], x.shape[-1], x.device, x.dtype)
    grid = cos * base + sin * perp  # (B, H, W, 2)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


@functools.lru_cache(maxsize=16)
def _pixel_grid(h: int, w: int, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel centres in grid_sample's [-1, 1] coordinates (align_corners=False), (H, W, 2) as (x, y),
    and the same turned by 90 degrees, (-y, x)."""
    xs = ((torch.arange(w, device=device, dtype=dtype) * 2 + 1) / w - 1).expand(h, w)
    ys = ((torch.arange(h, device=device, dtype=dtype) * 2 + 1) / h - 1).view(-1, 1).expand(h, w)
    return torch.stack([xs, ys], -1), torch.stack([-ys, xs], -1)


def augment(x: torch.Tensor, sigma: torch.Tensor, rotate_mask: torch.Tensor, cfg: dict, gen) -> torch.Tensor:
    """x: pixels in [0, 1]. Rotation first (the noise is not rotated), then additive noise."""
    x_in = x
    if cfg["rotation_deg"] > 0:
        sel = rotate_mask.nonzero().squeeze(1)
        if len(sel):
            angles = (torch.rand(len(sel), generator=gen, device=x.device) * 2 - 1) * cfg["rotation_deg"]
            x = x.index_copy(0, sel, rotate(x.index_select(0, sel), angles))  # index_select: a copy per row
    if cfg["noise_sigma"] > 0 or cfg["noise_copies"]:
        if x.device.type == "cpu":  # draw noise for the noisy images only (often under half the batch)
            sel = sigma.nonzero().squeeze(1)
            if len(sel):
                noise = torch.randn((len(sel), *x.shape[1:]), generator=gen, device=x.device)
                noise.mul_(sigma[sel].view(-1, *[1] * (x.dim() - 1)))
                # in place when the rotation above already made x a new tensor; the input is never changed
                x = x.index_add_(0, sel, noise) if x is not x_in else x.index_add(0, sel, noise)
        else:  # on a GPU a full-batch draw is cheaper than the host sync of nonzero()
            x = x + torch.randn(x.shape, generator=gen, device=x.device) * sigma.view(-1, *[1] * (x.dim() - 1))
    return x


# --- IRM ---------------------------------------------------------------------------------------

def irm_penalty(logits: torch.Tensor, y: torch.Tensor, loss_fn: Callable) -> torch.Tensor:
    """IRMv1 penalty |d loss / d w|^2 at the dummy classifier scale w = 1, estimated as the original
    study did, within the batch (the environment) and without bias: over all ordered pairs (i, j)
    of distinct samples, the product a_i * a_j of their loss gradients with respect to the scale,
    scaled by n / (n - 1). a_i is d loss / d s_i for a scale s_i on sample i alone (the batch
    loss's own weighting, e.g. class weights, included), so sum_i a_i is the batch gradient G and
    sum_{i != j} a_i a_j = G^2 - sum_i a_i^2. Unbiased because distinct samples are independent
    draws: E[a_i a_j] = E[a]^2 for i != j, whereas G^2 alone also counts the i = j terms and so
    adds the variance of the per-sample gradients to the penalty."""
    n = len(y)
    dtype = torch.promote_types(logits.dtype, torch.float32)  # bf16/fp16 logits: the penalty in fp32
    scale = torch.ones(n, device=logits.device, dtype=dtype, requires_grad=True)
    shape = (n,) + (1,) * (logits.dim() - 1)
    a = torch.autograd.grad(loss_fn(logits * scale.view(shape), y), [scale], create_graph=True)[0]
    total = a.sum()
    return (total * total - (a * a).sum()) * (n / (n - 1))


def irm_environments_penalty(cfg, logits, y, loss_fn, is_minority: torch.Tensor) -> torch.Tensor:
    if cfg["irm_env"] == "batch":
        return irm_penalty(logits, y, loss_fn)
    groups = [is_minority[y], ~is_minority[y]]
    # a group with fewer than 2 samples in this batch gives no estimate
    terms = [irm_penalty(logits[g], y[g], loss_fn) for g in groups if int(g.sum()) >= 2]
    return torch.stack(terms).mean() if terms else logits.sum() * 0


def irm_weight(cfg: dict, epoch: int) -> float:
    """Penalty weight in epoch `epoch` (1-based): 1 while annealing, then irm_lambda."""
    return cfg["irm_lambda"] if epoch > cfg["irm_anneal_epochs"] else 1.0
