"""Settings, declared once: `Param` (default, type, check, label, search range, "off" value), the
search ranges `Range` and `Choice`, the checks shared by many settings, and `CORE`, the settings
every trial understands whatever its task and remedies. A leaf module: everything imports it.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable

from tuner.images import parse_size


@dataclass(frozen=True)
class Range:
    low: float
    high: float
    scale: str = "linear"  # linear | log | int
    grid: tuple = ()  # values used when the search is a grid

    def grid_values(self) -> list:
        if self.grid:
            return list(self.grid)
        if self.scale == "int":
            return list(range(int(self.low), int(self.high) + 1))
        if self.scale == "log":
            import math

            lo, hi = math.log10(self.low), math.log10(self.high)
            return [float(f"{10 ** (lo + i * (hi - lo) / 4):.3g}") for i in range(5)]
        return [round(self.low + i * (self.high - self.low) / 4, 6) for i in range(5)]

    def narrow(self, low=None, high=None, grid=None) -> "Range":
        """The same range, narrowed by an experiment (only the parts given change)."""
        return replace(self, low=self.low if low is None else low, high=self.high if high is None else high,
                       grid=self.grid if grid is None else tuple(grid))

    def describe(self) -> str:
        return f"{self.low:g}..{self.high:g}" + (" (log)" if self.scale == "log" else "")


@dataclass(frozen=True)
class Choice:
    values: tuple

    def grid_values(self) -> list:
        return list(self.values)

    def describe(self) -> str:
        return "{" + ", ".join(map(str, self.values)) + "}"


NOT_A_SWITCH = object()  # `Param.off` of a setting that does not switch anything on or off


@dataclass(frozen=True)
class Param:
    """A setting, declared once: everything else (defaults, `--set` coercion, checks, search
    ranges, plot labels, the "no remedy" baseline of a comparison) reads this declaration."""

    default: Any
    kind: type | tuple  # accepted Python type(s) after coercion; None always allowed when default is None
    check: Callable[[Any], str | None] | None = None  # returns what is allowed when the value is bad
    help: str = ""
    label: str = ""  # axis and table label, with its unit: "minority-class loss weight (x)"
    search: "Range | Choice | None" = None  # the range searched when an experiment sweeps it
    off: Any = NOT_A_SWITCH  # the value that means "this remedy is off" (a comparison's baseline)

    @property
    def is_switch(self) -> bool:
        return self.off is not NOT_A_SWITCH


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
    try:
        parse_size(v)
    except ValueError:
        return "H or H,W in pixels, each >= 1"
    return None


CORE: dict[str, Param] = {
    "experiment": Param("", str, help="experiment name, recorded in every result"),
    "group": Param("", str, help="label of a study group (unbalanced, augmented, irm, ...)"),
    "budget": Param("", str, help="budget name, recorded in every result"),
    "rerun_of": Param("", str, help="the run whose best configurations this trial re-runs (--rerun-top), recorded in every result"),
    "objectives": Param("", str, help="metrics of a multi-objective (Pareto) search, comma-separated, recorded in every result"),
    "task": Param(None, str, help="study task (tuner.tasks): classification, digit_pairs, ...; "
                  "default: the task whose datasets include `dataset`, else classification"),
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
    "max_steps": Param(None, int, positive, "a budget in optimizer steps: the trial stops after this many (mid-epoch "
                       "if need be), so that arms drawing more samples per epoch get the same compute (None = epochs only)"),
    "batch_size": Param(256, int, positive, label="batch size (images)"),
    "eval_batch_size": Param(4096, int, positive),
    "lr": Param(1e-3, float, positive, label="learning rate"),
    "weight_decay": Param(0.0, float, non_negative, label="weight decay", off=0.0),
    "optimizer": Param("adam", str, one_of("adam", "adamw", "sgd")),
    "momentum": Param(0.9, float, non_negative, "SGD momentum"),
    "checkpoint_every": Param(1, int, positive, "epochs between checkpoints"),
    "device": Param("auto", str, one_of("auto", "cpu", "cuda"), "auto: cuda when available"),
    "channels_last": Param(False, bool, help="conv models: weights and batches in channels_last (NHWC) memory order "
                           "(faster convolutions on some machines: docs/performance.md); off keeps earlier numbers"),
    # the pretrained VGG16's ImageNet weights from a local file (tuner.models.load_vgg16_features): checked here,
    # before any data is loaded or Ray starts; docs/studies.md says how to get the file
    "vgg_weights": Param(None, str, lambda v: _vgg_weights(v),
                         "vgg (vgg_variant=vgg16, pretrained=true): ImageNet VGG16 weights from this local file (torchvision's "
                         "vgg16-397923af.pth: a state dict, checked by sha256, loaded weights_only) instead of a download"),
    "precision": Param("fp32", str, one_of("fp32", "bf16", "fp16"),
                       "forward passes under autocast in this dtype (fp16 adds a GradScaler); weights stay fp32"),
}


FP16_ON_CPU = ("precision='fp16' needs a CUDA GPU (CPU kernels such as the LSTM's have no fp16 path): "
               "use precision=fp32, or bf16 on a CPU with bf16 kernels")
BF16_ON_CPU = ("precision='bf16' on this CPU: it has no bf16 kernels (oneDNN refuses the LSTM in bf16; convolutions "
               "run emulated, about 8x slower than fp32; AVX-512 BF16 or AMX CPUs have them): use precision=fp32, or a GPU")
