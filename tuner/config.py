"""Every setting a trial understands, declared once with its default, type and check.

A trial config is a flat dict. `resolve` fills defaults and rejects bad values with one line
naming the value and what is allowed, before any data is loaded or any model is built. Remedy
settings are declared beside their code in `tuner.remedies`, model options in `tuner.models`.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Callable

from tuner.errors import ConfigError


@dataclass(frozen=True)
class Param:
    default: Any
    kind: type | tuple  # accepted Python type(s) after coercion; None always allowed when default is None
    check: Callable[[Any], str | None] | None = None  # returns what is allowed when the value is bad
    help: str = ""


def positive(v):
    return None if v > 0 else "a number > 0"


def non_negative(v):
    return None if v >= 0 else "a number >= 0"


def fraction(v):
    return None if 0 < v <= 1 else "a fraction in (0, 1]"


def one_of(*names):
    return lambda v: None if v in names else "one of " + ", ".join(names)


# Class lists and dicts take indices or, for own data, class (folder or label) names; whether they
# exist is checked once the data is known (`tuner.owndata.settle`). The built-in datasets have
# classes 0-9, checked here at once (`_builtin_classes`).
def _classes(v):
    if all((isinstance(c, int) and not isinstance(c, bool) and c >= 0) or (isinstance(c, str) and c) for c in v):
        return None
    return "a list of class names or indices >= 0"


def _imbalance(v):
    if isinstance(v, str):
        if v == "natural":
            return None
        try:
            rho = float(v.split(":", 1)[1]) if v.startswith("long_tail:") else None
        except ValueError:
            rho = None
        return None if rho is not None and 0 < rho <= 1 else ("a dict class->fraction, 'natural' or 'long_tail:RHO' "
                                                             "with 0 < RHO <= 1")
    for c, f in v.items():
        if not isinstance(f, (int, float)) or isinstance(f, bool) or not 0 < float(f) <= 1:
            return f"kept fractions in (0, 1] (got {f!r} for class {c})"
    return None


def _builtin_classes(cfg: dict) -> None:
    """The built-in datasets' classes are the labels 0-9."""
    bad = [c for c in cfg["minority_classes"] if not (isinstance(c, int) and 0 <= c <= 9)]
    if bad:
        raise ConfigError(f"minority_classes={cfg['minority_classes']!r} is not allowed: expected a list of class labels in 0-9")
    if isinstance(cfg["imbalance"], dict):
        for c in cfg["imbalance"]:
            if not str(c).lstrip("-").isdigit() or not 0 <= int(c) <= 9:
                raise ConfigError(f"imbalance={cfg['imbalance']!r} is not allowed: expected class labels in 0-9 (got class {c!r})")
    if cfg["class_weights"] is not None and len(cfg["class_weights"]) != 10:
        raise ConfigError(f"class_weights={cfg['class_weights']!r} is not allowed: expected a list of 10 per-class weights, each > 0")


def _data_seed(v):
    """An integer >= 0, or 'seed' (the trial's seed)."""
    ok = v == "seed" if isinstance(v, str) else v >= 0
    return None if ok else "an integer >= 0 or 'seed' (the trial's seed)"


def data_seed_of(value, seed: int) -> int:
    """The data seed a trial uses: `data_seed`, or the trial's `seed` when data_seed='seed'."""
    return int(seed) if value == "seed" else int(value)


def _vgg_weights(v):
    from tuner.models import check_vgg_weights

    wrong = check_vgg_weights(v)
    return None if wrong is None else f"the ImageNet VGG16 weights file, but {wrong}"


def _size(v):
    from tuner.owndata import parse_size

    try:
        parse_size(v)
    except ValueError:
        return "H or H,W in pixels, each >= 1"
    return None


CORE: dict[str, Param] = {
    "experiment": Param("", str, help="experiment name, recorded in every result"),
    "group": Param("", str, help="label of a study group (unbalanced, augmented, irm, ...)"),
    "budget": Param("", str, help="budget name, recorded in every result"),
    "objectives": Param("", str, help="metrics of a multi-objective (Pareto) search, comma-separated, recorded in every result"),
    "dataset": Param("mnist", str, help="dataset name: mnist, mnist-sample, cifar10, imagefolder:PATH, table:PATH"),
    "dataset_fallback": Param(False, bool, help="fall back to mnist-sample when the dataset is unavailable"),
    "data_dir": Param(None, str, help="data folder (else $TUNER_DATA_DIR, else ~/.cache/imbalance-tune/data)"),
    "model": Param("lstm", str, help="model name (tuner.models.MODELS)"),
    "seed": Param(0, int, help="seed of initialisation, sampling and augmentation"),
    "data_seed": Param(0, (int, str), _data_seed,
                       "seed of the imbalanced subset and the validation split; 'seed': the trial's own seed, so that "
                       "a study's seeds also vary which images were kept (its CIs then cover that choice)"),
    "minority_classes": Param([0, 1, 2, 3, 4], list, _classes,
                              "minority classes (group I); own data: names or indices, default those under half the median count"),
    "minority_keep": Param(0.1, float, fraction, "kept fraction of each minority class (own data: 1, natural counts)"),
    "imbalance": Param(None, (dict, str), _imbalance, "class -> kept fraction, or 'long_tail:RHO'"),
    # own data (tuner.owndata): imagefolder:PATH and table:PATH
    "image_size": Param(None, (int, str, list), _size, "imagefolder: resize every image to H or H,W pixels"),
    "test_fraction": Param(0.2, float, lambda v: None if 0 < v < 1 else "a fraction in (0, 1)",
                           "own data without a test folder: stratified, seeded (data_seed) test split"),
    "label": Param(None, str, help="table: the label column"),
    "impute": Param("drop", str, one_of("drop", "median"), "table: rows with missing values dropped, or imputed with the training median"),
    "val_fraction": Param(0.1, float, lambda v: None if 0 < v < 1 else "a fraction in (0, 1)"),
    "epochs": Param(10, int, positive, "maximum epochs"),
    "batch_size": Param(256, int, positive),
    "eval_batch_size": Param(4096, int, positive),
    "lr": Param(1e-3, float, positive),
    "weight_decay": Param(0.0, float, non_negative),
    "optimizer": Param("adam", str, one_of("adam", "adamw", "sgd")),
    "momentum": Param(0.9, float, non_negative, "SGD momentum"),
    "checkpoint_every": Param(1, int, positive, "epochs between checkpoints"),
    "device": Param("auto", str, one_of("auto", "cpu", "cuda"), "auto: cuda when available"),
    "channels_last": Param(False, bool, help="conv models: weights and batches in channels_last (NHWC) memory order; "
                           "the cnn's CPU step 1.34x alone, its trial step 1.09x (docs/performance.md); off keeps earlier numbers"),
    # the pretrained VGG16's ImageNet weights from a local file (tuner.models.load_vgg16_features): checked here,
    # before any data is loaded or Ray starts; docs/studies.md says how to get the file
    "vgg_weights": Param(None, str, lambda v: _vgg_weights(v),
                         "vgg (vgg_variant=vgg16, pretrained=true): ImageNet VGG16 weights from this local file (torchvision's "
                         "vgg16-397923af.pth: a state dict, checked by sha256, loaded weights_only) instead of a download"),
    "precision": Param("fp32", str, one_of("fp32", "bf16", "fp16"),
                       "forward passes under autocast in this dtype (fp16 adds a GradScaler); weights stay fp32"),
}


FP16_ON_CPU = ("precision='fp16' needs a CUDA GPU (CPU kernels such as the LSTM's have no fp16 path): "
               "use precision=bf16 on CPU")


def all_params() -> dict[str, Param]:
    from tuner import models, pairs, remedies

    checks = {"hidden": positive, "layers": non_negative}  # the mlp's width and depth
    model_params = {k: Param(v, type(v), checks.get(k), help="model option") for k, v in models.OPTIONS.items()}
    return {**CORE, **model_params, **remedies.PARAMS, **pairs.PARAMS}


def defaults() -> dict[str, Any]:
    return {k: p.default for k, p in all_params().items()}


def coerce(key: str, value: Any, param: Param) -> Any:
    """Convert a value (possibly a string from `--set key=value`) to the parameter's type."""
    if value is None:
        return None
    if key == "data_seed" and isinstance(value, str) and value.strip().isdigit():  # an integer, or the text 'seed'
        return int(value)
    kinds = param.kind if isinstance(param.kind, tuple) else (param.kind,)
    structured = isinstance(value, str) and value[:1] in "[{" and (dict in kinds or list in kinds)
    if isinstance(value, str) and (str not in kinds or structured):  # imbalance={...} is a dict, not text
        try:
            value = _loose_json(value.replace("'", '"')) if value[:1] in "[{" else _scalar(value)
        except (json.JSONDecodeError, ValueError):
            pass
    if bool in kinds and isinstance(value, bool):
        return value
    if float in kinds and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if int in kinds and isinstance(value, float) and value.is_integer():
        return int(value)
    if list in kinds and isinstance(value, tuple):
        return list(value)
    if isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds):
        return value
    names = " or ".join(k.__name__ for k in kinds)
    raise ConfigError(f"{key}={value!r} has the wrong type: expected {names}")


def _loose_json(s: str):
    """JSON, where class names may go unquoted as typed in a shell: [cat,dog], {cat:0.5}."""
    try:
        return json.loads(s)
    except json.JSONDecodeError:
        pass

    def quote(m):
        token = m.group(2).strip()
        try:
            json.loads(token)
            return m.group(1) + token
        except json.JSONDecodeError:
            return m.group(1) + json.dumps(token)

    return json.loads(re.sub(r'([\[{,:])([^\[\]{},:"]+)(?=[,\]}:])', quote, s))


def _scalar(s: str):
    low = s.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    try:
        return int(s)
    except ValueError:
        return float(s)


def resolve(config: dict) -> dict:
    """Defaults + the given values, type-checked and validated. Raises ConfigError (one line)."""
    params = all_params()
    unknown = sorted(set(config) - set(params))
    if unknown:
        raise ConfigError(f"unknown setting {unknown[0]!r}: known settings are {', '.join(sorted(params))}")
    cfg = {}
    for key, p in params.items():
        value = coerce(key, config[key], p) if key in config else p.default
        if value is not None and p.check is not None:
            allowed = p.check(value)
            if allowed:
                raise ConfigError(f"{key}={value!r} is not allowed: expected {allowed}")
        cfg[key] = value
    from tuner import data, models, pairs, remedies

    if data.is_own(cfg["dataset"]) and cfg["data_seed"] == "seed":  # own data's test split is made once per run
        raise ConfigError("data_seed='seed' applies to the built-in datasets: own data is split into train and test "
                          "once per run; give data_seed an integer")
    cfg["data_seed"] = data_seed_of(cfg["data_seed"], cfg["seed"])  # trials, make_split and results see an integer
    if cfg["model"] not in models.MODELS:
        raise ConfigError(f"unknown model {cfg['model']!r}: choose one of {', '.join(sorted(models.MODELS))}")
    if not data.is_own(cfg["dataset"]):
        data._check_known(cfg["dataset"])
        _builtin_classes(cfg)
    kind = cfg["dataset"].split(":", 1)[0]
    for key, applies in (("image_size", "imagefolder"), ("label", "table")):
        if cfg[key] is not None and kind != applies:  # silently ignored, it would mislead
            raise ConfigError(f"{key}={cfg[key]!r} applies to {applies}:PATH data only, not to dataset {cfg['dataset']!r}")
    if cfg["vgg_weights"] and cfg["model"] == "vgg" and not (cfg["vgg_variant"] == "vgg16" and cfg["pretrained"]):
        raise ConfigError(f"vgg_weights={cfg['vgg_weights']!r} applies to the pretrained VGG16 only: set vgg_variant=vgg16 "
                          f"and pretrained=true (got vgg_variant={cfg['vgg_variant']!r}, pretrained={cfg['pretrained']})")
    if cfg["precision"] == "fp16" and cfg["device"] == "cpu":
        raise ConfigError(FP16_ON_CPU)
    remedies.check(cfg)
    pairs.check(cfg)
    return cfg
