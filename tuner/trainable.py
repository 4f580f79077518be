"""One trial: `train(config)` builds data, model, remedies and optimizer from the config, trains
epoch by epoch and reports every metric. Plain PyTorch; Ray only enters through the reporter.

    train(config)                        # plain call: loads the data itself, returns the history
    tune_trainable(config, data=images)  # inside Ray Tune (tune.with_parameters puts `data` in the
                                         # object store once per search): tune.report + checkpoints
"""
from __future__ import annotations

import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from tuner import config as config_mod
from tuner import losses
from tuner import metrics as metrics_mod
from tuner import remedies
from tuner.data import Images, load_dataset, make_split
from tuner.device_data import DeviceData
from tuner.models import build_model, count_parameters, model_bytes

STATE_FILE = "state.pt"
_loaded: dict[tuple, Images] = {}  # plain calls in one process load each dataset once


class LocalReporter:
    """Reporter for plain calls: keeps the history; with `checkpoint_dir`, saves and resumes too."""

    def __init__(self, checkpoint_dir: str | Path | None = None, verbose: bool = False):
        self.history: list[dict] = []
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.verbose = verbose

    def restore(self):
        path = self.checkpoint_dir / STATE_FILE if self.checkpoint_dir else None
        return load_state(path, self) if path and path.exists() else None

    def report(self, metrics: dict, state: dict | None) -> None:
        self.history.append(metrics)
        if self.verbose:
            print(f"epoch {metrics['epoch']}: train_loss {metrics['train_loss']:.4f} "
                  f"val_balanced_acc {metrics['val_balanced_acc']:.4f} acc {metrics['acc']:.4f} "
                  f"minority_acc {metrics['minority_acc']:.4f} ({metrics['epoch_time_s']:.1f} s)")
        if state is not None and self.checkpoint_dir:
            self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
            save_state(state, self.checkpoint_dir)


class TuneReporter:
    """Reporter inside a Ray Tune trial: `tune.report` with a checkpoint, `tune.get_checkpoint`."""

    @property
    def node_id(self) -> str:
        # which Ray node ran the epoch: on one machine all nodes share node_ip and hostname
        import ray

        return ray.get_runtime_context().get_node_id()

    def restore(self):
        from ray import tune

        checkpoint = tune.get_checkpoint()
        if checkpoint is None:
            return None
        with checkpoint.as_directory() as d:
            return load_state(Path(d) / STATE_FILE, self)

    def report(self, metrics: dict, state: dict | None) -> None:
        from ray import tune

        if state is None:
            tune.report(metrics)
            return
        with tempfile.TemporaryDirectory() as d:
            save_state(state, Path(d))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))


def save_state(state: dict, folder: Path) -> None:
    tmp = folder / (STATE_FILE + ".tmp")
    torch.save(state, tmp)
    tmp.replace(folder / STATE_FILE)  # never a half-written checkpoint


def load_state(path: Path, reporter=None) -> dict | None:
    """Load a checkpoint with weights_only=True (no pickle of untrusted files). A corrupt one is
    reported by name and the trial restarts from scratch instead of failing again and again. The
    warning also goes to `reporter.restore_warning`, which the trial reports as `checkpoint_warning`
    (a worker's own output is not on the driver's console)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, bad pickle opcode, ...
        warning = f"corrupt checkpoint {path} ({type(e).__name__}: {e}); restarting this trial from epoch 1"
        print(f"WARNING: {warning}")
        if reporter is not None:
            reporter.restore_warning = warning
        return None


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise config_mod.ConfigError("device='cuda' but no CUDA GPU is visible to this trial: use device=auto or cpu")
    return torch.device(name)


def make_optimizer(cfg: dict, model: torch.nn.Module) -> torch.optim.Optimizer:
    params, lr, wd = model.parameters(), cfg["lr"], cfg["weight_decay"]
    if cfg["optimizer"] == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=cfg["momentum"], weight_decay=wd)
    if cfg["optimizer"] == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    return torch.optim.Adam(params, lr=lr, weight_decay=wd)


class Precision:
    """`precision=fp32|bf16|fp16`: forward passes (model and loss) under torch.autocast in that dtype,
    weights and optimizer state in fp32. fp16's narrow range needs loss scaling (GradScaler); bf16
    has fp32's range and needs none. fp32 runs with autocast disabled: the same numbers as without it."""

    DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}

    def __init__(self, name: str, device: torch.device):
        self.name, self.device_type, self.dtype = name, device.type, self.DTYPES[name]
        self.scaler = torch.amp.GradScaler(device.type, enabled=name == "fp16")

    def autocast(self):
        return torch.autocast(self.device_type, dtype=self.dtype, enabled=self.dtype is not None)

    def step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        self.scaler.scale(loss).backward()  # unscaled when disabled
        self.scaler.step(optimizer)  # skips the step if fp16 gradients overflowed
        self.scaler.update()


def memory_format(cfg: dict, model: torch.nn.Module, dd: DeviceData) -> torch.nn.Module:
    """`channels_last=true` on images: the model's weights and every batch in NHWC order, where
    oneDNN's and cuDNN's convolution kernels are faster (the cnn on the CPU: docs/performance.md)."""
    if cfg["channels_last"] and dd.train_x.dim() == 4:
        dd.memory_format = torch.channels_last
        return model.to(memory_format=torch.channels_last)
    return model


def dataset_for(cfg: dict) -> Images:
    from tuner.owndata import LOAD_KEYS

    key = (cfg["dataset"], cfg["data_dir"], cfg["dataset_fallback"], *(str(cfg[k]) for k in LOAD_KEYS))
    if key not in _loaded:
        _loaded[key] = load_dataset(cfg["dataset"], cfg["data_dir"], fallback=cfg["dataset_fallback"], options=cfg)
    return _loaded[key]


# On CPU, evaluation batches larger than this are run in pieces of this size: a 4096-image batch
# makes activations of 100+ MB per layer (the CNN's 32x28x28 maps, the LSTM's input gates) that
# stream through DRAM, while 128-image pieces mostly stay in cache: evaluation ran ~1.5x faster
# for lstm and ~2.5x for cnn (2-core EPYC; 64 and 256 were slower). GPUs keep eval_batch_size.
CPU_EVAL_CHUNK = 128


@torch.inference_mode()
def evaluate(model, dd: DeviceData, x_u8, y, idx, batch_size: int, loss_fn,
             precision: Precision | None = None) -> tuple[torch.Tensor, float]:
    """Confusion matrix and mean loss over (a subset of) a set, in large batches without gradients."""
    model.eval()
    precision = precision or Precision("fp32", dd.device)
    n = len(y) if idx is None else len(idx)
    if dd.device.type == "cpu":
        batch_size = min(batch_size, CPU_EVAL_CHUNK)
    cm = torch.zeros(dd.num_classes, dd.num_classes, dtype=torch.long, device=dd.device)
    loss_sum = torch.zeros((), device=dd.device)
    for s in range(0, n, batch_size):
        if idx is None:
            xb, yb = x_u8[s : s + batch_size], y[s : s + batch_size]
        else:  # index_select copies whole rows (x_u8[b] gathers element by element: ~10x slower on CPU)
            b = idx[s : s + batch_size]
            xb, yb = x_u8.index_select(0, b), y.index_select(0, b)
        with precision.autocast():
            logits = model(dd.normalise(dd.pixels(xb)))
        loss_sum += torch.nn.functional.cross_entropy(logits.float(), yb, reduction="sum")
        cm += metrics_mod.confusion_matrix(yb, logits.argmax(1), dd.num_classes)
    return cm.cpu(), float(loss_sum) / max(n, 1)


def train_epoch(model, dd, cfg, epoch, optimizer, loss_fn, gen, is_minority,
                precision: Precision | None = None) -> tuple[float, float, int, int]:
    """One epoch: (mean training loss, training accuracy, samples drawn, optimizer steps taken)."""
    model.train()
    precision = precision or Precision(cfg["precision"], dd.device)
    loss_fn = losses.for_epoch(loss_fn, epoch)  # DRW switches the class weights at an epoch
    plan = remedies.epoch_plan(cfg, dd.by_class, gen)
    n, bs = len(plan.idx), cfg["batch_size"]
    remix = None
    if cfg["remix_alpha"] > 0:  # Remix pairs images of a batch; its label rule needs the training counts
        remix = losses.Remix(cfg, torch.tensor([len(m) for m in dd.by_class], device=dd.device), gen)
    irm_on = cfg["irm_lambda"] > 0
    irm_w = remedies.irm_weight(cfg, epoch)
    loss_sum = torch.zeros((), device=dd.device)
    correct = torch.zeros((), dtype=torch.long, device=dd.device)
    steps = 0
    for s in range(0, n, bs):
        y = plan.y[s : s + bs]
        if irm_on and len(y) < 2:
            continue  # the IRM estimate needs a pair of distinct samples
        x = dd.pixels(dd.train_x.index_select(0, plan.idx[s : s + bs]))  # rows, not elements: ~10x faster on CPU
        x = remedies.augment(x, plan.sigma[s : s + bs], plan.rotate[s : s + bs], cfg, gen)
        if remix is not None:
            x, y_b, lam_y = remix(x, y)
        with precision.autocast():
            logits = model(dd.normalise(x))
            loss = loss_fn(logits, y) if remix is None else loss_fn.mixed(logits, y, y_b, lam_y)
            if irm_on:
                loss = loss + irm_w * remedies.irm_environments_penalty(cfg, logits, y, loss_fn, is_minority)
                if irm_w > 1.0:
                    loss = loss / irm_w  # keep gradient scale comparable once the penalty dominates
        optimizer.zero_grad(set_to_none=True)
        precision.step(loss, optimizer)
        steps += 1
        with torch.no_grad():  # accumulate on device: no host sync per step
            loss_sum += loss.detach() * len(y)
            correct += (logits.argmax(1) == y).sum()
    # one sync per epoch
    return float(loss_sum) / n, float(correct) / n, n, steps


def train(config: dict, data: Images | None = None, reporter=None) -> list[dict]:
    """Run one trial. Returns the reported history (for plain calls)."""
    cfg = config_mod.resolve(config)
    reporter = reporter or LocalReporter()
    images = data if data is not None else dataset_for(cfg)
    from tuner import owndata, pairs  # pairs: the digit_pairs study: its own targets, models and loss (it imports this module)
    if pairs.is_pairs(cfg):
        return pairs.train_pairs(cfg, images, reporter)
    if owndata.is_own(images.name):  # class names -> indices, the minority classes, natural imbalance
        cfg = config_mod.resolve({**config, **owndata.settle(config, images)})
    owndata.check_fits(cfg, images)
    device = resolve_device(cfg["device"])
    if cfg["precision"] == "fp16" and device.type != "cuda":
        raise config_mod.ConfigError(config_mod.FP16_ON_CPU)
    split = make_split(images, cfg)

    torch.manual_seed(cfg["seed"])
    np.random.seed(cfg["seed"])
    gen = torch.Generator(device=device).manual_seed(cfg["seed"])
    dd = DeviceData(images, split, device)
    model = memory_format(cfg, build_model(cfg["model"], images.input_shape, images.num_classes, cfg).to(device), dd)
    optimizer = make_optimizer(cfg, model)
    precision = Precision(cfg["precision"], device)
    loss_fn = remedies.make_loss(cfg, split.counts.tolist(), device)
    is_minority = torch.zeros(images.num_classes, dtype=torch.bool, device=device)
    is_minority[list(cfg["minority_classes"])] = True

    start, steps, samples_seen = 1, 0, 0  # compute so far: arms that draw more per epoch are compared on these
    state = reporter.restore()
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        gen.set_state(state["generator"])
        if "scaler" in state:
            precision.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["torch_rng"])
        start = int(state["epoch"]) + 1
        steps, samples_seen = int(state.get("steps", 0)), int(state.get("samples_seen", 0))

    static = {
        "experiment": cfg["experiment"],
        "dataset": images.name,  # the dataset actually used (differs after a fallback)
        "seed": cfg["seed"],
        "group": cfg["group"],
        "precision": cfg["precision"],  # recorded whether or not the search set it
        "remedies": ",".join(remedies.active(cfg)),
        "train_counts": split.counts.tolist(),
        # the classes by name, and their counts as found (training part, before any imposed imbalance)
        "classes": json.dumps(list(images.classes)),  # JSON text: Tune's TensorBoard logger rejects lists of text
        "found_counts": images.info.get("found_counts", images.class_counts().tolist()),
        "test_counts": np.bincount(images.test_y, minlength=images.num_classes).tolist(),
        "num_params": count_parameters(model),
        "model_bytes": model_bytes(model),
        "node_id": getattr(reporter, "node_id", None),  # Ray trials only
        "checkpoint_warning": getattr(reporter, "restore_warning", ""),  # why this attempt started over
    }
    for epoch in range(start, cfg["epochs"] + 1):
        if cfg["irm_lambda"] > 0 and cfg["irm_anneal_epochs"] > 0 and epoch == cfg["irm_anneal_epochs"] + 1:
            optimizer = make_optimizer(cfg, model)  # the penalty switches on: Adam's moments are stale
        t0 = time.perf_counter()
        train_loss, train_acc, drawn, taken = train_epoch(model, dd, cfg, epoch, optimizer, loss_fn, gen, is_minority,
                                                          precision)
        steps, samples_seen = steps + taken, samples_seen + drawn
        bs = cfg["eval_batch_size"]
        val_cm, val_loss = evaluate(model, dd, dd.train_x, dd.train_y, dd.val_idx, bs, loss_fn, precision)
        test_cm, test_loss = evaluate(model, dd, dd.test_x, dd.test_y, None, bs, loss_fn, precision)
        minority = cfg["minority_classes"]
        metrics = {
            "epoch": epoch,
            "epoch_time_s": time.perf_counter() - t0,
            "steps": steps,  # optimizer steps since the trial began (over-sampling arms take more per epoch)
            "samples_seen": samples_seen,  # training samples drawn since the trial began, copies included
            "train_loss": train_loss,
            "train_acc": train_acc,
            "val_loss": val_loss,
            **metrics_mod.metrics_from_confusion(val_cm, minority, prefix="val_"),
            "loss": test_loss,
            **metrics_mod.metrics_from_confusion(test_cm, minority),
            "confusion": test_cm.tolist(),
            "val_confusion": val_cm.tolist(),
            "stop_reason": "",
            **static,
        }
        if not math.isfinite(train_loss):
            # stop this trial with the reason recorded; retrying would diverge the same way
            metrics["stop_reason"] = f"non-finite training loss at epoch {epoch} (lr={cfg['lr']:g})"
            reporter.report(metrics, None)
            break
        last = epoch == cfg["epochs"]
        state = None
        if last or epoch % cfg["checkpoint_every"] == 0:
            state = {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "generator": gen.get_state(),
                "torch_rng": torch.get_rng_state(),
                "epoch": epoch,
                "steps": steps,
                "samples_seen": samples_seen,
            }
            if precision.scaler.is_enabled():
                state["scaler"] = precision.scaler.state_dict()
        reporter.report(metrics, state)
    return getattr(reporter, "history", [])


def tune_trainable(config: dict, data: Images | None = None) -> None:
    """The function Ray Tune runs: `tune.with_parameters(tune_trainable, data=images)`."""
    try:
        train(config, data, TuneReporter())
    except torch.OutOfMemoryError as e:
        cfg = {**config_mod.defaults(), **config}  # the settings the trial ran with, defaults included
        raise RuntimeError(
            f"GPU out of memory (model={cfg['model']}, batch_size={cfg['batch_size']}): "
            f"pack fewer trials per GPU (--gpus-per-trial) or lower batch_size. {str(e).splitlines()[0]}"
        ) from e
