"""Remix (Chou et al. 2020): mixup whose label goes to the minority image (maths: `tuner.losses`)."""
from __future__ import annotations

from tuner import losses
from tuner.remedies.base import Remedy, register
from tuner.settings import Param, Range, non_negative


@register
class Remix(Remedy):
    name = "remix"
    summary = ("Remix (Chou et al. 2020): mixup, lam ~ Beta(alpha, alpha), label to the minority image when "
               "n_i / n_j >= remix_kappa and lam < remix_tau")
    settings = {
        "remix_alpha": Param(0.0, float, non_negative, "Beta(alpha, alpha) of the mixing weight (0 = off)",
                             label="Remix α", off=0.0, search=Range(0.1, 2.0, "log")),
        "remix_kappa": Param(3.0, float, lambda v: None if v >= 1 else "a count ratio >= 1", label="Remix κ",
                             search=Range(1.5, 10.0, "log")),
        "remix_tau": Param(0.5, float, lambda v: None if 0 <= v <= 1 else "a fraction in [0, 1]", label="Remix τ",
                           search=Range(0.3, 0.7)),
    }
    transform_order = 2  # mixes the augmented images

    def start_epoch(self, ctx):
        # pairs images of a batch; its label rule needs the training counts (draws from the trial's generator)
        ctx.state["remix"] = losses.Remix(ctx.cfg, ctx.counts, ctx.gen)

    def transform(self, batch, ctx):
        x, y_b, lam_y = ctx.state["remix"](batch.x, batch.y)
        y = batch.y
        batch.x = x
        batch.loss_of = lambda out, loss_fn: loss_fn.mixed(out, y, y_b, lam_y)
        return batch
