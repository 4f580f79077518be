"""The torch modules of the `digit_pairs` study (`tuner.pairs` registers the models that build them).
Apart from the study's registrations so that reading them (the driver's checks) imports no torch
(`tuner.lazy`)."""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

HIDDEN = 100  # width of every hidden fully connected layer of the study
DROPOUT = 0.4


class PairOut(NamedTuple):
    logits: torch.Tensor  # (B, 2) pair logits; class 1 = first digit <= second
    digits: torch.Tensor | None  # (B, 2, 10) digit logits of the two images, for models with digit heads
    pred: torch.Tensor  # (B,) predicted target


def as_pair_out(out) -> PairOut:
    """Any registered model works on pairs: a plain logit tensor predicts by argmax."""
    return out if isinstance(out, PairOut) else PairOut(out, None, out.argmax(1))


def head(n_in: int, num_classes: int, dropout: float = 0.0) -> list[nn.Module]:
    drop = [nn.Dropout(dropout)] if dropout else []
    return [nn.Flatten(), *drop, nn.Linear(n_in, HIDDEN), nn.ReLU(), *drop, nn.Linear(HIDDEN, num_classes)]


def conv(c_in: int, c_out: int, padding: int, bn: bool) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=padding), *([nn.BatchNorm2d(c_out)] if bn else []), nn.ReLU()]


def padded_trunk(c: int, bn: bool) -> list[nn.Module]:
    """Two padded convs, one max-pool after the second: 14x14 -> 16 x 7x7."""
    return [*conv(c, 8, 1, bn), *conv(8, 16, 1, bn), nn.MaxPool2d(2)]


class Residual(nn.Module):
    """relu(x + bn(conv(relu(bn(conv(x)))))) at 16 channels."""

    def __init__(self, channels: int = 16):
        super().__init__()
        self.body = nn.Sequential(*conv(channels, channels, 1, True), nn.Conv2d(channels, channels, 3, padding=1),
                                  nn.BatchNorm2d(channels))

    def forward(self, x):
        return F.relu(x + self.body(x))


def digit_net(h: int, w: int) -> nn.Sequential:
    """One 1xHxW digit -> 10 digit logits: the padded trunk with batch norm and dropout."""
    return nn.Sequential(*padded_trunk(1, True), *head(16 * (h // 2) * (w // 2), 10, DROPOUT))


def each_digit(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(B, 2, H, W) -> (B, 2, 10): the same network (shared weights) on both digits, in one batch."""
    b, two, h, w = x.shape
    return net(x.reshape(b * two, 1, h, w)).view(b, two, -1)


class Siamese(nn.Module):
    """Shared digit network on each image; a small MLP compares the two 10-vectors."""

    def __init__(self, input_shape, num_classes: int, aux: bool):
        super().__init__()
        _, h, w = input_shape
        self.loss_kind = "aux" if aux else "pair"
        self.digit = digit_net(h, w)
        self.compare = nn.Sequential(nn.Linear(20, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, num_classes))

    def forward(self, x):
        digits = each_digit(self.digit, x)
        logits = self.compare(digits.flatten(1))
        return PairOut(logits, digits if self.loss_kind == "aux" else None, logits.argmax(1))


def compare_digits(digits: torch.Tensor) -> torch.Tensor:
    """(B, 2, 10) digit logits -> (B, 2) log-probabilities [P(d1 > d2), P(d1 <= d2)] of independent digits."""
    logp = F.log_softmax(digits.float(), dim=-1)
    joint = logp[:, 0, :, None] + logp[:, 1, None, :]  # [b, i, j] = log p1(i) + log p2(j)
    le = torch.ones(10, 10, dtype=torch.bool, device=digits.device).triu()  # i <= j
    return torch.stack([joint.masked_fill(le, -math.inf).flatten(1).logsumexp(1),
                        joint.masked_fill(~le, -math.inf).flatten(1).logsumexp(1)], dim=1)


class DigitComparator(nn.Module):
    """Classifies each digit (trained on the digit labels only) and predicts first <= second from the two
    predicted digits. Its pair logits (for the reported losses) are the probabilities of that comparison."""

    loss_kind = "digits"

    def __init__(self, input_shape):
        super().__init__()
        _, h, w = input_shape
        self.digit = digit_net(h, w)

    def forward(self, x):
        digits = each_digit(self.digit, x)
        predicted = digits.argmax(-1)
        return PairOut(compare_digits(digits), digits, (predicted[:, 0] <= predicted[:, 1]).long())
