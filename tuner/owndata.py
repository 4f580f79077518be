"""A user's own data: `imagefolder:PATH` (tuner.imagefolder) and `table:PATH` (tuner.tables).

What both share lives here: the stratified, seeded test split of a tree or table without a test
part, the minority classes and the natural imbalance (settled once the class counts are known,
`settle`), and the checks that need the data's shape (`check_fits`: the model takes the shape,
remedies that need images are refused on tables). All of it runs on the driver before Ray starts.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tuner.errors import ConfigError
from tuner.images import gb, is_own, memory_limit, note, parse_size, stratified_split  # noqa: F401  (re-exported)

# Settings that change what a loader produces (part of the search's data, not of a trial).
LOAD_KEYS = ("image_size", "test_fraction", "label", "impute", "data_seed")


def spec_path(name: str) -> Path:
    kind, _, path = name.partition(":")
    if not path:
        raise ConfigError(f"dataset {name!r}: give a path, e.g. {kind}:/data/my_images")
    return Path(path).expanduser()


def load(name: str, options: dict, root: Path):
    """Load `imagefolder:PATH` or `table:PATH` with the settings in `options` (the trial config)."""
    from tuner.settings import CORE

    opts = {k: options.get(k, CORE[k].default) for k in LOAD_KEYS}
    path = spec_path(name)
    if not path.exists():
        raise ConfigError(f"dataset {name!r}: {str(path)!r} does not exist")
    if name.startswith("imagefolder:") != path.is_dir():
        want = "a folder (one folder of images per class)" if name.startswith("imagefolder:") else "a .csv or .parquet file"
        raise ConfigError(f"dataset {name!r}: {str(path)!r} is not {want}")
    if name.startswith("imagefolder:"):
        from tuner import imagefolder

        return imagefolder.load(name, path, opts, root / "cache")
    from tuner import tables

    return tables.load(name, path, opts)










# --- classes by name: minority classes, imbalance, class weights ---------------------------------

def class_index(classes: tuple[str, ...], c, key: str) -> int:
    """A class given by name (a folder or label value) or by index. Names win: a class folder named
    '3' is that folder, whatever its index."""
    if isinstance(c, str) and c in classes:
        return classes.index(c)
    if isinstance(c, int) or (isinstance(c, str) and c.strip().isdigit()):
        if 0 <= int(c) < len(classes):
            return int(c)
        raise ConfigError(f"{key}: class index {c} is out of range: the data has {len(classes)} classes "
                          f"(0-{len(classes) - 1}: {', '.join(classes)})")
    raise ConfigError(f"{key}: no class named {c!r}: the classes are {', '.join(classes)}")


def default_minority(counts) -> list[int]:
    """The classes with fewer than half the median count (as found, before any imposed imbalance)."""
    counts = np.asarray(counts)
    return [int(c) for c in np.flatnonzero(counts < 0.5 * np.median(counts))]


def settle(config: dict, images) -> dict:
    """The settings own data fixes once its classes are known: class names -> indices; the minority
    classes (default: `default_minority`); natural imbalance (minority_keep=1) unless one is imposed.
    `config` holds the settings given (not the defaults); the returned ones are explicit, so a trial
    that gets them (Ray, a resume) settles to the same values."""
    classes, out = images.classes, {}
    if config.get("minority_classes") is not None:
        out["minority_classes"] = sorted({class_index(classes, c, "minority_classes") for c in config["minority_classes"]})
    else:
        out["minority_classes"] = default_minority(images.info.get("found_counts", images.class_counts()))
    if config.get("minority_keep") is None:
        out["minority_keep"] = 1.0  # natural: the counts as found
    imb = config.get("imbalance")
    if isinstance(imb, dict):
        # int keys: a settled config settles to itself (a string "1" could name a class folder "1")
        out["imbalance"] = {class_index(classes, c, "imbalance"): float(f) for c, f in imb.items()}
    weights = config.get("class_weights")
    if weights is not None and len(weights) != len(classes):
        raise ConfigError(f"class_weights has {len(weights)} weights but the data has {len(classes)} classes "
                          f"({', '.join(classes)}): give one per class")
    return out


def check_fits(cfg: dict, images) -> None:
    """The checks that need the data: the model takes its shape; image-only remedies on tables;
    class indices within the data's classes. One line each, before any trial runs."""
    from tuner import models

    reason = models.check_input(cfg["model"], images.input_shape, cfg)
    if reason:
        what = f"feature vectors of {images.input_shape[0]} features" if images.kind == "table" else \
            "images of shape {}x{}x{} (CxHxW)".format(*images.input_shape)
        raise ConfigError(f"model {cfg['model']!r} cannot take {what}: {reason}")
    if images.kind == "table" and cfg["rotation_deg"] > 0:
        raise ConfigError(f"rotation_deg={cfg['rotation_deg']:g} rotates images: it does not apply to table data; "
                          "unset it (noise_sigma, ros_target, minority_weight, sampling_q and the losses do apply)")
    k = images.num_classes
    if not is_own(cfg["dataset"]):
        return  # the built-in datasets' classes are checked by tuner.config
    bad = [c for c in cfg["minority_classes"] if not (isinstance(c, int) and 0 <= c < k)]
    if bad:
        raise ConfigError(f"minority_classes={cfg['minority_classes']!r}: class {bad[0]!r} is not one of the data's "
                          f"{k} classes (0-{k - 1}: {', '.join(images.classes)})")
    if cfg["class_weights"] is not None and len(cfg["class_weights"]) != k:
        raise ConfigError(f"class_weights has {len(cfg['class_weights'])} weights but the data has {k} classes: give one per class")


def describe(images, minority) -> list[str]:
    """The console lines a search prints about own data before it starts."""
    found, test = images.info.get("found_counts"), images.info.get("test_counts")
    counts = ", ".join(f"{name}{'*' if c in minority else ''} {found[c]}" for c, name in enumerate(images.classes))
    shape = "x".join(map(str, images.input_shape))
    lines = [f"{images.kind} data {images.info.get('source', images.name)}: {images.num_classes} classes, "
             f"{'features' if images.kind == 'table' else 'CxHxW'} {shape}",
             f"training counts as found (* = minority): {counts}; test {sum(test)} ({images.info.get('test_split')})"]
    if not minority:
        lines.append("no class has fewer than half the median count: the minority metrics are empty (NaN) and the "
                     "minority remedies do nothing; name the minority with minority_classes=[...]")
    return lines
