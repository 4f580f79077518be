"""Study tasks: what a trial learns and how it is measured. The training loop
(`tuner.trainable.train`) asks a task for a `TaskRun` and drives it; it knows no task by name.

    classification   the default: images or tables, class labels, the imbalance remedies,
                     accuracy per class (this module)
    digit_pairs      "is the first digit <= the second?" (tuner.pairs, a plug-in: tuner.plugins)

A task declares its settings (`Param`s), its datasets (registered in `tuner.data`), its checks,
and `setup(cfg, images, device) -> TaskRun`: the trial's data on the device, the model, the loss,
the epoch's sample and batches, evaluation and the result fields only it has.
"""
from __future__ import annotations

import json

import numpy as np

from tuner import metrics as metrics_mod
from tuner import remedies
from tuner.data import Images, make_split
from tuner.device_data import DeviceData
from tuner.errors import ConfigError
from tuner.lazy import inference_mode, lazy
from tuner.models import build_model
from tuner.precision import Precision
from tuner.settings import Param

torch = lazy("torch", globals())  # imported on first use (tuner.lazy): the driver's checks need no torch

TASKS: dict[str, "Task"] = {}


class Task:
    name: str = ""
    summary: str = ""
    settings: dict[str, Param] = {}
    datasets: tuple[str, ...] = ()  # datasets that only this task reads (the task is inferred from them)
    uses_remedies: bool = True

    def check(self, cfg: dict) -> None:
        """Cross-setting checks of this task's configs."""

    def check_other(self, cfg: dict) -> None:
        """Checks this task makes on other tasks' configs (e.g. its models need its data)."""

    def settle(self, config: dict, images: Images) -> dict:
        """Settings the data fixes once it is known (own data: its classes); the loop re-resolves."""
        return {}

    def check_data(self, cfg: dict, images: Images) -> None:
        """Checks that need the data (the model takes its shape)."""

    def setup(self, cfg: dict, images: Images, device: torch.device) -> "TaskRun":
        raise NotImplementedError

    def report_sections(self, trials) -> list[tuple[str, str, object]]:
        """Extra report tables of this task: (heading, caption, DataFrame)."""
        return []


def register(task: Task) -> Task:
    TASKS[task.name] = task
    return task


def extra() -> list[Task]:
    """Tasks registered from outside the package (shipped to Ray workers like extra remedies)."""
    return [t for t in TASKS.values() if not type(t).__module__.startswith("tuner.")]


def install(tasks: list[Task]) -> None:
    for t in tasks or ():
        TASKS.setdefault(t.name, t)


def get(name: str) -> Task:
    if name not in TASKS:
        from tuner import plugins

        plugins.load()
    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}: choose one of {', '.join(sorted(TASKS))}")
    return TASKS[name]


def for_config(config: dict) -> Task:
    """The config's task: `task=NAME` when given, else the task whose datasets include the
    config's dataset, else classification."""
    if config.get("task"):
        return get(config["task"])
    dataset = config.get("dataset") or ""
    for _ in range(2):
        for task in TASKS.values():
            if dataset in task.datasets:
                return task
        from tuner import data, plugins

        if dataset in data.DATASETS or data.is_own(dataset):
            break
        plugins.load()  # a plug-in's dataset
    return TASKS["classification"]


class TaskRun:
    """One trial of a task on its device. The loop calls, in this order: `build_model()` (after
    seeding), `base_loss()`, then per epoch `epoch_loss`, `epoch_plan`, `batch` for each slice,
    `model_input`, `predict`, and `evaluate`; `static` goes into every result."""

    dataset_name: str
    static: dict
    min_batch: int = 1
    counts: torch.Tensor  # per-class training counts on the device (remedies read them)
    is_minority: torch.Tensor

    def epoch_loss(self, base_loss, epoch: int):
        return base_loss

    def model_input(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def predict(self, out) -> torch.Tensor:
        return out.argmax(1)


# --- classification ----------------------------------------------------------------------------

# On CPU, evaluation batches larger than this are run in pieces of this size: activations of a
# 4096-image batch stream through DRAM, 128-image pieces mostly stay in cache (docs/performance.md).
CPU_EVAL_CHUNK = 128


@inference_mode
def evaluate(model, dd: DeviceData, x_u8, y, idx, batch_size: int, loss_fn=None, precision=None,
             adjust=None) -> tuple[torch.Tensor, float]:
    """Confusion matrix and mean loss over (a subset of) a set, in large batches without gradients.
    `adjust(logits)`: how the classifier turns the model's logits into its decision (post-hoc
    remedies such as logit adjustment at test time); the loss is of the adjusted logits too."""
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
        else:  # index_select copies whole rows (x_u8[b] gathers element by element, far slower on CPU)
            b = idx[s : s + batch_size]
            xb, yb = x_u8.index_select(0, b), y.index_select(0, b)
        with precision.autocast():
            logits = model(dd.normalise(dd.pixels(xb)))
        if adjust is not None:
            logits = adjust(logits.float())
        loss_sum += torch.nn.functional.cross_entropy(logits.float(), yb, reduction="sum")
        cm += metrics_mod.confusion_matrix(yb, logits.argmax(1), dd.num_classes)
    return cm.cpu(), float(loss_sum) / max(n, 1)


def memory_format(cfg: dict, model: torch.nn.Module, dd: DeviceData) -> torch.nn.Module:
    """`channels_last=true` on images: the model's weights and every batch in NHWC order, where
    oneDNN's and cuDNN's convolution kernels are faster (the cnn on the CPU: docs/performance.md)."""
    if cfg["channels_last"] and dd.train_x.dim() == 4:
        dd.memory_format = torch.channels_last
        return model.to(memory_format=torch.channels_last)
    return model


class Classification(Task):
    name = "classification"
    summary = "class labels of images or table rows, with the imbalance remedies"

    def settle(self, config, images):
        from tuner import owndata

        # own data: class names -> indices, the minority classes, natural imbalance
        return owndata.settle(config, images) if owndata.is_own(images.name) else {}

    def check_data(self, cfg, images):
        from tuner import owndata

        owndata.check_fits(cfg, images)

    def setup(self, cfg, images, device):
        return ClassificationRun(cfg, images, device)


class ClassificationRun(TaskRun):
    def __init__(self, cfg: dict, images: Images, device: torch.device):
        self.cfg, self.images, self.device = cfg, images, device
        self.split = split = make_split(images, cfg)
        self.dd = DeviceData(images, split, device, cfg)  # cfg: the pretrained VGG16 normalises with ImageNet's statistics
        self.dataset_name = images.name  # the dataset actually used (differs after a fallback)
        self.counts = torch.tensor([len(m) for m in self.dd.by_class], device=device)
        self.is_minority = torch.zeros(images.num_classes, dtype=torch.bool, device=device)
        self.is_minority[list(cfg["minority_classes"])] = True
        self.adjusters = remedies.hooks(remedies.running(cfg), "adjust_logits")  # post-hoc, at evaluation

    def build_model(self) -> torch.nn.Module:
        cfg, images = self.cfg, self.images
        model = memory_format(cfg, build_model(cfg["model"], images.input_shape, images.num_classes, cfg).to(self.device),
                              self.dd)
        self.static = {
            "precision": cfg["precision"],  # recorded whether or not the search set it
            "remedies": ",".join(remedies.active(cfg)),
            "train_counts": self.split.counts.tolist(),
            # the classes by name, and their counts as found (training part, before any imposed imbalance)
            "classes": json.dumps(list(images.classes)),  # JSON text: Tune's TensorBoard logger rejects lists of text
            "found_counts": images.info.get("found_counts", images.class_counts().tolist()),
            "test_counts": np.bincount(images.test_y, minlength=images.num_classes).tolist(),
        }
        return model

    def base_loss(self):
        return remedies.make_loss(self.cfg, self.split.counts.tolist(), self.device)

    def epoch_plan(self, cfg, gen, running):
        return remedies.epoch_plan(cfg, self.dd.by_class, gen, running)

    def batch(self, plan, s: int, e: int) -> remedies.Batch:
        x = self.dd.pixels(self.dd.train_x.index_select(0, plan.idx[s:e]))  # rows, not elements: faster on CPU
        return remedies.Batch(x, plan.y[s:e], {k: v[s:e] for k, v in plan.fields.items()})

    def model_input(self, x):
        return self.dd.normalise(x)

    def adjust(self, logits):
        """The running remedies' post-hoc changes of the logits (`adjust_logits` hooks), in order."""
        for hook in self.adjusters:
            logits = hook(logits, self.cfg, self.counts)
        return logits

    def evaluate(self, model, precision) -> dict:
        dd, bs, minority = self.dd, self.cfg["eval_batch_size"], self.cfg["minority_classes"]
        adjust = self.adjust if self.adjusters else None
        val_cm, val_loss = evaluate(model, dd, dd.train_x, dd.train_y, dd.val_idx, bs, None, precision, adjust)
        test_cm, test_loss = evaluate(model, dd, dd.test_x, dd.test_y, None, bs, None, precision, adjust)
        return {
            "val_loss": val_loss,
            **metrics_mod.metrics_from_confusion(val_cm, minority, prefix="val_"),
            "loss": test_loss,
            **metrics_mod.metrics_from_confusion(test_cm, minority),
            "confusion": test_cm.tolist(),
            "val_confusion": val_cm.tolist(),
        }


register(Classification())
