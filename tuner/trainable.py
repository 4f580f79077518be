"""One trial: `train(config)` asks the config's task (`tuner.tasks`) for the data, the model and
the loss, runs the one training loop epoch by epoch with the config's remedies (`tuner.remedies`)
acting through their hooks, and reports every metric. Plain PyTorch; Ray only enters through the
reporter. The loop names no remedy and no task.

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
from tuner import remedies, tasks
from tuner.data import Images, load_dataset
from tuner.models import count_parameters, model_bytes
from tuner.precision import Precision, check_device
from tuner.tasks import evaluate, memory_format  # noqa: F401  (re-exported)

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
            shown = ("train_loss", "val_balanced_acc", "acc", "minority_acc")
            print(f"epoch {metrics['epoch']}: " + " ".join(f"{k} {metrics[k]:.4f}" for k in shown if k in metrics)
                  + f" ({metrics['epoch_time_s']:.1f} s)")
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


def dataset_for(cfg: dict) -> Images:
    from tuner.owndata import LOAD_KEYS

    key = (cfg["dataset"], cfg["data_dir"], cfg["dataset_fallback"], *(str(cfg[k]) for k in LOAD_KEYS))
    if key not in _loaded:
        _loaded[key] = load_dataset(cfg["dataset"], cfg["data_dir"], fallback=cfg["dataset_fallback"], options=cfg)
    return _loaded[key]


def epoch_context(cfg, epoch, gen, run, base_loss, optimizer, model, trial=None, restored=None) -> remedies.EpochContext:
    """What the remedies' hooks of one epoch see: the task's loss of the epoch, the optimizer, the
    model, and the remedies' state across epochs (`trial`; `restored` from a resumed checkpoint)."""
    return remedies.EpochContext(cfg, epoch, gen, run.counts, run.is_minority, run.epoch_loss(base_loss, epoch),
                                 base_loss, optimizer, lambda: make_optimizer(cfg, model), model=model,
                                 trial={} if trial is None else trial, restored=restored or {})


def train_epoch(model, run, ctx: remedies.EpochContext, running: list, precision: Precision,
                step_limit: int | None = None) -> tuple[float, float, int, int]:
    """One epoch: (mean training loss, training accuracy, samples drawn, optimizer steps taken).
    The task gives the epoch's sample and batches; the running remedies' hooks change them. With
    `step_limit` (a budget in optimizer steps, `max_steps`) the epoch ends after that many steps."""
    model.train()
    plan = run.epoch_plan(ctx.cfg, ctx.gen, running)
    for hook in remedies.hooks(running, "start_epoch"):
        hook(ctx)
    transforms = [r.transform for r in sorted(running, key=lambda r: r.transform_order) if r.transform is not None]
    penalties = remedies.hooks(running, "penalty")
    after_step = remedies.hooks(running, "after_step")
    min_batch = max([run.min_batch] + [r.min_batch for r in running])
    n, bs = len(plan.idx), ctx.cfg["batch_size"]
    loss_sum = torch.zeros((), device=plan.idx.device)
    correct = torch.zeros((), dtype=torch.long, device=plan.idx.device)
    steps, used = 0, 0
    for s in range(0, n, bs):
        if step_limit is not None and steps >= step_limit:
            n = used  # the samples this cut epoch trained on
            break
        if min(bs, n - s) < min_batch:
            continue
        batch = run.batch(plan, s, s + bs)
        for transform in transforms:
            batch = transform(batch, ctx)
        with precision.autocast():
            out = model(run.model_input(batch.x))
            loss = batch.loss(out, ctx.loss)
            for penalty in penalties:
                loss = penalty(loss, out, batch, ctx)
        ctx.optimizer.zero_grad(set_to_none=True)
        precision.step(loss, ctx.optimizer)
        for hook in after_step:
            hook(ctx)
        steps, used = steps + 1, used + len(batch.y)
        with torch.no_grad():  # accumulate on device: no host sync per step
            loss_sum += loss.detach() * len(batch.y)
            correct += (run.predict(out) == batch.y).sum()
    # one sync per epoch
    return float(loss_sum) / n, float(correct) / n, n, steps


def evaluated_model(model, ctx, running):
    """The model the epoch's evaluation reads: the trained one, or what a remedy puts in its place
    (`eval_model`: the averaged weights)."""
    for hook in remedies.hooks(running, "eval_model"):
        model = hook(model, ctx)
    return model


def train(config: dict, data: Images | None = None, reporter=None) -> list[dict]:
    """Run one trial. Returns the reported history (for plain calls)."""
    task = tasks.for_config(config)
    cfg = config_mod.resolve(config)
    reporter = reporter or LocalReporter()
    images = data if data is not None else dataset_for(cfg)
    settled = task.settle(config, images)
    if settled:
        cfg = config_mod.resolve({**config, **settled})
    task.check_data(cfg, images)
    device = resolve_device(cfg["device"])
    check_device(cfg["precision"], device.type)
    run = task.setup(cfg, images, device)  # the split and the data on the device: no random draws

    torch.manual_seed(cfg["seed"])
    np.random.seed(cfg["seed"])
    gen = torch.Generator(device=device).manual_seed(cfg["seed"])
    model = run.build_model()
    optimizer = make_optimizer(cfg, model)
    precision = Precision(cfg["precision"], device)
    base_loss = run.base_loss()
    running = remedies.running(cfg) if task.uses_remedies else []

    start, steps, samples_seen = 1, 0, 0  # compute so far: arms that draw more per epoch are compared on these
    trial_state, restored = {}, {}  # the remedies' state across epochs (`checkpoint` hooks), saved and restored
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
        restored = state.get("remedies", {})

    static = {
        "experiment": cfg["experiment"],
        "dataset": run.dataset_name,  # the dataset actually used (differs after a fallback)
        "seed": cfg["seed"],
        "group": cfg["group"],
        **run.static,
        "num_params": count_parameters(model),
        "model_bytes": model_bytes(model),
        "node_id": getattr(reporter, "node_id", None),  # Ray trials only
        "checkpoint_warning": getattr(reporter, "restore_warning", ""),  # why this attempt started over
    }
    for epoch in range(start, cfg["epochs"] + 1):
        t0 = time.perf_counter()
        ctx = epoch_context(cfg, epoch, gen, run, base_loss, optimizer, model, trial_state, restored)
        limit = None if cfg["max_steps"] is None else cfg["max_steps"] - steps
        train_loss, train_acc, drawn, taken = train_epoch(model, run, ctx, running, precision, limit)
        optimizer = ctx.optimizer  # a remedy may have reset it (IRM, when its penalty switches on)
        steps, samples_seen = steps + taken, samples_seen + drawn
        metrics = {
            "epoch": epoch,
            "epoch_time_s": 0.0,
            "steps": steps,  # optimizer steps since the trial began (over-sampling arms take more per epoch)
            "samples_seen": samples_seen,  # training samples drawn since the trial began, copies included
            "train_loss": train_loss,
            "train_acc": train_acc,
            **run.evaluate(evaluated_model(model, ctx, running), precision),
            "stop_reason": "",
            **static,
        }
        metrics["epoch_time_s"] = time.perf_counter() - t0
        if not math.isfinite(train_loss):
            # stop this trial with the reason recorded; retrying would diverge the same way
            metrics["stop_reason"] = f"non-finite training loss at epoch {epoch} (lr={cfg['lr']:g})"
            reporter.report(metrics, None)
            break
        # the last epoch: the epochs budget, or the steps budget (compute-matched arms) reached
        last = epoch == cfg["epochs"] or (cfg["max_steps"] is not None and steps >= cfg["max_steps"])
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
            saved = {r.name: r.checkpoint(ctx) for r in running if r.checkpoint is not None}
            if saved:
                state["remedies"] = saved
        reporter.report(metrics, state)
        if last:
            break
    return getattr(reporter, "history", [])


def tune_trainable(config: dict, data: Images | None = None, plugins: dict | None = None) -> None:
    """The function Ray Tune runs: `tune.with_parameters(tune_trainable, data=images, plugins=...)`;
    `plugins` holds the remedies and tasks the driver registered from outside the package."""
    remedies.install((plugins or {}).get("remedies"))
    tasks.install((plugins or {}).get("tasks"))
    try:
        train(config, data, TuneReporter())
    except torch.OutOfMemoryError as e:
        cfg = {**config_mod.defaults(), **config}  # the settings the trial ran with, defaults included
        raise RuntimeError(
            f"GPU out of memory (model={cfg['model']}, batch_size={cfg['batch_size']}): "
            f"pack fewer trials per GPU (--gpus-per-trial) or lower batch_size. {str(e).splitlines()[0]}"
        ) from e
