"""Hand-set class weights of the loss: `minority_weight`, or one weight per class."""
from __future__ import annotations

from tuner.lazy import lazy
from tuner.remedies.base import Remedy, register
from tuner.settings import Param, Range, positive

torch = lazy("torch", globals())  # imported on first use (tuner.lazy): the driver's checks need no torch


def _weights(v):
    # one per class: 10 on the built-in datasets (tuner.config), the class count on own data (tuner.owndata)
    if v and all(isinstance(x, (int, float)) and x > 0 for x in v):
        return None
    return "a list of per-class weights, one per class, each > 0"


@register
class WeightedLoss(Remedy):
    name = "weighted_loss"
    summary = "cross-entropy weight of the minority classes (majority 1), or a full per-class vector"
    settings = {
        "minority_weight": Param(1.0, float, positive, "loss weight of each minority class",
                                 label="minority-class loss weight (×)", off=1.0,
                                 search=Range(2, 10, grid=(2, 3, 4, 5, 6, 7, 8, 9, 10))),
        "class_weights": Param(None, list, _weights, "per-class loss weights (overrides minority_weight)",
                               label="per-class loss weights", off=None),
    }

    def class_weights(self, cfg, num_classes):
        if cfg["class_weights"] is not None:
            return torch.tensor(cfg["class_weights"], dtype=torch.float32)
        if cfg["minority_weight"] == 1.0:
            return None
        w = torch.ones(num_classes)
        w[list(cfg["minority_classes"])] = cfg["minority_weight"]
        return w
