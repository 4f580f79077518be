"""Remedies that change how long and how the model trains, and how its logits are read: a cosine
learning-rate schedule and post-hoc logit adjustment (Menon et al. 2021, the test-time form)."""
from __future__ import annotations

import math

import torch

from tuner.remedies.base import Remedy, register
from tuner.settings import Param, Range, non_negative, one_of


@register
class CosineSchedule(Remedy):
    name = "cosine_lr"
    summary = "learning rate lr * (1 + cos(pi * (epoch - 1) / epochs)) / 2 in each epoch (lr at the first, near 0 at the last)"
    settings = {"lr_schedule": Param("constant", str, one_of("constant", "cosine"), "the learning rate over the epochs",
                                     label="learning-rate schedule", off="constant")}

    def start_epoch(self, ctx):
        cfg = ctx.cfg
        lr = cfg["lr"] * (1 + math.cos(math.pi * (ctx.epoch - 1) / cfg["epochs"])) / 2
        for group in ctx.optimizer.param_groups:
            group["lr"] = lr


@register
class PosthocLogitAdjustment(Remedy):
    name = "posthoc_logit_adjustment"
    summary = ("post-hoc logit adjustment (Menon et al. 2021): the classifier decides on logits - posthoc_tau * "
               "log(prior), the prior the training class frequencies; training is unchanged")
    settings = {"posthoc_tau": Param(0.0, float, non_negative, "strength of the test-time prior correction (0 = off)",
                                     label="post-hoc adjustment τ", off=0.0, search=Range(0.0, 2.0, grid=(0.0, 0.5, 1.0, 1.5)))}

    def adjust_logits(self, logits, cfg, counts):
        prior = counts.to(torch.float64) / counts.sum()
        return logits - (cfg["posthoc_tau"] * torch.log(prior.clamp(min=1e-12))).to(logits.dtype)
