"""`imagefolder:PATH`: a user's image tree -> `Images`, decoded once (Pillow) into a cache.

Layouts: PATH/train/<class>/* + PATH/test/<class>/* (as torchvision's ImageFolder), or one
PATH/<class>/* tree, split by `tuner.owndata.stratified_split`. The file list, with sizes and
mtimes, keys the cache: a changed tree is decoded again. Before decoding, a header pass (Pillow
reads only headers when opening) finds the modes and sizes, so the channel count, the common size
and the decoded bytes are known before any pixel is decoded.
"""
from __future__ import annotations

import collections
import hashlib
import json
import os
import warnings
from pathlib import Path

import numpy as np

from tuner.images import Images
from tuner.errors import ConfigError
from tuner.images import gb, memory_limit, note, parse_size, stratified_split

CACHE_VERSION = 1
# Pillow modes without colour: a tree of only these is decoded as grey (1 channel).
GREY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


def image_extensions() -> tuple[str, ...]:
    from torchvision.datasets.folder import IMG_EXTENSIONS

    return IMG_EXTENSIONS


def class_folders(root: Path) -> list[Path]:
    return sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)


def image_files(folder: Path) -> list[Path]:
    """The image files under a class folder, recursively; hidden files/folders and other files ignored."""
    ext = image_extensions()
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        out += [Path(dirpath, f) for f in sorted(filenames) if not f.startswith(".") and f.lower().endswith(ext)]
    return out


def listing(path: Path) -> tuple[dict[str, list[tuple[Path, int]]], tuple[str, ...]]:
    """{part: [(file, class index)]} for part 'train' (and 'test' in the two-folder layout), and the class names."""
    two = (path / "train").is_dir() and (path / "test").is_dir()
    parts = {"train": path / "train", "test": path / "test"} if two else {"train": path}
    classes = [p.name for p in class_folders(parts["train"])]
    if len(classes) < 2:
        raise ConfigError(f"imagefolder:{path}: found {len(classes)} class folder(s) under {parts['train']}: "
                          "need at least 2 (one folder of images per class)")
    out = {}
    for part, root in parts.items():
        here = [p.name for p in class_folders(root)]
        if here != classes:
            diff = sorted(set(classes) ^ set(here))
            raise ConfigError(f"imagefolder:{path}: train and test must have the same class folders; "
                              f"{', '.join(diff)} is in only one of them")
        out[part] = []
        for c, name in enumerate(classes):
            files = image_files(root / name)
            if not files:
                raise ConfigError(f"imagefolder:{path}: class folder {str(root / name)!r} has no image "
                                  f"({', '.join(image_extensions())}): add images or remove the folder")
            out[part] += [(f, c) for f in files]
    return out, tuple(classes)


def cache_key(files: dict, size) -> str:
    """The tree's contents as far as stat tells them: every path, size and mtime, and the requested size."""
    h = hashlib.sha256(json.dumps([CACHE_VERSION, size]).encode())
    for part, items in files.items():
        for f, c in items:
            st = f.stat()
            h.update(f"{part}\0{f}\0{c}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:24]


def load(name: str, path: Path, opts: dict, cache_dir: Path) -> Images:
    path = path.resolve()
    files, classes = listing(path)
    size = parse_size(opts["image_size"])
    # one cache file per tree and size (the name's first part): a re-decoded tree replaces its old cache
    tree_id = hashlib.sha256(json.dumps([str(path), size]).encode()).hexdigest()[:12]
    cache = cache_dir / f"imagefolder-{tree_id}-{cache_key(files, size)}.npz"
    if cache.exists():
        with np.load(cache, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
        meta = json.loads(str(arrays.pop("meta")))
    else:
        arrays, meta = decode(path, files, size)
        _save(cache, arrays, meta)
        for old in cache_dir.glob(f"imagefolder-{tree_id}-*.npz"):
            if old != cache and not old.name.endswith(".tmp.npz"):
                old.unlink(missing_ok=True)
    for line in meta["notes"]:
        note(line)
    if meta["skipped"]:
        shown = ", ".join(meta["skipped"][:10]) + (", ..." if len(meta["skipped"]) > 10 else "")
        warnings.warn(f"imagefolder:{path}: skipped {len(meta['skipped'])} file(s) that could not be decoded: {shown}",
                      stacklevel=2)
    missing = [classes[c] for c in range(len(classes)) if not (arrays["train_y"] == c).any()]
    if missing:
        raise ConfigError(f"imagefolder:{path}: class folder {missing[0]!r} has no image that could be decoded")
    x, y = arrays["train_x"], arrays["train_y"]
    if "test_x" in arrays:
        train_x, train_y, test_x, test_y = x, y, arrays["test_x"], arrays["test_y"]
        split = "the test folder"
    else:
        tr, te = stratified_split(y, opts["test_fraction"], opts["data_seed"])
        train_x, train_y, test_x, test_y = x[tr], y[tr], x[te], y[te]
        split = f"stratified test_fraction={opts['test_fraction']:g}, data_seed={opts['data_seed']}"
    mean, std = channel_stats(train_x)
    info = {"source": str(path), "found_counts": np.bincount(train_y, minlength=len(classes)).tolist(),
            "test_counts": np.bincount(test_y, minlength=len(classes)).tolist(), "test_split": split,
            "skipped": meta["skipped"], "notes": meta["notes"]}
    return Images(name=name, train_x=np.ascontiguousarray(train_x), train_y=train_y.astype(np.int64),
                  test_x=np.ascontiguousarray(test_x), test_y=test_y.astype(np.int64),
                  mean=mean, std=std,
                  classes=classes, kind="image", info=info)


def channel_stats(x: np.ndarray, chunk: int = 1024) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of the training pixels on the 0-1 scale (as the built-in datasets'
    constants), in chunks: a float copy of a whole tree would take 8x its decoded size."""
    s1 = np.zeros(x.shape[1])
    s2 = np.zeros(x.shape[1])
    for i in range(0, len(x), chunk):
        part = x[i : i + chunk].astype(np.float64) / 255
        s1 += part.sum(axis=(0, 2, 3))
        s2 += (part ** 2).sum(axis=(0, 2, 3))
    n = max(1, len(x) * x.shape[2] * x.shape[3])
    mean = s1 / n
    std = np.sqrt(np.maximum(s2 / n - mean ** 2, 0))
    return tuple(float(m) for m in mean), tuple(max(float(s), 1e-3) for s in std)


def _save(cache: Path, arrays: dict, meta: dict) -> None:
    try:  # a read-only cache folder only costs the decoding next time
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, meta=np.asarray(json.dumps(meta)), **arrays)
        os.replace(tmp, cache)
    except OSError as e:
        warnings.warn(f"could not write the decoded-images cache {cache} ({e.strerror or e}): decoding again next time")


def decode(path: Path, files: dict, size) -> tuple[dict, dict]:
    from PIL import Image

    skipped, modes, sizes = [], {}, {}
    for part, items in files.items():
        for f, _ in items:
            try:
                with Image.open(f) as im:  # reads the header only
                    modes[f], sizes[f] = im.mode, (im.height, im.width)
            except Exception:  # noqa: BLE001  not an image after all, truncated, unreadable: Pillow's errors vary
                skipped.append(str(f.relative_to(path)))
    grey = all(m in GREY_MODES for m in modes.values())
    channels = 1 if grey else 3
    notes = []
    if size is None:
        common = collections.Counter(sizes.values()).most_common()
        if not common:
            raise ConfigError(f"imagefolder:{path}: none of the image files could be decoded")
        size = common[0][0]
        if len(common) > 1:
            notes.append(f"images differ in size ({len(common)} sizes): resizing all to the most common, "
                         f"{size[0]}x{size[1]} (HxW); set image_size=H,W to choose another")
    n = len(modes)
    need, limit = n * channels * size[0] * size[1], memory_limit()
    if need > limit:
        scale = (limit / need) ** 0.5
        h, w = max(1, int(size[0] * scale)), max(1, int(size[1] * scale))
        raise ConfigError(f"imagefolder:{path}: {n} images of {channels}x{size[0]}x{size[1]} would take {gb(need)} decoded, "
                          f"more than the {gb(limit)} allowed ($TUNER_MAX_DATA_BYTES, default a quarter of this machine's "
                          f"memory): set image_size={h},{w} ({gb(n * channels * h * w)})")
    arrays = {}
    from tqdm import tqdm

    with tqdm(total=n, desc=f"decoding {path.name}", unit="img", file=None, mininterval=0.5) as bar:
        for part, items in files.items():
            x = np.empty((len(items), channels, *size), dtype=np.uint8)
            keep = np.zeros(len(items), dtype=bool)
            for i, (f, _) in enumerate(items):
                if f not in modes:
                    continue
                try:
                    x[i] = to_array(f, channels, size)
                    keep[i] = True
                except Exception:  # noqa: BLE001  the header read but the pixels do not (truncated file)
                    skipped.append(str(f.relative_to(path)))
                bar.update()
            arrays[f"{part}_x"] = x[keep]
            arrays[f"{part}_y"] = np.asarray([c for _, c in items], dtype=np.int64)[keep]
    return arrays, {"skipped": skipped, "notes": notes, "channels": channels}


def to_array(f: Path, channels: int, size: tuple[int, int]) -> np.ndarray:
    """One file -> uint8 (C, H, W): grey or RGB, resized (bilinear) to `size` when it differs."""
    from PIL import Image

    with Image.open(f) as im:
        im.load()
        if im.mode.startswith("I;16"):  # 16-bit grey (medical scans): keep the full range, not a clipped one
            im = Image.fromarray((np.asarray(im, dtype=np.float32) / 257).round().astype(np.uint8))
        im = im.convert("L" if channels == 1 else "RGB")
        if (im.height, im.width) != tuple(size):
            im = im.resize((size[1], size[0]), Image.BILINEAR)
        a = np.asarray(im, dtype=np.uint8)
    return a[None] if channels == 1 else a.transpose(2, 0, 1)
