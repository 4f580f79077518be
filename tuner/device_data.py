"""A trial's data, resident on its device: uint8 pixels moved once, batches as index tensors.

On CPU the arrays come zero-copy from Ray's object store (shared memory), so a trial adds no
copy of the training set; on a GPU they move to the GPU once per trial. Batches are gathered by
index, converted to float and normalised on the device: no DataLoader, no per-sample Python.
"""
from __future__ import annotations

import warnings

import numpy as np

from tuner.data import Images, Split
from tuner.lazy import lazy

torch = lazy("torch", globals())  # imported on first use (tuner.lazy): the driver's checks need no torch


def _tensor(a: np.ndarray, device) -> torch.Tensor:
    with warnings.catch_warnings():
        # arrays from the object store are read-only; we never write to them
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        t = torch.from_numpy(a)
    return t.to(device, non_blocking=True)


class DeviceData:
    def __init__(self, images: Images, split: Split, device: torch.device, options: dict | None = None):
        """`options`: the trial config, when the model decides the normalisation: the pretrained VGG16
        takes ImageNet's mean and std (`tuner.models.input_stats`); without it, the data's own."""
        self.device = device
        self.train_x = _tensor(images.train_x, device)
        self.train_y = _tensor(images.train_y, device)
        self.test_x = _tensor(images.test_x, device)
        self.test_y = _tensor(images.test_y, device)
        self.val_idx = torch.from_numpy(split.val_idx).to(device)
        train_idx = torch.from_numpy(split.train_idx).to(device)
        labels = self.train_y[train_idx]
        self.by_class = [train_idx[labels == c] for c in range(images.num_classes)]
        # per channel (images, N x C x H x W) or per feature (tables, N x F)
        shape = (1, -1) + (1,) * (images.train_x.ndim - 2)
        mean, std = images.mean, images.std
        if options is not None and images.kind == "image":
            from tuner.models import input_stats

            mean, std = input_stats(options, mean, std)
        self.mean = torch.tensor(mean, device=device).view(shape)
        self.std = torch.tensor(std, device=device).view(shape)
        self.num_classes = images.num_classes
        # channels_last=true: batches in NHWC order, as the conv model's weights (train sets it)
        self.memory_format = torch.contiguous_format

    def pixels(self, x_uint8: torch.Tensor) -> torch.Tensor:
        """uint8 images -> float pixels in [0, 1] (augmentation works on this scale); a table's
        float features are already standardised and pass as they are."""
        if x_uint8.dtype != torch.uint8:
            return x_uint8.float()
        return x_uint8.float().div_(255)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.sub(x, self.mean).div_(self.std)  # one new tensor, not two
        return x if self.memory_format is torch.contiguous_format else x.contiguous(memory_format=self.memory_format)
