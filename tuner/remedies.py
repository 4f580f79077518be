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

import math
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

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
    if len(v) == 10 and all(isinstance(x, (int, float)) and x > 0 for x in v):
        return None
    return "a list of 10 per-class weights, each > 0"


LOSSES: dict[str, Callable] = {}  # name -> make(config, counts) -> loss(logits, y) ; filled below

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
            "IRMv1 penalty (unbiased, from two halves of each environment) with anneal-then-penalise",
            {
                "irm_lambda": Param(0.0, float, non_negative, "IRM penalty weight after the anneal epochs (0 = off)"),
                "irm_env": Param("batch", str, one_of("batch", "groups"), "environments: the batch, or minority vs majority"),
                "irm_anneal_epochs": Param(0, int, non_negative, "epochs with penalty weight 1 before irm_lambda applies"),
            },
            lambda c: c["irm_lambda"] > 0,
            {"irm_lambda": (1e-2, 1e4, "log")},
        ),
        Remedy(
            "loss",
            "the loss function by name",
            {"loss_fn": Param("ce", str, None, "loss function by name")},
            lambda c: c["loss_fn"] != "ce",
        ),
    ]
}

PARAMS: dict[str, Param] = {k: p for r in REMEDIES.values() for k, p in r.params.items()}


def check(cfg: dict) -> None:
    """Cross-setting checks the per-setting ones cannot make."""
    if cfg["loss_fn"] not in LOSSES:
        raise ConfigError(f"unknown remedy loss_fn={cfg['loss_fn']!r}: choose one of {', '.join(sorted(LOSSES))}")


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


def _cross_entropy(cfg, counts, weight):
    return lambda logits, y: F.cross_entropy(logits, y, weight=weight)


LOSSES["ce"] = _cross_entropy


def make_loss(cfg: dict, counts, device) -> Callable:
    w = class_weight_vector(cfg, len(counts))
    return LOSSES[cfg["loss_fn"]](cfg, counts, None if w is None else w.to(device))


# --- which images each epoch: over-sampling and noisy copies -----------------------------

@dataclass
class EpochPlan:
    idx: torch.Tensor  # indices into the full training images, shuffled
    y: torch.Tensor  # their labels
    sigma: torch.Tensor  # per-sample noise std (0 = none)
    rotate: torch.Tensor  # per-sample bool: rotate this one


def epoch_plan(cfg: dict, by_class: list[torch.Tensor], gen: torch.Generator) -> EpochPlan:
    """The epoch's training sample: every training image once, plus over-sampled minority copies
    (ROS, redrawn each epoch) and noisy copies; shuffled; with per-sample augmentation settings."""
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
    rad = degrees * (math.pi / 180)
    cos, sin = torch.cos(rad), torch.sin(rad)
    zero = torch.zeros_like(cos)
    # grid_sample maps output coords to input coords: the inverse rotation; y points down in images
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def augment(x: torch.Tensor, sigma: torch.Tensor, rotate_mask: torch.Tensor, cfg: dict, gen) -> torch.Tensor:
    """x: pixels in [0, 1]. Rotation first (the noise is not rotated), then additive noise."""
    if cfg["rotation_deg"] > 0:
        sel = rotate_mask.nonzero().squeeze(1)
        if len(sel):
            angles = (torch.rand(len(sel), generator=gen, device=x.device) * 2 - 1) * cfg["rotation_deg"]
            x = x.index_copy(0, sel, rotate(x[sel], angles))
    if cfg["noise_sigma"] > 0 or cfg["noise_copies"]:
        x = x + torch.randn(x.shape, generator=gen, device=x.device) * sigma.view(-1, *[1] * (x.dim() - 1))
    return x


# --- IRM ---------------------------------------------------------------------------------------

def irm_penalty(logits: torch.Tensor, y: torch.Tensor, loss_fn: Callable) -> torch.Tensor:
    """IRMv1 penalty |d loss / d w|^2 at the dummy classifier scale w = 1, estimated without bias
    as the product of the gradients on two halves (even and odd samples) of the environment."""
    scale = torch.ones((), device=logits.device, requires_grad=True)
    g1 = torch.autograd.grad(loss_fn(logits[0::2] * scale, y[0::2]), [scale], create_graph=True)[0]
    g2 = torch.autograd.grad(loss_fn(logits[1::2] * scale, y[1::2]), [scale], create_graph=True)[0]
    return g1 * g2


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
