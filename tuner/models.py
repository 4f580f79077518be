"""Model registry: every classifier a trial can ask for by name.

Constructors take (input_shape, num_classes, options) where input_shape is
(C, H, W) and options is the trial config merged over OPTIONS, so a
constructor can read its own keys without caring about the rest of the
config. Seeding is the caller's job; constructors only draw from the
global torch RNG so a fixed torch.manual_seed gives identical weights.
"""

from __future__ import annotations

import hashlib
import math
import re
from pathlib import Path
from typing import Callable

from tuner.lazy import lazy

torch = lazy("torch", globals())  # imported on first use (tuner.lazy): the driver's checks need no torch
nn = lazy("torch.nn", globals())
nets = lazy("tuner.nets", globals())  # the classes among the models

MODELS: dict[str, Callable[..., nn.Module]] = {}

# Config keys the models read, with their defaults.
OPTIONS = {"final_relu": False, "pretrained": True, "vgg_variant": "vgg16", "hidden": 128, "layers": 2}


def register(name: str):
    def add(constructor):
        MODELS[name] = constructor
        return constructor

    return add


def build_model(name, input_shape, num_classes=10, options=None) -> nn.Module:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}: choose one of {', '.join(sorted(MODELS))}")
    return MODELS[name](tuple(input_shape), num_classes, {**OPTIONS, **(options or {})})


def check_input(name: str, input_shape, options=None) -> str | None:
    """Why model `name` cannot take inputs of `input_shape` ((C, H, W) images, (F,) feature
    vectors), or None when it can. Asked before a search starts, so no trial fails on a shape."""
    options = {**OPTIONS, **(options or {})}
    if name == "mlp":
        return None if options["hidden"] >= 1 and options["layers"] >= 0 else "hidden must be >= 1 and layers >= 0"
    if len(input_shape) != 3:
        return "it reads images (C x H x W); for feature vectors use model=mlp"
    c, h, w = input_shape
    if name in ("cnn",) and min(h, w) < 2:
        return "it pools once: images need at least 2x2 pixels; set image_size"
    if name == "cifar_cnn" and min(h, w) < 8:
        return "it pools three times: images need at least 8x8 pixels; set image_size=8 or more, or use model=cnn"
    if name == "vgg" and c not in (1, 3):
        return f"its filters take 1 (grey) or 3 (RGB) channels, not {c}"
    return None


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def model_bytes(model: nn.Module) -> int:
    tensors = list(model.parameters()) + list(model.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)


# --- sequence models: an image is read row by row, H steps of C*W features ---


@register("elman")
def elman(input_shape, num_classes, options):
    c, _, w = input_shape
    return nets.LastStep(nn.RNN(c * w, 128, nonlinearity="tanh", batch_first=True), num_classes)


@register("lstm")
def lstm(input_shape, num_classes, options):
    c, _, w = input_shape
    return nets.LastStep(nn.LSTM(c * w, 128, batch_first=True), num_classes)


@register("lstm2")
def lstm2(input_shape, num_classes, options):
    c, _, w = input_shape
    return nets.LastStep(nn.LSTM(c * w, 100, num_layers=2, batch_first=True), num_classes)


@register("lstm_mlp")
def lstm_mlp(input_shape, num_classes, options):
    return nets.LSTMMLP(input_shape, num_classes, bool(options["final_relu"]))


# --- feature vectors (tables), or any input flattened ---


@register("mlp")
def mlp(input_shape, num_classes, options):
    """`layers` hidden layers of `hidden` units (ReLU); layers=0 is logistic regression."""
    width, blocks = math.prod(input_shape), []
    for _ in range(int(options["layers"])):
        blocks += [nn.Linear(width, int(options["hidden"])), nn.ReLU()]
        width = int(options["hidden"])
    return nn.Sequential(nn.Flatten(), *blocks, nn.Linear(width, num_classes))


# --- convolutional models ---


@register("cnn")
def cnn(input_shape, num_classes, options):
    c, h, w = input_shape
    return nn.Sequential(
        nn.Conv2d(c, 32, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * (h // 2) * (w // 2), 256),
        nn.ReLU(),
        nn.Linear(256, num_classes),
    )


@register("cifar_cnn")
def cifar_cnn(input_shape, num_classes, options):
    c, h, w = input_shape
    blocks = []
    for out_channels in (32, 64, 128):
        blocks += [nn.Conv2d(c, out_channels, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        c = out_channels
    return nn.Sequential(
        *blocks,
        nn.Flatten(),
        nn.Linear(128 * (h // 8) * (w // 8), 256),
        nn.ReLU(),
        nn.Linear(256, 128),
        nn.ReLU(),
        nn.Linear(128, num_classes),
    )


def _tv():
    """torchvision.models, imported on first use: it also imports torch._dynamo (about 1 s), which
    every trial's worker process would otherwise pay for the models that do not need it."""
    import torchvision.models

    return torchvision.models


def _vgg16_layers() -> nn.Sequential:
    """torchvision's VGG16 feature layers (its layer configuration "D"), freshly initialised."""
    return _tv().vgg.make_layers(_tv().vgg.cfgs["D"])


def _random_vgg_features(cfg) -> nn.Sequential:
    # Building torchvision's whole vgg16 just for random features would also
    # allocate and initialise its ~120M-parameter classifier (seconds, ~0.5 GB),
    # so build the features alone with torchvision's own conv initialisation.
    features = _tv().vgg.make_layers(cfg)
    for m in features:
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
    return features


# --- ImageNet VGG16 weights from a local file (vgg_weights=PATH), checked like torchvision checks its download ---

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # the statistics the ImageNet weights were trained with
IMAGENET_STD = (0.229, 0.224, 0.225)


def vgg16_sha256_prefix() -> str:
    """The hex digits in the file name of torchvision's VGG16_Weights.IMAGENET1K_V1 (…/vgg16-397923af.pth):
    the start of the file's sha256, which torchvision checks on download (check_hash)."""
    url = _tv().VGG16_Weights.IMAGENET1K_V1.url
    return re.search(r"-([0-9a-f]+)\.pth$", url).group(1)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


_VERIFIED: set = set()  # (path, size, mtime) of files already checked in this process: hashed once


def load_vgg16_features(path) -> dict[str, torch.Tensor]:
    """The feature-layer weights of ImageNet VGG16 from a local file: the state dict of torchvision's
    vgg16 (`features.N.weight` / `.bias`; `classifier.*` is ignored), checked by sha256 against
    torchvision's published hash prefix and loaded with `weights_only=True` (tensors only, no code).
    Returns `features`' own state dict (keys `N.weight`). Raises ValueError with one line saying what is wrong."""
    p = Path(path).expanduser()
    key = _file_key(p)
    if key is None:
        raise ValueError("there is no such file")
    if key not in _VERIFIED:
        prefix, digest = vgg16_sha256_prefix(), _sha256(p)
        if not digest.startswith(prefix):
            raise ValueError(f"its sha256 starts {digest[:len(prefix)]}, not {prefix} as torchvision's "
                             f"VGG16_Weights.IMAGENET1K_V1 ({_tv().VGG16_Weights.IMAGENET1K_V1.url})")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001  pickle errors, zip errors, non-tensor objects
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise ValueError(f"it is not a PyTorch state dict that loads with weights_only=True ({reason})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"it is not a state dict of tensors (found {type(state).__name__})")
    expected = _vgg16_layers().state_dict()
    features = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
    missing = [f"features.{k}" for k in expected if k not in features]
    if missing:
        raise ValueError(f"it has no VGG16 feature weights: missing {', '.join(missing[:3])}"
                         + (f" and {len(missing) - 3} more" if len(missing) > 3 else ""))
    wrong = [f"features.{k}" for k, v in expected.items() if tuple(features[k].shape) != tuple(v.shape)]
    if wrong:
        k = wrong[0].removeprefix("features.")
        raise ValueError(f"it is not VGG16: {wrong[0]} has shape {tuple(features[k].shape)}, "
                         f"VGG16's is {tuple(expected[k].shape)}")
    _VERIFIED.add(key)
    return {k: features[k] for k in expected}


def _file_key(path) -> tuple | None:
    p = Path(path).expanduser()
    return (str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) if p.is_file() else None


def check_vgg_weights(path) -> str | None:
    """Config check (tuner.config): None when the file is the ImageNet VGG16 weights, else what is wrong.
    A file already checked in this process (same path, size and time) is not read again: a plan
    resolves every trial's config."""
    if _file_key(path) in _VERIFIED:
        return None
    try:
        load_vgg16_features(path)
    except ValueError as e:
        return str(e)
    return None


def uses_imagenet_stats(options: dict) -> bool:
    """Inputs normalised with ImageNet's statistics: the pretrained VGG16 (download or vgg_weights)."""
    options = {**OPTIONS, **options}
    return options.get("model") == "vgg" and options["vgg_variant"] == "vgg16" and bool(options["pretrained"])


def input_stats(options: dict, mean, std) -> tuple[tuple, tuple]:
    """The (mean, std) a model's inputs are normalised with: ImageNet's for the pretrained VGG16 (grey
    images take their mean over the three channels, as they go through the RGB filters), else the data's."""
    if not uses_imagenet_stats(options) or len(mean) not in (1, 3):
        return tuple(mean), tuple(std)
    if len(mean) == 1:
        return (sum(IMAGENET_MEAN) / 3,), (sum(IMAGENET_STD) / 3,)
    return IMAGENET_MEAN, IMAGENET_STD


def _pretrained_vgg16_features(path=None) -> nn.Sequential:
    if path:  # a local file, checked before the search started (tuner.config); checked again here
        features = _vgg16_layers()
        try:
            features.load_state_dict(load_vgg16_features(path))
        except ValueError as e:
            raise RuntimeError(f"could not load vgg_weights={str(path)!r}: {e}") from None
        return features
    weights = _tv().VGG16_Weights.IMAGENET1K_V1
    try:
        return _tv().vgg16(weights=weights).features
    except Exception as e:  # offline, bad cache, hash mismatch: all end the same way
        reason = (str(e).splitlines() or [""])[0][:200] or type(e).__name__
        raise RuntimeError(
            f"could not load ImageNet weights for vgg ({reason}); "
            "set pretrained=false to train from random initialisation"
        ) from e


@register("vgg")
def vgg(input_shape, num_classes, options):
    variant = options["vgg_variant"]
    if variant == "vgg16":
        if options["pretrained"]:
            features = _pretrained_vgg16_features(options.get("vgg_weights"))
        else:
            features = _random_vgg_features(_tv().vgg.cfgs["D"])
    elif variant == "tiny":  # CPU smoke tests; never pretrained
        features = _random_vgg_features([16, "M", 32, "M", 64, "M"])
    else:
        raise ValueError(f"unknown vgg_variant {variant!r}: choose one of tiny, vgg16")
    return nets.VGG(features, num_classes)
