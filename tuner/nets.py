"""The torch modules the model registry's constructors (`tuner.models`) build that are classes of
their own. Apart from the registry so that reading the registry (the driver's checks) imports no
torch (`tuner.lazy`)."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


# --- sequence models: an image is read row by row, H steps of C*W features ---


def rows(x: torch.Tensor) -> torch.Tensor:
    b, c, h, w = x.shape
    return x.permute(0, 2, 1, 3).reshape(b, h, c * w)


class LastStep(nn.Module):
    """Recurrent layer over image rows; the last step's output feeds a linear head."""

    def __init__(self, rnn: nn.RNNBase, num_classes: int):
        super().__init__()
        self.rnn = rnn
        self.head = nn.Linear(rnn.hidden_size, num_classes)

    def forward(self, x):
        out, _ = self.rnn(rows(x))
        return self.head(out[:, -1])


class LSTMMLP(nn.Module):
    """LSTM whose last hidden unit, taken at every step, forms an H-vector for an MLP."""

    def __init__(self, input_shape, num_classes, final_relu):
        super().__init__()
        c, h, w = input_shape
        self.rnn = nn.LSTM(c * w, 64, batch_first=True)
        layers = [nn.Linear(h, 512), nn.ReLU(), nn.Linear(512, num_classes)]
        # The study put a ReLU after both MLP layers, but a ReLU on logits
        # clamps every negative logit to 0 and stalls cross-entropy, so it is
        # off by default and kept only for faithful reproduction.
        if final_relu:
            layers.append(nn.ReLU())
        self.mlp = nn.Sequential(*layers)

    def forward(self, x):
        out, _ = self.rnn(rows(x))
        return self.mlp(out[:, :, -1])


# --- VGG: torchvision's features (tuner.models builds them) with a small head ---


class VGG(nn.Module):
    """VGG feature extractor with a small new head for num_classes."""

    def __init__(self, features: nn.Sequential, num_classes: int):
        super().__init__()
        convs = [m for m in features if isinstance(m, nn.Conv2d)]
        self.in_channels = convs[0].in_channels
        # Each max-pool halves the image; inputs smaller than 2**pools (MNIST's
        # 28 px against vgg16's five pools) would shrink to nothing.
        self.min_size = 2 ** sum(isinstance(m, nn.MaxPool2d) for m in features)
        self.features = features
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Linear(convs[-1].out_channels, 256),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(256, num_classes),
        )

    def forward(self, x):
        if x.shape[1] == 1 and self.in_channels == 3:
            x = x.expand(-1, 3, -1, -1)  # grey images through RGB filters
        h, w = x.shape[-2:]
        if min(h, w) < self.min_size:
            size = (max(h, self.min_size), max(w, self.min_size))
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))
