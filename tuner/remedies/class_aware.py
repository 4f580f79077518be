"""Class-aware sampling: each epoch's sample drawn class by class with probability ~ n_c^q."""
from __future__ import annotations

from tuner.errors import ConfigError
from tuner.lazy import lazy
from tuner.remedies.base import EpochPlan, Remedy, register
from tuner.settings import Param, Range

torch = lazy("torch", globals())  # imported on first use (tuner.lazy): the driver's checks need no torch


@register
class ClassAwareSampling(Remedy):
    name = "class_aware_sampling"
    summary = "each epoch: as many draws as training images, class c with probability ~ n_c^sampling_q (0 balanced, 1 natural)"
    settings = {"sampling_q": Param(None, float, lambda v: None if 0 <= v <= 1 else "a power in [0, 1] (None = off)",
                                    "class sampling power q (None = every image once per epoch)",
                                    label="class sampling power q", off=None,
                                    search=Range(0.0, 1.0, grid=(0.0, 0.5, 1.0)))}

    def check(self, cfg):
        q = cfg["sampling_q"]
        if q is not None and (cfg["ros_target"] > 0 or cfg["noise_copies"]):
            other = f"ros_target={cfg['ros_target']:g}" if cfg["ros_target"] > 0 else "noise_copies"
            raise ConfigError(f"sampling_q={q:g} with {other}: both choose the epoch's sample; set only one of them")
        if q is not None and cfg["augment_scope"] == "copies" and (cfg["noise_sigma"] > 0 or cfg["rotation_deg"] > 0):
            raise ConfigError(
                f"augment_scope='copies' with sampling_q={q:g}: class-aware sampling makes no copies; "
                "use augment_scope=minority or all"
            )

    def sample(self, cfg, by_class, gen) -> EpochPlan:
        return class_aware_plan(cfg, by_class, gen)


def class_sampling_probs(counts, q: float) -> torch.Tensor:
    """Class-aware sampling: P(class c) = n_c^q / sum_k n_k^q (q = 0 balanced, q = 1 natural)."""
    n = torch.as_tensor(counts, dtype=torch.float64)
    p = torch.where(n > 0, n.clamp(min=1) ** q, torch.zeros_like(n))
    return p / p.sum()


def class_aware_plan(cfg: dict, by_class: list[torch.Tensor], gen: torch.Generator) -> EpochPlan:
    """The sampler family that contains ROS: as many draws as training images, each a class drawn
    with `class_sampling_probs`, then an image of that class uniformly; all on the device."""
    device = by_class[0].device
    counts = torch.tensor([len(m) for m in by_class], device=device)
    n = int(counts.sum())
    probs = class_sampling_probs(counts.cpu(), cfg["sampling_q"]).to(device, torch.float32)
    y = torch.multinomial(probs, n, replacement=True, generator=gen)
    start = torch.cumsum(counts, 0) - counts
    pick = start[y] + (torch.rand(n, generator=gen, device=device) * counts[y]).long().clamp(max=counts[y] - 1)
    idx = torch.cat(by_class)[pick]
    # no copies here ("copies" with augmentation is refused by `check`)
    return EpochPlan(idx, y, len(by_class), {"is_copy": torch.zeros_like(y, dtype=torch.bool)})
