"""Loss-side remedies: re-weighted, focal, LDAM, logit-adjusted and balanced-softmax losses,
deferred re-weighting (DRW) and Remix's label mixing.

Every loss is a `Loss`: per-sample terms l_i = terms(logits, y)_i and optional per-class weights w,
reduced as the weighted mean  sum_i w_{y_i} l_i / sum_i w_{y_i}  (PyTorch's weighted cross-entropy
convention, so only the ratios of the weights matter). Keeping the terms separate from the weights
is what lets
  - every loss take any per-class weights (minority_weight, class_weights, cb_beta),
  - DRW swap the weights at an epoch (`Loss.at`),
  - Remix mix the terms of two labels per sample (`Loss.mixed`).
Makers: LOSSES[name](cfg, counts, weight) -> Loss, where counts are the per-class training counts
(before any over-sampling) and weight the hand-set per-class weights or None.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from tuner.errors import ConfigError
from tuner.lazy import lazy

torch = lazy("torch", globals())  # imported on first use (tuner.lazy): the driver's checks need no torch
F = lazy("torch.nn.functional", globals())

DRW_BETA = 0.9999  # Cao et al.'s beta for the deferred class-balanced weights


def effective_number(counts, beta: float) -> torch.Tensor:
    """Cui et al. 2019: E_n = (1 - beta^n) / (1 - beta), the expected number of distinct samples."""
    n = torch.as_tensor(counts, dtype=torch.float64)
    return (1 - beta**n) / (1 - beta)


def class_balanced_weights(counts, beta: float) -> torch.Tensor:
    """Weights proportional to 1 / E_n, normalised to sum to the number of classes."""
    w = 1 / effective_number(counts, beta)
    return (w * len(w) / w.sum()).float()


def ldam_margins(counts, max_margin: float) -> torch.Tensor:
    """Cao et al. 2019: m_j = C / n_j^(1/4), with C such that the largest margin is max_margin."""
    m = torch.as_tensor(counts, dtype=torch.float64) ** -0.25
    return (m * (max_margin / m.max())).float()


def log_prior(counts) -> torch.Tensor:
    n = torch.as_tensor(counts, dtype=torch.float64)
    return torch.log(n / n.sum()).float()


class Loss:
    """A batch loss: the class-weighted mean of per-sample terms (see the module docstring)."""

    def __init__(self, terms: Callable, weight=None, deferred=None, drw_epoch: int = 0):
        self.terms = terms  # (logits, y) -> per-sample loss, unweighted
        self.weight = weight  # per-class weights or None
        self.deferred = deferred  # DRW: the weights from epoch `drw_epoch` on
        self.drw_epoch = drw_epoch

    def to(self, device) -> "Loss":
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return Loss(self.terms, move(self.weight), move(self.deferred), self.drw_epoch)

    def at(self, epoch: int) -> "Loss":
        """The loss of epoch `epoch` (1-based): DRW's weights switch on at `drw_epoch`."""
        if self.drw_epoch and epoch >= self.drw_epoch:
            return Loss(self.terms, self.deferred)
        return self

    def __call__(self, logits, y):
        per_sample = self.terms(logits, y)
        if self.weight is None:
            return per_sample.mean()
        w = self.weight[y]
        return (w * per_sample).sum() / w.sum()

    def mixed(self, logits, y_a, y_b, lam):
        """Loss against the soft label lam * y_a + (1 - lam) * y_b, lam per sample. Weighted: each
        label's term carries its class weight, normalised by the summed weight of the mix."""
        la, lb = self.terms(logits, y_a), self.terms(logits, y_b)
        wa, wb = (1.0, 1.0) if self.weight is None else (self.weight[y_a], self.weight[y_b])
        return (lam * wa * la + (1 - lam) * wb * lb).sum() / (lam * wa + (1 - lam) * wb).sum()


def for_epoch(loss_fn, epoch: int):
    """The epoch's loss; plain callables (no schedule) pass through."""
    return loss_fn.at(epoch) if isinstance(loss_fn, Loss) else loss_fn


# --- per-sample terms ------------------------------------------------------------------------

def ce_terms(logits, y):
    return F.cross_entropy(logits, y, reduction="none")


def focal_terms(gamma: float) -> Callable:
    """Lin et al. 2017: -(1 - p_t)^gamma log p_t; gamma = 0 is cross-entropy."""

    def terms(logits, y):
        logp = F.log_softmax(logits.float(), 1).gather(1, y[:, None]).squeeze(1)
        return -((1 - logp.exp()).clamp(min=0) ** gamma) * logp

    return terms


def _like(t: torch.Tensor) -> Callable:
    """t on the logits' device and dtype, copied once per device (not once per batch)."""
    cache = {}

    def get(logits):
        key = (logits.device, logits.dtype)
        if key not in cache:
            cache[key] = t.to(logits.device, logits.dtype)
        return cache[key]

    return get


def shifted_ce_terms(shift: torch.Tensor) -> Callable:
    """Cross-entropy of logits + a per-class shift (logit adjustment, balanced softmax)."""
    shift = _like(shift)
    return lambda logits, y: F.cross_entropy(logits + shift(logits), y, reduction="none")


def ldam_terms(margins: torch.Tensor, s: float) -> Callable:
    """Cross-entropy of s * (logits - m_y at the true class)."""
    margins = _like(margins)

    def terms(logits, y):
        m = margins(logits)
        return F.cross_entropy(s * (logits - F.one_hot(y, logits.shape[1]) * m[y, None]), y, reduction="none")

    return terms


# --- makers: LOSSES[name](cfg, counts, weight) -> Loss -----------------------------------------

def _weighted(terms, cfg, counts, weight, default_beta=None) -> Loss:
    """Attach the per-class weights: hand-set ones, else class-balanced ones (cb_beta, or
    default_beta for loss_fn=cb); with DRW, none until drw_epoch, then class-balanced ones."""
    beta = cfg["cb_beta"] if cfg["cb_beta"] is not None else default_beta
    if cfg["drw_epoch"] > 0:
        return Loss(terms, None, class_balanced_weights(counts, beta if beta is not None else DRW_BETA), cfg["drw_epoch"])
    if weight is None and beta is not None:
        weight = class_balanced_weights(counts, beta)
    return Loss(terms, weight)


def _prior_shift(counts, scale: float) -> torch.Tensor:
    return scale * log_prior(counts)


LOSSES: dict[str, Callable] = {
    "ce": lambda cfg, counts, w: _weighted(ce_terms, cfg, counts, w),
    "cb": lambda cfg, counts, w: _weighted(ce_terms, cfg, counts, w, default_beta=DRW_BETA),
    "focal": lambda cfg, counts, w: _weighted(focal_terms(cfg["focal_gamma"]), cfg, counts, w),
    "ldam": lambda cfg, counts, w: _weighted(
        ldam_terms(ldam_margins(counts, cfg["ldam_max_margin"]), cfg["ldam_s"]), cfg, counts, w),
    # Menon et al. 2021, loss form: logits + tau * log(prior)
    "logit_adjusted": lambda cfg, counts, w: Loss(shifted_ce_terms(_prior_shift(counts, cfg["la_tau"]))),
    # Ren et al. 2020: logits + log(n_j); the same as logit_adjusted with tau = 1 (log N cancels)
    "balanced_softmax": lambda cfg, counts, w: Loss(shifted_ce_terms(torch.log(torch.as_tensor(counts, dtype=torch.float32)))),
}

PRIOR_LOSSES = ("logit_adjusted", "balanced_softmax")  # already correct for the prior in the logits


def check(cfg: dict) -> None:
    """Loss combinations that correct the same class prior twice, or that cannot be computed."""
    hand = [f"minority_weight={cfg['minority_weight']:g}"] if cfg["minority_weight"] != 1.0 else []
    hand += ["class_weights"] if cfg["class_weights"] is not None else []
    cb = cfg["cb_beta"] is not None or cfg["loss_fn"] == "cb"
    if cfg["loss_fn"] in PRIOR_LOSSES:
        reweight = hand + ([f"cb_beta={cfg['cb_beta']:g}"] if cfg["cb_beta"] is not None else [])
        reweight += [f"drw_epoch={cfg['drw_epoch']}"] if cfg["drw_epoch"] > 0 else []
        if reweight:
            raise ConfigError(
                f"loss_fn={cfg['loss_fn']} with {reweight[0]}: the loss already corrects for the class prior, "
                "re-weighting corrects it twice; use loss_fn=ce, focal or ldam for re-weighting"
            )
    if hand and (cb or cfg["drw_epoch"] > 0):
        what = "drw_epoch" if cfg["drw_epoch"] > 0 else ("loss_fn=cb" if cfg["cb_beta"] is None else "cb_beta")
        raise ConfigError(
            f"{hand[0]} with {what}: {what} sets the per-class weights from the training counts; "
            "use either hand-set weights or class-balanced ones"
        )
    if cfg["remix_alpha"] > 0 and cfg["irm_lambda"] > 0:
        raise ConfigError(
            f"remix_alpha={cfg['remix_alpha']:g} with irm_lambda={cfg['irm_lambda']:g}: Remix mixes images across "
            "IRM's environments; use one of them"
        )


# --- Remix (Chou et al. 2020) ------------------------------------------------------------------

def remix_labels(lam, n_a, n_b, kappa: float, tau: float):
    """Label weight of y_a for images mixed as lam * x_a + (1 - lam) * x_b: all of it goes to the
    minority class when the other is kappa times more frequent and contributes less than tau of
    the pixels; otherwise it is lam, as in mixup."""
    ratio = n_a / n_b
    lam_y = torch.where((ratio >= kappa) & (lam < tau), torch.zeros_like(lam), lam)
    return torch.where((ratio <= 1 / kappa) & (1 - lam < tau), torch.ones_like(lam), lam_y)


class Remix:
    """Remix for one epoch, batched on the batch's device: each image is mixed with another of the
    batch (a random permutation) with lam ~ Beta(alpha, alpha) per image."""

    def __init__(self, cfg: dict, counts: torch.Tensor, gen: torch.Generator):
        self.alpha, self.kappa, self.tau = cfg["remix_alpha"], cfg["remix_kappa"], cfg["remix_tau"]
        self.counts = counts.float()
        self.gen = gen
        # torch draws Beta variates only from the global RNG; a NumPy generator seeded from the
        # trial's generator keeps lam reproducible and resumable from a checkpoint
        self.rng = np.random.default_rng(int(torch.randint(2**62, (1,), generator=gen, device=gen.device)))

    def __call__(self, x, y):
        """-> mixed images, the partner labels y_b and the label weight of y."""
        lam = torch.from_numpy(self.rng.beta(self.alpha, self.alpha, len(y))).to(x.device, x.dtype)
        perm = torch.randperm(len(y), generator=self.gen, device=self.gen.device).to(x.device)
        lam_x = lam.view(-1, *[1] * (x.dim() - 1))
        x = lam_x * x + (1 - lam_x) * x[perm]
        y_b = y[perm]
        return x, y_b, remix_labels(lam, self.counts[y], self.counts[y_b], self.kappa, self.tau)

