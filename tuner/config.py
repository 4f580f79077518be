"""Every setting a trial understands, declared once with its default, type and check.

A trial config is a flat dict. `resolve` fills defaults and rejects bad values with one line
naming the value and what is allowed, before any data is loaded or any model is built. Remedy
settings are declared beside their code in `tuner.remedies`, model options in `tuner.models`.
"""
from __future__ import annotations

import json
import re
from typing import Any

from tuner.errors import ConfigError
from tuner.settings import (  # noqa: F401  (re-exported)
    BF16_ON_CPU, CORE, FP16_ON_CPU, Param, data_seed_of, fraction, non_negative, one_of, positive,
)


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


def all_params(task=None) -> dict[str, Param]:
    """The settings a config of `task` (a `tuner.tasks.Task`; default every registered task's) understands."""
    from tuner import models, remedies, tasks

    checks = {"hidden": positive, "layers": non_negative}  # the mlp's width and depth
    model_params = {k: Param(v, type(v), checks.get(k), help="model option") for k, v in models.OPTIONS.items()}
    task_params = task.settings if task is not None else {k: p for t in tasks.TASKS.values() for k, p in t.settings.items()}
    return {**CORE, **model_params, **remedies.params(), **task_params}


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
    from tuner import data, models, remedies, tasks

    task = tasks.for_config(config)
    params = all_params(task)
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
    cfg["task"] = task.name

    if data.is_own(cfg["dataset"]) and cfg["data_seed"] == "seed":  # own data's test split is made once per run
        raise ConfigError("data_seed='seed' applies to the built-in datasets: own data is split into train and test "
                          "once per run; give data_seed an integer")
    cfg["data_seed"] = data_seed_of(cfg["data_seed"], cfg["seed"])  # trials, make_split and results see an integer
    if cfg["model"] not in models.MODELS:
        from tuner import plugins

        plugins.load()  # a task plug-in's model
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
    if cfg["precision"] != "fp32" and cfg["device"] == "cpu":
        from tuner.precision import check_device  # torch: only for these settings

        check_device(cfg["precision"], "cpu")
    remedies.check(cfg)
    for other in tasks.TASKS.values():
        if other is not task:
            other.check_other(cfg)
    task.check(cfg)
    return cfg
