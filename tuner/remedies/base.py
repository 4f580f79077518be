"""What a remedy is, and how the training loop meets it.

A remedy is one object (a `Remedy` subclass, registered with `register`) that owns
  - its settings: `Param`s with default, check, label (with unit), search range and "off" value;
  - when it is on (`active`: by default, when any switch setting differs from its "off" value);
  - its behaviour, as optional hooks the training loop calls for every active remedy in
    registry order, never by name:
        class_weights(cfg, num_classes)      per-class loss weights
        losses                               {loss_fn name: maker(cfg, counts, weight) -> Loss}
        sample(cfg, by_class, gen)           replace the epoch's sample (one remedy at most)
        copies(cfg, c, members, ctx)         extra samples of minority class c in the epoch
        finish_plan(plan, cfg)               per-sample settings over the epoch's sample
        start_epoch(ctx)                     switches at an epoch (DRW, IRM's optimizer reset, Remix)
        transform(batch, ctx)                change a batch (augmentation, mixing), in `transform_order`
        penalty(loss, out, batch, ctx)       add to the loss (IRM)
        adjust_logits(logits, cfg, counts)   change the logits at evaluation (post-hoc logit adjustment)
        after_step(ctx)                      after each optimizer step (a weight average's update)
        eval_model(model, ctx) -> model      the model the epoch's evaluation reads (the averaged weights)
        checkpoint(ctx) -> dict              the remedy's state across epochs, saved with the trial's
                                             checkpoint and given back on resume as ctx.restored[name]
    and `min_batch`, the smallest batch the remedy can use (IRM needs a pair).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from tuner.errors import ConfigError
from tuner.lazy import lazy
from tuner.settings import Param

torch = lazy("torch", globals())  # imported on first use (tuner.lazy): the driver's checks need no torch


class Remedy:
    name: str = ""
    summary: str = ""
    settings: dict[str, Param] = {}
    transform_order: int = 0  # batch transforms run in this order (rotation before noise before mixing)
    min_batch: int = 1
    losses: dict[str, Callable] = {}

    def active(self, cfg: dict) -> bool:
        return any(cfg[k] != p.off for k, p in self.settings.items() if p.is_switch)

    def runs(self, cfg: dict) -> bool:
        """Whether its hooks run: usually when it is active (noise also serves noisy copies)."""
        return self.active(cfg)

    def check(self, cfg: dict) -> None:
        """Cross-setting checks (one line naming the value); called for every config."""

    # hooks: a remedy defines the ones it needs (`hooks` finds them)
    class_weights = copies = sample = finish_plan = start_epoch = transform = penalty = adjust_logits = None
    after_step = eval_model = checkpoint = None


REMEDIES: dict[str, Remedy] = {}  # name -> remedy, in registration order (the `remedies` column's order)
LOSSES: dict[str, Callable] = {}  # loss_fn name -> maker(cfg, counts, weight) -> Loss


def register(remedy: Remedy | type) -> Remedy:
    """Add a remedy (an instance, or a class to instantiate) to the registry; returns it. A second
    remedy of the same name, or a setting another remedy or the core already declares, is refused."""
    from tuner.settings import CORE

    r = remedy() if isinstance(remedy, type) else remedy
    if r.name in REMEDIES:
        raise ValueError(f"remedy {r.name!r} registered twice")
    taken = set(CORE) | {k for other in REMEDIES.values() for k in other.settings}
    clash = sorted(set(r.settings) & taken)
    if clash:
        raise ValueError(f"remedy {r.name!r}: setting {clash[0]!r} is already declared")
    REMEDIES[r.name] = r
    LOSSES.update(r.losses)
    return remedy


def unregister(name: str) -> None:
    """Remove a remedy (tests that register one of their own)."""
    r = REMEDIES.pop(name)
    for k in r.losses:
        LOSSES.pop(k, None)


def extra() -> list[Remedy]:
    """The remedies registered from outside the package (an experiment file, a test, a notebook):
    a search ships them to its Ray workers with the trainable (`install`)."""
    return [r for r in REMEDIES.values() if not type(r).__module__.startswith("tuner.")]


def install(remedies: list[Remedy]) -> None:
    """In a worker: register the driver's extra remedies that this process does not have yet."""
    for r in remedies or ():
        if r.name not in REMEDIES:
            register(r)


def params() -> dict[str, Param]:
    return {k: p for r in REMEDIES.values() for k, p in r.settings.items()}


def setting(name: str) -> Param:
    for r in REMEDIES.values():
        if name in r.settings:
            return r.settings[name]
    raise KeyError(f"no remedy declares the setting {name!r}")


def search_range(name: str):
    """The declared search range of a remedy setting: what an experiment sweeps (or narrows)."""
    p = setting(name)
    if p.search is None:
        raise KeyError(f"setting {name!r} declares no search range")
    return p.search


def active(cfg: dict) -> list[str]:
    return [r.name for r in REMEDIES.values() if r.active(cfg)]


def running(cfg: dict) -> list[Remedy]:
    """The remedies whose hooks run for this config, in registry order."""
    return [r for r in REMEDIES.values() if r.runs(cfg)]


def hooks(remedies: list[Remedy], name: str) -> list[Callable]:
    return [getattr(r, name) for r in remedies if getattr(r, name) is not None]


def check(cfg: dict) -> None:
    if cfg["loss_fn"] not in LOSSES:
        raise ConfigError(f"unknown remedy loss_fn={cfg['loss_fn']!r}: choose one of {', '.join(sorted(LOSSES))}")
    for r in REMEDIES.values():
        r.check(cfg)
    samplers = [r.name for r in running(cfg) if r.sample is not None]
    if len(samplers) > 1:
        raise ConfigError(f"{samplers[0]} with {samplers[1]}: both replace the epoch's sample; use one of them")


# --- the loss ----------------------------------------------------------------------------------

def class_weight_vector(cfg: dict, num_classes: int = 10) -> torch.Tensor | None:
    for hook in hooks(running(cfg), "class_weights"):
        w = hook(cfg, num_classes)
        if w is not None:
            return w
    return None


def make_loss(cfg: dict, counts, device) -> Callable:
    from tuner import losses

    w = class_weight_vector(cfg, len(counts))
    loss = LOSSES[cfg["loss_fn"]](cfg, counts, None if w is None else w.to(device))
    return loss.to(device) if isinstance(loss, losses.Loss) else loss  # its margins and weights too


# --- the epoch's sample and the batches --------------------------------------------------------

@dataclass
class EpochPlan:
    """The epoch's training sample, shuffled: indices into the training images, their labels, and
    per-sample fields the remedies set (is_copy, copy_sigma, sigma, rotate, ...), all on the device."""

    idx: torch.Tensor
    y: torch.Tensor
    num_classes: int
    fields: dict[str, torch.Tensor] = field(default_factory=dict)

    def __getattr__(self, name):  # plan.sigma, plan.rotate, ... (kept for callers of the earlier API)
        try:
            return self.__dict__["fields"][name]
        except KeyError:
            raise AttributeError(name) from None


@dataclass
class Copies:
    """Extra samples of one class for this epoch, each with optional per-sample field values."""

    members: torch.Tensor
    fields: dict[str, float] = field(default_factory=dict)


COPY_FIELDS = {"copy_sigma": float("nan")}  # field -> value of the samples that do not set it


def epoch_plan(cfg: dict, by_class: list[torch.Tensor], gen: torch.Generator,
               remedies: list[Remedy] | None = None) -> EpochPlan:
    """Every training image once, plus the minority copies the remedies add (`copies`), shuffled;
    or the sample a sampler remedy draws instead (`sample`); then each remedy's `finish_plan`."""
    remedies = running(cfg) if remedies is None else remedies
    samplers = hooks(remedies, "sample")
    plan = samplers[0](cfg, by_class, gen) if samplers else _every_image_plus_copies(cfg, by_class, gen, remedies)
    for hook in hooks(remedies, "finish_plan"):
        hook(plan, cfg)
    return plan


def _every_image_plus_copies(cfg, by_class, gen, remedies) -> EpochPlan:
    device = by_class[0].device
    minority = set(cfg["minority_classes"])
    counts = [len(m) for m in by_class]
    ctx = {"majority_counts": [n for c, n in enumerate(counts) if c not in minority], "counts": counts, "gen": gen}
    parts: list[tuple[int, bool, Copies]] = [(c, False, Copies(m)) for c, m in enumerate(by_class)]
    copy_hooks = hooks(remedies, "copies")
    for c in sorted(minority):
        for hook in copy_hooks:  # registry order, class by class: the order fixes the shuffle's result
            parts += [(c, True, cp) for cp in hook(cfg, c, by_class[c], ctx)]
    idx = torch.cat([p.members for _, _, p in parts])
    y = torch.cat([torch.full((len(p.members),), c, dtype=torch.long, device=device) for c, _, p in parts])
    is_copy = torch.cat([torch.full((len(p.members),), copy, dtype=torch.bool, device=device) for _, copy, p in parts])
    fields = {"is_copy": is_copy}
    for name, missing in COPY_FIELDS.items():
        fields[name] = torch.cat([torch.full((len(p.members),), p.fields.get(name, missing), device=device)
                                  for _, _, p in parts])
    perm = torch.randperm(len(idx), generator=gen, device=device)
    return EpochPlan(idx[perm], y[perm], len(by_class), {k: v[perm] for k, v in fields.items()})


@dataclass
class Batch:
    """One training batch: inputs, labels, the plan's per-sample fields for these samples, and how
    its loss is taken (`loss_of(out, loss_fn)`; default `loss_fn(out, y)`; Remix mixes two labels)."""

    x: torch.Tensor
    y: torch.Tensor
    fields: dict[str, torch.Tensor] = field(default_factory=dict)
    loss_of: Callable | None = None

    def loss(self, out, loss_fn) -> torch.Tensor:
        return loss_fn(out, self.y) if self.loss_of is None else self.loss_of(out, loss_fn)


@dataclass
class EpochContext:
    """What the hooks of one epoch see and may change (the loop reads the optimizer back)."""

    cfg: dict
    epoch: int
    gen: torch.Generator
    counts: torch.Tensor  # per-class training counts, on the device
    is_minority: torch.Tensor  # per-class bool, on the device
    loss: Callable  # the loss of this epoch (a remedy may swap it: DRW)
    base_loss: Callable
    optimizer: Any
    new_optimizer: Callable[[], Any]
    state: dict = field(default_factory=dict)  # per-remedy scratch for the epoch (Remix's sampler)
    model: Any = None  # the model being trained
    trial: dict = field(default_factory=dict)  # per-remedy state kept across the trial's epochs (the same dict)
    restored: dict = field(default_factory=dict)  # remedy name -> its `checkpoint` from the checkpoint resumed
