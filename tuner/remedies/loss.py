"""Remedies that are a loss function or a weighting of it: the loss by name, class-balanced
weights, focal, LDAM, DRW, logit adjustment, balanced softmax (their maths: `tuner.losses`)."""
from __future__ import annotations

from tuner import losses
from tuner.remedies.base import REMEDIES, Remedy, register
from tuner.settings import Param, Range, non_negative, positive


@register
class LossByName(Remedy):
    name = "loss"
    summary = "the loss function by name"
    settings = {"loss_fn": Param("ce", str, None, "loss function by name", label="loss function", off="ce")}
    losses = {"ce": losses.LOSSES["ce"]}

    def active(self, cfg):  # a named loss shows under its own remedy's name
        return cfg["loss_fn"] != "ce" and cfg["loss_fn"] not in REMEDIES

    def check(self, cfg):
        losses.check(cfg)


@register
class ClassBalanced(Remedy):
    name = "cb"
    summary = "class-balanced weights (Cui et al. 2019) ~ 1 / effective number (1 - beta^n) / (1 - beta), with any loss"
    settings = {"cb_beta": Param(None, float, lambda v: None if 0 <= v < 1 else "a beta in [0, 1) (None = off)",
                                 "class-balanced weights' beta; loss_fn=cb uses 0.9999 when unset",
                                 label="class-balanced β", off=None, search=Range(0.9, 0.9999))}
    losses = {"cb": losses.LOSSES["cb"]}

    def active(self, cfg):
        return cfg["cb_beta"] is not None or cfg["loss_fn"] == "cb"


class _NamedLoss(Remedy):
    """A remedy that is a loss function: on when loss_fn names it."""

    def active(self, cfg):
        return cfg["loss_fn"] == self.name


@register
class Focal(_NamedLoss):
    name = "focal"
    summary = "focal loss -(1 - p_t)^gamma log p_t (loss_fn=focal), with any class weights"
    settings = {"focal_gamma": Param(2.0, float, non_negative, "focusing parameter (0 = cross-entropy)",
                                     label="focal γ", search=Range(0.0, 5.0))}
    losses = {"focal": losses.LOSSES["focal"]}


@register
class LDAM(_NamedLoss):
    name = "ldam"
    summary = "LDAM (Cao et al. 2019): cross-entropy of s * (logits - m_y), m_j ~ n_j^(-1/4) (loss_fn=ldam)"
    settings = {
        "ldam_max_margin": Param(0.5, float, positive, "margin of the rarest class", label="LDAM largest margin",
                                 search=Range(0.1, 1.0)),
        "ldam_s": Param(30.0, float, positive, "logit scale", label="LDAM logit scale s", search=Range(1.0, 30.0, "log")),
    }
    losses = {"ldam": losses.LOSSES["ldam"]}


@register
class DeferredReweighting(Remedy):
    name = "drw"
    summary = ("deferred re-weighting: no class weights until epoch drw_epoch, class-balanced ones "
               "(beta cb_beta or 0.9999) from it on")
    settings = {"drw_epoch": Param(0, int, non_negative, "first epoch (1-based) with class-balanced weights (0 = off)",
                                   label="DRW epoch", off=0, search=Range(2, 10, "int"))}

    def start_epoch(self, ctx):
        ctx.loss = losses.for_epoch(ctx.base_loss, ctx.epoch)  # the loss carries both weightings


@register
class LogitAdjusted(_NamedLoss):
    name = "logit_adjusted"
    summary = "logit-adjusted loss (Menon et al. 2021): cross-entropy of logits + la_tau * log(prior) (loss_fn=logit_adjusted)"
    settings = {"la_tau": Param(1.0, float, non_negative, "strength of the prior adjustment",
                                label="logit adjustment τ", search=Range(0.0, 3.0, grid=(0.0, 1.0, 2.0, 3.0)))}
    losses = {"logit_adjusted": losses.LOSSES["logit_adjusted"]}


@register
class BalancedSoftmax(_NamedLoss):
    name = "balanced_softmax"
    summary = "balanced softmax (Ren et al. 2020): cross-entropy of logits + log(n_j) (loss_fn=balanced_softmax)"
    settings = {}
    losses = {"balanced_softmax": losses.LOSSES["balanced_softmax"]}


