"""Training throughput of our data path (`tuner.trainable.train_epoch` over `DeviceData`) against the
reference DataLoader path (`benchmarks.reference`), same model, optimizer, loss and thread count.

Timing: after a warm-up of 2 batches per path, `rounds` rounds of `batches` batches each,
alternating ours/reference (ABBA order, so load drifting on a shared machine hits both alike);
the figure is the median samples/s over the rounds. Our rounds are whole `train_epoch` calls on an
epoch plan cut to `batches` batches (so they include drawing the whole epoch's plan); reference
rounds continue one DataLoader iterator across rounds (new epochs as needed) and leave out the
first batches a round finds already prefetched by the workers (prefetch_factor x num_workers).
"""
from __future__ import annotations

import contextlib
import statistics
import time

import torch

from tuner import config as config_mod
from tuner import remedies
from tuner.data import Images, make_split
from benchmarks.reference import ReferenceTrial, make_loader, reference_evaluate

COPIES = {"ros_target": 1.0, "augment_scope": "copies"}
CONFIGS = {
    "none": {},
    "ros_target=1": {"ros_target": 1.0},
    "noise": {**COPIES, "noise_sigma": 0.3},
    "rotation": {**COPIES, "rotation_deg": 15.0},
    "combined": {**COPIES, "noise_sigma": 0.3, "rotation_deg": 15.0},
}
AUGMENTED = {"noise", "rotation", "combined"}


@contextlib.contextmanager
def first_batches(run, n: int):
    """Make `train_epoch` stop after n batches: the task run's epoch plan (already shuffled) is cut."""
    full = run.epoch_plan

    def cut(cfg, gen, running):
        p = full(cfg, gen, running)
        k = n * cfg["batch_size"]
        return remedies.EpochPlan(p.idx[:k], p.y[:k], p.num_classes, {f: v[:k] for f, v in p.fields.items()})

    run.epoch_plan = cut
    try:
        yield
    finally:
        del run.epoch_plan  # the class's method again


class OursTrial:
    """State exactly as `tuner.trainable.train` builds it; `run(n)` = one `train_epoch` of n batches."""

    def __init__(self, config: dict, images: Images, device="cpu"):
        from tuner import tasks
        from tuner.precision import Precision
        from tuner.trainable import make_optimizer

        self.cfg = cfg = config_mod.resolve(config)
        self.device = torch.device(device)
        self.task_run = tasks.for_config(cfg).setup(cfg, images, self.device)
        self.dd = self.task_run.dd
        torch.manual_seed(cfg["seed"])
        self.gen = torch.Generator(device=self.device).manual_seed(cfg["seed"])
        self.model = self.task_run.build_model()
        self.optimizer = make_optimizer(cfg, self.model)
        self.loss_fn = self.task_run.base_loss()
        self.running = remedies.running(cfg)
        self.precision = Precision(cfg["precision"], self.device)
        self.epoch = 0

    def _train_epoch(self):
        from tuner.trainable import epoch_context, train_epoch

        self.epoch += 1
        ctx = epoch_context(self.cfg, self.epoch, self.gen, self.task_run, self.loss_fn, self.optimizer, self.model)
        return train_epoch(self.model, self.task_run, ctx, self.running, self.precision)

    def run(self, n_batches: int) -> tuple[int, float]:
        t0 = time.perf_counter()
        with first_batches(self.task_run, n_batches):
            _, _, n, _ = self._train_epoch()  # returns floats: synchronised
        return n, time.perf_counter() - t0

    def epoch_full(self) -> tuple[int, float]:
        t0 = time.perf_counter()
        _, _, n, _ = self._train_epoch()
        return n, time.perf_counter() - t0

    def data_only(self, n_batches: int) -> tuple[int, float]:
        """Our data path alone (plan, gather, augment, normalise), no model."""
        from tuner.trainable import epoch_context

        cfg, run = self.cfg, self.task_run
        ctx = epoch_context(cfg, 1, self.gen, run, self.loss_fn, self.optimizer, self.model)
        transforms = [r.transform for r in sorted(self.running, key=lambda r: r.transform_order)
                      if r.transform is not None and r.name != "remix"]
        t0 = time.perf_counter()
        plan = run.epoch_plan(cfg, self.gen, self.running)
        bs, samples = cfg["batch_size"], 0
        for s in range(0, min(len(plan.idx), n_batches * bs), bs):
            batch = run.batch(plan, s, s + bs)
            for transform in transforms:
                batch = transform(batch, ctx)
            x = run.model_input(batch.x)
            samples += len(x)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return samples, time.perf_counter() - t0


def _skip(num_workers: int) -> int:
    return 2 * num_workers  # DataLoader's default prefetch_factor (2) batches per worker


def probe_num_workers(model: str, images: Images, *, batches: int, device="cpu", choices=(0, 1, 2), log=print) -> dict:
    """Reference speed on the `combined` config with each num_workers; the fastest is used."""
    rates = {}
    for nw in choices:
        ref = ReferenceTrial({"model": model, **CONFIGS["combined"]}, images, num_workers=nw, device=device)
        try:
            ref.run(2 + _skip(nw))  # start the workers, warm up
            time.sleep(0.5)  # let the workers refill their prefetch queue, as between our rounds
            got = [ref.run(batches + _skip(nw), skip=_skip(nw)) for _ in range(2)]
            rates[nw] = statistics.median(s / t for s, t in got)
        finally:
            ref.close()
        log(f"  reference {model} combined, num_workers={nw}: {rates[nw]:.0f} samples/s")
    return {"chosen": max(rates, key=rates.get), "samples_per_s": rates, "config": "combined"}


def compare(model: str, name: str, images: Images, *, batches: int, rounds: int, num_workers: int, device="cpu",
            log=print) -> dict:
    config = {"model": model, **CONFIGS[name]}
    if torch.device(device).type == "cuda":
        config["device"] = "cuda"
    ours = OursTrial(config, images, device)
    ref = ReferenceTrial(config, images, num_workers=num_workers, device=device)
    skip = _skip(num_workers)
    try:
        ours.run(2)
        ref.run(2 + skip)
        o, r = [], []
        for k in range(rounds):
            order = (ours, ref) if k % 2 == 0 else (ref, ours)
            for trial in order:
                if trial is ours:
                    s, t = ours.run(batches)
                    o.append(s / t)
                else:
                    s, t = ref.run(batches + skip, skip=skip)
                    r.append(s / t)
    finally:
        ref.close()
    row = {"ours": statistics.median(o), "reference": statistics.median(r), "ours_rounds": o, "reference_rounds": r}
    log(f"  {model:5s} {name:13s} ours {row['ours']:8.0f}  reference {row['reference']:8.0f} samples/s"
        f"  x{row['ours'] / row['reference']:.2f}")
    return row


def data_path_only(model: str, name: str, images: Images, *, batches: int, rounds: int, num_workers: int,
                   device="cpu") -> dict:
    """Samples/s of the two data paths with no model at all (what the data path alone can deliver)."""
    config = {"model": model, **CONFIGS[name]}
    ours = OursTrial(config, images, device)
    split = make_split(images, ours.cfg)
    loader = make_loader(images, ours.cfg, split, num_workers=num_workers, device=device)
    o, r = [], []
    it = iter(loader)
    try:
        ours.data_only(2)
        next(it)
        for _ in range(rounds):
            s, t = ours.data_only(batches)
            o.append(s / t)
            t0, s = time.perf_counter(), 0
            for _ in range(batches):
                try:
                    x, y = next(it)
                except StopIteration:
                    it = iter(loader)
                    x, y = next(it)
                x = x.to(device, non_blocking=True)
                s += len(y)
            r.append(s / (time.perf_counter() - t0))
    finally:
        if hasattr(it, "_shutdown_workers"):
            it._shutdown_workers()
    return {"ours": statistics.median(o), "reference": statistics.median(r)}


def eval_compare(model: str, images: Images, *, n: int, rounds: int, num_workers: int, device="cpu") -> dict:
    """Evaluation samples/s: our `evaluate` (eval_batch_size 4096) vs the usual test loop (batch 1000)."""
    from tuner.trainable import evaluate

    ours = OursTrial({"model": model}, images, device)
    dd, cfg = ours.dd, ours.cfg
    o, r = [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        cm, _ = evaluate(ours.model, dd, dd.test_x[:n], dd.test_y[:n], None, cfg["eval_batch_size"], ours.loss_fn)
        o.append(n / (time.perf_counter() - t0))
        s, t, cm_ref = reference_evaluate(ours.model, images, n=n, num_workers=num_workers, device=device)
        r.append(s / t)
    # same model, same images: the same predictions (up to float ties)
    agree = 1 - (cm - cm_ref).abs().sum().item() / (2 * n)
    return {"ours": statistics.median(o), "reference": statistics.median(r), "agreement": agree}


def full_epoch(model: str, name: str, images: Images, *, num_workers: int, device="cpu") -> dict:
    """One whole epoch each (after a 2-batch warm-up), ours then reference."""
    config = {"model": model, **CONFIGS[name]}
    ours = OursTrial(config, images, device)
    ref = ReferenceTrial(config, images, num_workers=num_workers, device=device)
    try:
        ours.run(2)
        ref.run(2)
        so, to = ours.epoch_full()
        sr, tr = ref.epoch()
    finally:
        ref.close()
    return {"ours": so / to, "reference": sr / tr, "ours_s": to, "reference_s": tr, "samples": so}
