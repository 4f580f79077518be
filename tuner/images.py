"""The decoded dataset every trial reads (`Images`), and what the loaders of own data share.

A leaf module: the loaders (`tuner.data` for the built-in datasets, `tuner.imagefolder` and
`tuner.tables` for own data) import it, and it imports none of them.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Images:
    """One decoded dataset: uint8 images (N, C, H, W), int64 labels, the normalisation constants.

    A table (`kind="table"`, `tuner.tables`) holds float32 feature vectors (N, F), already
    standardised on its training split (mean 0, std 1): the same batch path serves both, since
    only the dtype (uint8 pixels are scaled by 1/255) and the shape differ. `info` holds what the
    loader found (source, counts as found, notes), for the console and the results.
    """

    name: str
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: tuple[str, ...] = field(default_factory=lambda: tuple(str(c) for c in range(10)))
    kind: str = "image"  # image | table
    info: dict = field(default_factory=dict, compare=False)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_x.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def class_counts(self, idx: np.ndarray | None = None) -> np.ndarray:
        y = self.train_y if idx is None else self.train_y[idx]
        return np.bincount(y, minlength=self.num_classes)


OWN_PREFIXES = ("imagefolder:", "table:")


def is_own(name: str) -> bool:
    """A user's own data: `imagefolder:PATH` or `table:PATH` (tuner.owndata)."""
    return str(name).startswith(OWN_PREFIXES)


def parse_size(v) -> tuple[int, int] | None:
    """image_size: 32, '32', '32,24', '32x24', [32, 24] -> (H, W); one number is a square. ValueError
    when malformed (int() of '2.5' or 'big' raises it too)."""
    if v is None:
        return None
    parts = list(v) if isinstance(v, (list, tuple)) else str(v).replace("x", ",").split(",")
    hw = [int(str(p).strip()) for p in parts]
    if not 1 <= len(hw) <= 2 or min(hw) < 1:
        raise ValueError(v)
    return (hw[0], hw[-1])


def stratified_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices: round(fraction * n) of each class to test, at least 1 when the class
    has 2 or more, never all of it (a class needs training examples)."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == c))
        n = len(members)
        n_test = min(n - 1, max(1 if n >= 2 else 0, int(round(fraction * n))))
        test.append(members[:n_test])
        train.append(members[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def note(text: str) -> None:
    """One line on the console about what the loader decided (not a warning: nothing is wrong)."""
    print(f"note: {text}", file=sys.stderr, flush=True)


def memory_limit() -> int:
    """Bytes a decoded dataset may take: $TUNER_MAX_DATA_BYTES, else a quarter of this machine's
    memory (Ray's object store, where the search puts the data, defaults to 30% of it)."""
    if os.environ.get("TUNER_MAX_DATA_BYTES"):
        return int(float(os.environ["TUNER_MAX_DATA_BYTES"]))
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4


def gb(n: float) -> str:
    """Bytes, readably: 1.25 GB, 12.0 MB, 24.0 KB."""
    for unit, size in (("GB", 1e9), ("MB", 1e6)):
        if n >= size / 10:
            return f"{n / size:.{2 if unit == 'GB' else 1}f} {unit}"
    return f"{n / 1e3:.1f} KB"
