"""IRM (Arjovsky et al. 2019) as a remedy: the IRMv1 penalty added to the loss, annealed in, with
the optimizer reset when the penalty switches on."""
from __future__ import annotations

from typing import Callable

from tuner.lazy import lazy
from tuner.remedies.base import Remedy, register
from tuner.settings import Param, Range, non_negative, one_of

torch = lazy("torch", globals())  # imported on first use (tuner.lazy): the driver's checks need no torch


@register
class IRM(Remedy):
    name = "irm"
    summary = "IRMv1 penalty (unbiased, over all pairs of distinct samples of each environment) with anneal-then-penalise"
    settings = {
        "irm_lambda": Param(0.0, float, non_negative, "IRM penalty weight after the anneal epochs (0 = off)",
                            label="IRM penalty weight λ", off=0.0,
                            search=Range(1e-2, 1e4, "log", grid=(0.01, 0.1, 1, 10, 100, 1000, 10000))),
        "irm_env": Param("batch", str, one_of("batch", "groups"),
                         "environments: the batch (the original study's), or minority vs majority classes",
                         label="IRM environments"),
        "irm_anneal_epochs": Param(0, int, non_negative, "epochs with penalty weight 1 before irm_lambda applies",
                                   label="IRM anneal (epochs)"),
    }
    min_batch = 2  # the estimate needs a pair of distinct samples

    def start_epoch(self, ctx):
        cfg = ctx.cfg
        if cfg["irm_anneal_epochs"] > 0 and ctx.epoch == cfg["irm_anneal_epochs"] + 1:
            ctx.optimizer = ctx.new_optimizer()  # the penalty switches on: Adam's moments are stale
        ctx.state["irm_weight"] = irm_weight(cfg, ctx.epoch)

    def penalty(self, loss, out, batch, ctx):
        w = ctx.state["irm_weight"]
        loss = loss + w * irm_environments_penalty(ctx.cfg, out, batch.y, ctx.loss, ctx.is_minority)
        return loss / w if w > 1.0 else loss  # keep gradient scale comparable once the penalty dominates


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
