"""The reference data path: what a competent PyTorch user would write instead of `tuner.device_data`
+ `tuner.remedies.epoch_plan/augment`, for the benchmark (`python -m benchmarks.run`) and for the
distribution tests (`tests/test_reference.py`). It is not used by the search.

    a `torch.utils.data.Dataset` over the same imbalanced split (`tuner.data.make_split`) that
    returns one (image, label) per call, with torchvision transforms per sample:
        uint8 -> float [0, 1] -> RandomRotation(deg, BILINEAR) -> Gaussian noise -> Normalize
    (rotation and noise only on the samples `augment_scope` selects, as in `tuner.remedies`);
    a `Sampler` that draws each epoch's over-sampled index list (every training image once, plus
    ROS copies redrawn each epoch, plus noise copies), shuffled, in the main process so that
    persistent workers see a fresh draw every epoch;
    a `DataLoader(batch_size, num_workers, persistent_workers, pin_memory on GPU only)`;
    the same model, optimizer and loss as the trainable; the usual training loop
    (`loss.item()` per step for the running loss, as tutorials do).

The pixel pipeline per sample follows the tensor path of torchvision's transforms (the images are
already decoded uint8 arrays); `pil=True` instead goes through PIL images (`ToPILImage` ->
`RandomRotation` on PIL -> `ToTensor`), the classic `torchvision.datasets.MNIST` recipe.
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode

from tuner import config as config_mod
from tuner import remedies
from tuner.data import Images, Split, make_split
from tuner.models import build_model


class AddGaussianNoise:
    """Per-sample transform: x + N(0, sigma^2) per pixel (pixels in [0, 1])."""

    def __init__(self, sigma: float):
        self.sigma = float(sigma)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.randn_like(x) * self.sigma if self.sigma > 0 else x

    def __repr__(self) -> str:
        return f"AddGaussianNoise(sigma={self.sigma})"


def ros_extra(cfg: dict, counts: list[int], c: int) -> int:
    """How many over-sampled copies minority class `c` gets: round(ros_target x mean majority count)
    minus its own count, never negative (the arithmetic of `tuner.remedies.epoch_plan`)."""
    minority = set(cfg["minority_classes"])
    majority = [n for k, n in enumerate(counts) if k not in minority]
    if cfg["ros_target"] <= 0 or not majority:
        return 0
    return max(0, int(round(cfg["ros_target"] * sum(majority) / len(majority))) - counts[c])


class OverSampler(Sampler):
    """Each epoch: every training index once (key (i, False, None)), ROS copies drawn with
    replacement per minority class ((i, True, None)) and one copy per noise variance of every
    minority image ((i, True, sigma)); shuffled. Redrawn on every `iter()`."""

    def __init__(self, cfg: dict, train_idx: np.ndarray, train_y: np.ndarray, num_classes: int, seed: int = 0):
        self.cfg = cfg
        labels = train_y[train_idx]
        self.by_class = [train_idx[labels == c] for c in range(num_classes)]
        self.rng = np.random.default_rng(seed)
        self.counts = [len(m) for m in self.by_class]
        self.n = sum(self.counts)
        for c in sorted(set(cfg["minority_classes"])):
            self.n += ros_extra(cfg, self.counts, c) + len(cfg["noise_copies"] or []) * self.counts[c]

    def keys(self) -> list[tuple]:
        keys = [(int(i), False, None) for members in self.by_class for i in members]
        for c in sorted(set(self.cfg["minority_classes"])):
            members = self.by_class[c]
            extra = ros_extra(self.cfg, self.counts, c)
            if extra:
                keys += [(int(i), True, None) for i in members[self.rng.integers(len(members), size=extra)]]
            for variance in self.cfg["noise_copies"] or []:
                keys += [(int(i), True, math.sqrt(variance)) for i in members]
        order = self.rng.permutation(len(keys))
        return [keys[k] for k in order]

    def __iter__(self):
        return iter(self.keys())

    def __len__(self) -> int:
        return self.n


class ImbalancedDataset(Dataset):
    """Per-sample (image, label) with the remedies' per-sample transforms, by sampler key."""

    def __init__(self, images: Images, cfg: dict, pil: bool = False):
        self.x, self.y = images.train_x, images.train_y
        self.minority = set(cfg["minority_classes"])
        self.scope = cfg["augment_scope"]
        self.pil = pil
        deg = cfg["rotation_deg"]
        self.rotation = T.RandomRotation(deg, interpolation=InterpolationMode.BILINEAR) if deg > 0 else None
        self.noise = AddGaussianNoise(cfg["noise_sigma"]) if cfg["noise_sigma"] > 0 else None
        self.normalize = T.Normalize(images.mean, images.std)
        self.to_pil, self.to_tensor = T.ToPILImage(), T.ToTensor()

    def in_scope(self, label: int, is_copy: bool) -> bool:
        return {"copies": is_copy, "minority": label in self.minority, "all": True}[self.scope]

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, key):
        i, is_copy, fixed_sigma = key if isinstance(key, tuple) else (key, False, None)
        label = int(self.y[i])
        scoped = self.in_scope(label, is_copy)
        if self.pil:
            img = self.to_pil(torch.from_numpy(self.x[i]))  # (1, H, W) uint8 -> PIL "L"
            if self.rotation is not None and scoped:
                img = self.rotation(img)
            x = self.to_tensor(img)
        else:
            x = torch.from_numpy(self.x[i]).float().div_(255)
            if self.rotation is not None and scoped:
                x = self.rotation(x)
        if self.noise is not None and scoped:
            x = self.noise(x)
        if fixed_sigma:  # noise copies carry their own noise whatever the scope
            x = x + torch.randn_like(x) * fixed_sigma
        return self.normalize(x), label


def make_loader(images: Images, cfg: dict, split: Split, *, num_workers: int = 0, device="cpu", seed: int = 0,
                pil: bool = False, prefetch_factor: int = 2) -> DataLoader:
    sampler = OverSampler(cfg, split.train_idx, images.train_y, images.num_classes, seed)
    workers = dict(persistent_workers=True, prefetch_factor=prefetch_factor) if num_workers > 0 else {}
    return DataLoader(
        ImbalancedDataset(images, cfg, pil=pil), batch_size=cfg["batch_size"], sampler=sampler,
        num_workers=num_workers, pin_memory=torch.device(device).type == "cuda", **workers,
    )


class ReferenceTrial:
    """Model + optimizer + loss exactly as `tuner.trainable.train` builds them, fed by the loader.
    `run(n)` trains n batches (continuing the current epoch, starting a new one when it ends)."""

    def __init__(self, config: dict, images: Images, *, num_workers: int = 0, device="cpu", pil: bool = False):
        from tuner.trainable import make_optimizer

        self.cfg = cfg = config_mod.resolve(config)
        self.device = torch.device(device)
        split = make_split(images, cfg)
        torch.manual_seed(cfg["seed"])
        self.model = build_model(cfg["model"], images.input_shape, images.num_classes, cfg).to(self.device)
        self.optimizer = make_optimizer(cfg, self.model)
        self.loss_fn = remedies.make_loss(cfg, split.counts.tolist(), self.device)
        self.loader = make_loader(images, cfg, split, num_workers=num_workers, device=self.device, seed=cfg["seed"],
                                  pil=pil)
        self._it = None
        self.total_loss, self.correct, self.seen = 0.0, 0, 0

    def batches_per_epoch(self) -> int:
        return len(self.loader)

    def _next(self):
        if self._it is None:
            self._it = iter(self.loader)
        try:
            return next(self._it)
        except StopIteration:
            self._it = iter(self.loader)  # next epoch: the sampler redraws the copies
            return next(self._it)

    def step(self, x, y) -> None:
        self.model.train()
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        logits = self.model(x)
        loss = self.loss_fn(logits, y)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.total_loss += loss.item() * len(y)
        self.correct += (logits.argmax(1) == y).sum().item()
        self.seen += len(y)

    def run(self, n_batches: int, skip: int = 0) -> tuple[int, float]:
        """Train n_batches; returns (samples, seconds) over the batches after the first `skip`
        (which may have been prefetched by the workers while something else ran)."""
        samples, t0 = 0, time.perf_counter()
        for b in range(n_batches):
            if b == skip:
                samples, t0 = 0, time.perf_counter()
            x, y = self._next()
            self.step(x, y)
            samples += len(y)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return samples, time.perf_counter() - t0

    def epoch(self) -> tuple[int, float]:
        """One whole epoch from a fresh iterator: (samples, seconds)."""
        self._it = iter(self.loader)
        samples, t0 = 0, time.perf_counter()
        for x, y in self._it:
            self.step(x, y)
            samples += len(y)
        self._it = None
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return samples, time.perf_counter() - t0

    def close(self) -> None:
        it, self._it = self._it, None
        if it is not None and hasattr(it, "_shutdown_workers"):
            it._shutdown_workers()
        workers = getattr(self.loader, "_iterator", None)
        if workers is not None and hasattr(workers, "_shutdown_workers"):
            workers._shutdown_workers()


class PlainImages(Dataset):
    """Per-sample (normalised image, label) of a test or validation set, no augmentation."""

    def __init__(self, x: np.ndarray, y: np.ndarray, mean, std):
        self.x, self.y = x, y
        self.normalize = T.Normalize(mean, std)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i):
        return self.normalize(torch.from_numpy(self.x[i]).float().div_(255)), int(self.y[i])


@torch.no_grad()
def reference_evaluate(model, images: Images, *, n: int | None = None, batch_size: int = 1000, num_workers: int = 0,
                       device="cpu") -> tuple[int, float, torch.Tensor]:
    """The usual test loop (DataLoader, batch 1000, no_grad, loss.item() per batch) over the first
    n test images: (samples, seconds, confusion matrix)."""
    device = torch.device(device)
    n = len(images.test_y) if n is None else n
    data = PlainImages(images.test_x[:n], images.test_y[:n], images.mean, images.std)
    loader = DataLoader(data, batch_size=batch_size, num_workers=num_workers, pin_memory=device.type == "cuda")
    model.eval()
    k = images.num_classes
    cm = torch.zeros(k, k, dtype=torch.long)
    t0, total_loss = time.perf_counter(), 0.0
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        logits = model(x)
        total_loss += torch.nn.functional.cross_entropy(logits, y, reduction="sum").item()
        cm += torch.bincount(y.cpu() * k + logits.argmax(1).cpu(), minlength=k * k).view(k, k)
    return n, time.perf_counter() - t0, cm
