"""Remedies that change how long and how the model trains, and how it is read: a cosine
learning-rate schedule, post-hoc logit adjustment (Menon et al. 2021, the test-time form), and an
exponential moving average of the weights (the averaged model is the one evaluated)."""
from __future__ import annotations

import math

from tuner.lazy import lazy
from tuner.remedies.base import Remedy, register
from tuner.settings import Param, Range, non_negative, one_of

torch = lazy("torch", globals())  # imported on first use (tuner.lazy): the driver's checks need no torch


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


def _decay(v):
    return None if 0 <= v < 1 else "a decay in [0, 1) (0 = off)"


@register
class WeightEMA(Remedy):
    name = "weight_ema"
    summary = ("exponential moving average of the weights (torch.optim.swa_utils.AveragedModel, EMA): after each "
               "step ema = ema_decay * ema + (1 - ema_decay) * weights; the epoch's evaluation reads the average")
    settings = {"ema_decay": Param(0.0, float, _decay, "EMA decay per optimizer step (0 = off; 0.999 averages over "
                                   "about the last 1,000 steps)", label="weight EMA decay", off=0.0,
                                   search=Range(0.99, 0.9995, grid=(0.99, 0.995, 0.999)))}

    def start_epoch(self, ctx):
        if self.name not in ctx.trial:  # once per trial; on resume, from the checkpoint
            from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

            ema = AveragedModel(ctx.model, multi_avg_fn=get_ema_multi_avg_fn(ctx.cfg["ema_decay"]), use_buffers=True)
            if self.name in ctx.restored:
                ema.load_state_dict(ctx.restored[self.name])
            ctx.trial[self.name] = ema

    def after_step(self, ctx):
        ctx.trial[self.name].update_parameters(ctx.model)

    def eval_model(self, model, ctx):
        return ctx.trial[self.name].module

    def checkpoint(self, ctx):
        return ctx.trial[self.name].state_dict()
