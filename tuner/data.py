"""Datasets by name -> decoded uint8 arrays; imbalance; stratified validation split.

Everything here is host-side and index based: a dataset is decoded once into `Images`
(uint8 arrays, the same object every trial reads from Ray's object store), and the imbalance
and validation split of one trial are just index arrays into it. Moving the pixels onto the
trial's device and building batches is `tuner.device_data`.
"""
from __future__ import annotations

import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from tuner.errors import ConfigError
from tuner.images import OWN_PREFIXES, Images, is_own  # noqa: F401  (re-exported)

DEFAULT_DATA_DIR = Path("~/.cache/imbalance-tune/data").expanduser()
SAMPLE_FILE = Path(__file__).parent / "sample_data" / "mnist_sample.npz"


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path:
    """--data-dir, else $TUNER_DATA_DIR, else ~/.cache/imbalance-tune/data."""
    if data_dir:
        return Path(data_dir).expanduser()
    if os.environ.get("TUNER_DATA_DIR"):
        return Path(os.environ["TUNER_DATA_DIR"]).expanduser()
    return DEFAULT_DATA_DIR


# --- dataset registry: name -> loader(data_dir, download) -> Images --------------------------

DATASETS: dict[str, Callable[[Path, bool], Images]] = {}


def register(name: str):
    def add(fn):
        DATASETS[name] = fn
        return fn

    return add


class DatasetUnavailable(RuntimeError):
    """The dataset is neither on disk nor downloadable."""


MNIST_FILES = {"train_x": "train-images-idx3-ubyte", "train_y": "train-labels-idx1-ubyte",
               "test_x": "t10k-images-idx3-ubyte", "test_y": "t10k-labels-idx1-ubyte"}


@register("mnist")
def _mnist(root: Path, download: bool) -> Images:
    raw = root / "MNIST" / "raw"  # torchvision's layout
    if all((raw / f).is_file() for f in MNIST_FILES.values()):
        # read directly: `import torchvision` imports torch._dynamo (about 1 s, in every search's driver)
        arrays = {key: read_idx(raw / f) for key, f in MNIST_FILES.items()}
    else:  # torchvision downloads it (and checks the files' MD5) when allowed
        from torchvision.datasets import MNIST

        try:
            train = MNIST(root=str(root), train=True, download=download)
            test = MNIST(root=str(root), train=False, download=download)
        except Exception as e:  # torchvision raises RuntimeError when missing, URLError offline
            raise DatasetUnavailable(f"MNIST not found under {root} and not downloadable ({_short(e)})")
        arrays = {"train_x": train.data.numpy(), "train_y": train.targets.numpy(),
                  "test_x": test.data.numpy(), "test_y": test.targets.numpy()}
    return Images(
        name="mnist",
        train_x=arrays["train_x"][:, None],
        train_y=arrays["train_y"].astype(np.int64),
        test_x=arrays["test_x"][:, None],
        test_y=arrays["test_y"].astype(np.int64),
        mean=(0.1307,),
        std=(0.3081,),
    )


def read_idx(path: Path) -> np.ndarray:
    """An uncompressed IDX file of unsigned bytes (MNIST's format: two zero bytes, type 0x08, the
    number of dimensions, each dimension as a big-endian int32, then the data)."""
    with open(path, "rb") as f:
        head = f.read(4)
        dims = f.read(4 * head[3]) if len(head) == 4 else b""
    if len(head) < 4 or head[:3] != b"\x00\x00\x08" or len(dims) != 4 * head[3]:
        raise DatasetUnavailable(f"{path} is not an IDX file of unsigned bytes (header {head.hex()!r})")
    shape = tuple(int(d) for d in np.frombuffer(dims, ">i4"))
    values = np.fromfile(path, np.uint8, offset=4 + len(dims))
    if values.size != int(np.prod(shape)):
        raise DatasetUnavailable(f"{path}: {values.size} values for the shape {shape} in its header (truncated?)")
    return values.reshape(shape)


@register("mnist-sample")
def _mnist_sample(root: Path, download: bool) -> Images:
    # Shipped inside the package (rebuilt by scripts/build_mnist_sample.py): works offline.
    with np.load(SAMPLE_FILE) as f:
        return Images(
            name="mnist-sample",
            train_x=f["train_x"][:, None],
            train_y=f["train_y"].astype(np.int64),
            test_x=f["test_x"][:, None],
            test_y=f["test_y"].astype(np.int64),
            mean=(0.1307,),
            std=(0.3081,),
        )


CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@register("cifar10")
def _cifar10(root: Path, download: bool) -> Images:
    folder = root / "cifar10"
    if (folder / "train").is_dir() and (folder / "test").is_dir():
        train_x, train_y, classes = _cached_image_folder(folder / "train", folder / "cache-train.npz")
        test_x, test_y, _ = _cached_image_folder(folder / "test", folder / "cache-test.npz")
    else:  # torchvision's own layout (cifar-10-batches-py), downloaded when allowed
        from torchvision.datasets import CIFAR10

        try:
            train = CIFAR10(root=str(root), train=True, download=download)
            test = CIFAR10(root=str(root), train=False, download=download)
        except Exception as e:
            raise DatasetUnavailable(f"CIFAR-10 not found under {root} and not downloadable ({_short(e)})")
        train_x, train_y = train.data.transpose(0, 3, 1, 2), np.asarray(train.targets)
        test_x, test_y = test.data.transpose(0, 3, 1, 2), np.asarray(test.targets)
        classes = tuple(train.classes)
    return Images(
        name="cifar10",
        train_x=np.ascontiguousarray(train_x),
        train_y=train_y.astype(np.int64),
        test_x=np.ascontiguousarray(test_x),
        test_y=test_y.astype(np.int64),
        mean=(0.4914, 0.4822, 0.4465),
        std=(0.2470, 0.2435, 0.2616),
        classes=tuple(classes),
    )


def _cached_image_folder(folder: Path, cache: Path) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Decode an ImageFolder tree once into uint8 arrays and cache them next to it (or in ~/.cache)."""
    from torchvision.datasets import ImageFolder

    for path in (cache, DEFAULT_DATA_DIR / "cache" / f"{folder.parent.name}-{cache.name}"):
        if path.exists() and path.stat().st_mtime >= folder.stat().st_mtime:
            with np.load(path) as f:
                return f["x"], f["y"], tuple(str(c) for c in f["classes"])
    tree = ImageFolder(str(folder))
    print(f"decoding {len(tree)} images under {folder} once (cached for later runs)...", file=sys.stderr)
    x = np.stack([np.asarray(tree.loader(p)) for p, _ in tree.samples])  # RGB, (N, H, W, 3)
    x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    y = np.asarray(tree.targets, dtype=np.int64)
    for path in (cache, DEFAULT_DATA_DIR / "cache" / f"{folder.parent.name}-{cache.name}"):
        try:  # the data folder may be read-only: fall back to the user's cache
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp.npz")
            np.savez(tmp, x=x, y=y, classes=np.asarray(tree.classes))
            os.replace(tmp, path)
            break
        except OSError:
            continue
    return x, y, tuple(tree.classes)


def _short(e: Exception) -> str:
    return str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__


def load_dataset(name: str, data_dir=None, *, download: bool = True, fallback: bool = False,
                 options: dict | None = None) -> Images:
    """Load a dataset by name. With `fallback` (the user asked for the default dataset), an
    unavailable dataset falls back to the shipped `mnist-sample` with one warning. Own data
    (`imagefolder:PATH`, `table:PATH`) reads its settings (image_size, label, ...) from `options`."""
    root = resolve_data_dir(data_dir)
    if is_own(name):
        from tuner import owndata

        return owndata.load(name, options or {}, root)
    _check_known(name)
    try:
        return DATASETS[name](root, download)
    except DatasetUnavailable as e:
        if not fallback:
            raise ConfigError(f"dataset {name!r} unavailable: {e}") from None
        warnings.warn(f"{e}; falling back to the shipped 'mnist-sample' (5,000 training + 2,000 test real MNIST images)", stacklevel=2)
        return DATASETS["mnist-sample"](root, download)


def _check_known(name: str) -> None:
    if name not in DATASETS:
        from tuner import plugins

        plugins.load()  # a task plug-in's datasets (digit_pairs, ...)
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}: choose one of {', '.join(sorted(DATASETS))}, "
                          "imagefolder:PATH or table:PATH")


# --- imbalance and validation split (indices only) -----------------------------------------

def keep_fractions(config: dict, num_classes: int = 10) -> dict[int, float]:
    """class -> kept fraction, from `imbalance` (a dict, or 'long_tail:RHO') or from
    `minority_classes` + `minority_keep` (the studies' step profile); 'natural' keeps everything."""
    imb = config.get("imbalance")
    if imb == "natural":
        return {c: 1.0 for c in range(num_classes)}
    if isinstance(imb, str) and imb.startswith("long_tail:"):
        return long_tail(float(imb.split(":", 1)[1]), num_classes)
    if isinstance(imb, dict):
        fracs = {c: 1.0 for c in range(num_classes)}
        fracs.update({int(c): float(f) for c, f in imb.items()})
        return fracs
    return step(config["minority_classes"], config["minority_keep"], num_classes)


def step(minority_classes, keep: float, num_classes: int = 10) -> dict[int, float]:
    return {c: (keep if c in set(minority_classes) else 1.0) for c in range(num_classes)}


def long_tail(rho: float, num_classes: int = 10) -> dict[int, float]:
    """Exponential profile: class 0 keeps everything, the last class keeps `rho`."""
    return {c: rho ** (c / (num_classes - 1)) for c in range(num_classes)}


@dataclass(frozen=True)
class Split:
    train_idx: np.ndarray  # indices into Images.train_x, the imbalanced training set minus validation
    val_idx: np.ndarray  # stratified validation indices carved from the imbalanced set
    counts: np.ndarray  # per-class counts of train_idx (before any over-sampling)
    imbalanced_counts: np.ndarray  # per-class counts of the imbalanced set (train + validation)


def imbalance(y: np.ndarray, fractions: dict[int, float], seed: int) -> np.ndarray:
    """Keep floor(fraction * n) images of each class: the first ones in a seeded random order."""
    order = np.random.default_rng(seed).permutation(len(y))
    keep = []
    for c, frac in sorted(fractions.items()):
        in_class = order[y[order] == c]
        keep.append(in_class[: int(np.floor(frac * len(in_class) + 1e-9))])
    return np.sort(np.concatenate(keep))


def make_split(images: Images, config: dict, min_val_per_class: int = 3) -> Split:
    fracs = keep_fractions(config, images.num_classes)
    idx = imbalance(images.train_y, fracs, config["data_seed"])
    counts = images.class_counts(idx)
    for c, n in enumerate(counts):
        if n < 2:
            name = "" if images.classes[c] == str(c) else f" ({images.classes[c]})"
            raise ConfigError(
                f"class {c}{name} has {n} training image(s) after imbalance (keep {fracs[c]:g} of "
                f"{images.class_counts()[c]}): need at least 2, "
                + ("raise its kept fraction" if fracs[c] < 1 else "add examples of it or leave the class out")
            )
    rng = np.random.default_rng(config["data_seed"] + 1)
    train, val = [], []
    for c in range(images.num_classes):
        members = rng.permutation(idx[images.train_y[idx] == c])
        n_val = min(len(members) - 1, max(min_val_per_class, int(round(config["val_fraction"] * len(members)))))
        val.append(members[:n_val])
        train.append(members[n_val:])
    train_idx, val_idx = np.sort(np.concatenate(train)), np.sort(np.concatenate(val))
    return Split(train_idx, val_idx, images.class_counts(train_idx), counts)
