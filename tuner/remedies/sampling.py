"""Remedies that add samples to each epoch: random over-sampling and noisy copies."""
from __future__ import annotations

import math

from tuner.lazy import lazy
from tuner.remedies.base import Copies, Remedy, register
from tuner.settings import Param, Range, one_of

torch = lazy("torch", globals())  # imported on first use (tuner.lazy): the driver's checks need no torch


def _variances(v):
    return None if all(isinstance(x, (int, float)) and x >= 0 for x in v) else "a list of variances >= 0"


@register
class RandomOverSampling(Remedy):
    name = "ros"
    summary = "random over-sampling of each minority class up to ros_target x the mean majority count, redrawn each epoch"
    settings = {"ros_target": Param(0.0, float, lambda v: None if 0 <= v <= 10 else "a ratio in [0, 10] (0 = off)",
                                    label="random over-sampling target", off=0.0,
                                    search=Range(0.2, 1.0, grid=(0.2, 0.4, 0.6, 0.8, 1.0))),
                "ros_rho": Param("mean_majority", str, one_of("mean_majority", "max_min"),
                                 "the count ros_target is a fraction of: the mean majority-class count, or the largest "
                                 "class count (max_min: the original studies' imbalance ratio rho = max / min)",
                                 label="ROS reference count")}

    def copies(self, cfg, c, members, ctx):
        majority = ctx["majority_counts"]
        if not majority:
            return []
        reference = max(ctx["counts"]) if cfg["ros_rho"] == "max_min" else sum(majority) / len(majority)
        extra = int(round(cfg["ros_target"] * reference)) - len(members)
        if extra <= 0:
            return []
        pick = torch.randint(len(members), (extra,), generator=ctx["gen"], device=members.device)
        return [Copies(members[pick])]


@register
class NoiseCopies(Remedy):
    name = "noise_copies"
    summary = "each minority image gets one extra copy per listed variance, with Gaussian noise of that variance"
    settings = {"noise_copies": Param(None, list, _variances, "noise variances of the copies, e.g. [0.1, ..., 0.9]",
                                      label="noisy copies per image", off=None)}

    def active(self, cfg):
        return bool(cfg["noise_copies"])

    def copies(self, cfg, c, members, ctx):
        # each copy carries its own noise whatever augment_scope says (`tuner.remedies.augmentation`)
        return [Copies(members, {"copy_sigma": math.sqrt(v)}) for v in cfg["noise_copies"]]
