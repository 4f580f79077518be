"""Remedies that change the pixels of a batch: Gaussian noise and random rotation, applied to the
images `augment_scope` names, batched on the trial's device. Pixels are on the 0-1 scale here
(before normalisation), so noise_sigma is in units of the full pixel range."""
from __future__ import annotations

import functools
import math

from tuner.lazy import lazy
from tuner.remedies.base import Remedy, register
from tuner.settings import Param, Range, non_negative, one_of

torch = lazy("torch", globals())  # imported on first use (tuner.lazy): the driver's checks need no torch
F = lazy("torch.nn.functional", globals())


@register
class Noise(Remedy):
    name = "noise"
    summary = "Gaussian pixel noise (std noise_sigma, pixels in [0, 1]) on the images in augment_scope"
    settings = {"noise_sigma": Param(0.0, float, non_negative, "std of the Gaussian noise, pixel scale 0-1",
                                     label="noise σ (pixel scale 0–1)", off=0.0,
                                     search=Range(0.05, 1.0, grid=(0.1, 0.3, 0.5, 0.7, 0.9)))}
    transform_order = 1  # after rotation: the noise is not rotated

    def runs(self, cfg):  # also draws the noise of noise_copies (each copy carries its own sigma)
        return cfg["noise_sigma"] > 0 or bool(cfg["noise_copies"])

    def finish_plan(self, plan, cfg):
        sigma = torch.where(in_scope(plan, cfg), cfg["noise_sigma"], 0.0).float()
        if "copy_sigma" in plan.fields:
            fixed = ~plan.fields["copy_sigma"].isnan()
            sigma = torch.where(fixed, plan.fields["copy_sigma"], sigma)
        plan.fields["sigma"] = sigma

    def transform(self, batch, ctx):
        batch.x = add_noise(batch.x, batch.fields["sigma"], ctx.gen)
        return batch


@register
class Rotation(Remedy):
    name = "rotation"
    summary = "random rotation, uniform in [-rotation_deg, rotation_deg] degrees, of the images in augment_scope"
    settings = {"rotation_deg": Param(0.0, float, non_negative, "maximum rotation angle in degrees",
                                      label="rotation range (degrees)", off=0.0,
                                      search=Range(0, 30, grid=(0, 5, 10, 15, 20, 25, 30)))}
    transform_order = 0

    def finish_plan(self, plan, cfg):
        plan.fields["rotate"] = in_scope(plan, cfg)

    def transform(self, batch, ctx):
        batch.x = rotate_some(batch.x, batch.fields["rotate"], ctx.cfg["rotation_deg"], ctx.gen)
        return batch


@register
class AugmentScope(Remedy):
    """Not a remedy of its own: the setting noise and rotation share."""

    name = "augment_scope"
    summary = "which images noise and rotation apply to"
    settings = {"augment_scope": Param("minority", str, one_of("copies", "minority", "all"),
                                       "copies: over-sampled copies only; minority: every minority image; all: every image",
                                       label="augmented images")}

    def active(self, cfg):
        return False


def in_scope(plan, cfg) -> torch.Tensor:
    """Per sample of the epoch: is it one of the images noise and rotation apply to?"""
    if "in_scope" not in plan.fields:
        scope = cfg["augment_scope"]
        if scope == "copies":
            plan.fields["in_scope"] = plan.fields["is_copy"]
        elif scope == "all":
            plan.fields["in_scope"] = torch.ones_like(plan.y, dtype=torch.bool)
        else:
            is_minority = torch.zeros(plan.num_classes, dtype=torch.bool, device=plan.y.device)
            is_minority[sorted(cfg["minority_classes"])] = True
            plan.fields["in_scope"] = is_minority[plan.y]
    return plan.fields["in_scope"]


def rotate_some(x: torch.Tensor, mask: torch.Tensor, max_deg: float, gen) -> torch.Tensor:
    """The rows in `mask` rotated by angles uniform in [-max_deg, max_deg]; a new tensor."""
    sel = mask.nonzero().squeeze(1)
    if len(sel):
        angles = (torch.rand(len(sel), generator=gen, device=x.device) * 2 - 1) * max_deg
        x = x.index_copy(0, sel, rotate(x.index_select(0, sel), angles))  # index_select: a copy per row
    return x


def augment(x: torch.Tensor, sigma: torch.Tensor, rotate_mask: torch.Tensor, cfg: dict, gen) -> torch.Tensor:
    """x: pixels in [0, 1]. Rotation of the rows in `rotate_mask` first (the noise is not rotated),
    then noise of std `sigma` per row: both transforms on one batch, outside a trial."""
    if cfg["rotation_deg"] > 0:
        x = rotate_some(x, rotate_mask, cfg["rotation_deg"], gen)
    if cfg["noise_sigma"] > 0 or cfg["noise_copies"]:
        x = add_noise(x, sigma, gen)
    return x


def add_noise(x: torch.Tensor, sigma: torch.Tensor, gen) -> torch.Tensor:
    """x + N(0, sigma_i^2) per sample i; a new tensor (the input is never changed)."""
    if x.device.type == "cpu":  # draw noise for the noisy images only (often under half the batch)
        sel = sigma.nonzero().squeeze(1)
        if len(sel):
            noise = torch.randn((len(sel), *x.shape[1:]), generator=gen, device=x.device)
            noise.mul_(sigma[sel].view(-1, *[1] * (x.dim() - 1)))
            x = x.index_add(0, sel, noise)
        return x
    # on a GPU a full-batch draw is cheaper than the host sync of nonzero()
    return x + torch.randn(x.shape, generator=gen, device=x.device) * sigma.view(-1, *[1] * (x.dim() - 1))


def rotate(x: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """Rotate each image of a batch (B, C, H, W) counter-clockwise by its angle, one affine grid for
    the whole batch (bilinear, zero fill) - the batched form of torchvision's RandomRotation."""
    rad = degrees.to(x.dtype) * (math.pi / 180)
    cos, sin = torch.cos(rad).view(-1, 1, 1, 1), torch.sin(rad).view(-1, 1, 1, 1)
    # grid_sample maps output coords to input coords: the inverse rotation; y points down in images.
    # This is the grid F.affine_grid makes for theta = [[cos, -sin, 0], [sin, cos, 0]], written out
    # as cos * (x, y) + sin * (-y, x), which avoids affine_grid's per-image 3x2 matrix products.
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
