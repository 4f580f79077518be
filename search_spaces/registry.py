"""Experiments are plain data: what is fixed, what is searched, how, and with which budgets.

    Experiment(name, description, fixed={...}, space={"minority_weight": Range(2, 10, grid=...)})

`space` entries are `Range` (searched by Optuna, or by their grid values when the search is a
grid: several seeds, or a budget that asks for full grids) or `Choice`. `arms` make a study: each
arm is a labelled set of fixed settings (a `group`), crossed with the seeds and the space.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from tuner.settings import Choice, Range  # noqa: F401  (re-exported: experiments import them from here)


@dataclass(frozen=True)
class Claim:
    """One claim of the original study, stated plainly, as data; `analysis.claims.evaluate` tests it
    on a results table (paired over seeds) and gives a verdict: supported, contradicted, within
    noise, or not enough data.

    kind "order": `order` lists groups (arms) claimed to be in descending order of `metric`, each
    step tested (two groups: "the first beats the second"); with `within` set, `order` lists
    metrics of that one group's trials instead (e.g. the p-rates of the unbalanced run).
    kind "no_gain": none of the groups in `order` beats `baseline` on `metric` by `margin` or more.
    kind "best_near": among the groups in `order` (a sweep of `param`), the best mean `metric` is
    at `param` = `near` (within `tolerance`).
    """
    text: str
    order: tuple = ()
    metric: str = "minority_acc"
    kind: str = "order"  # order | no_gain | best_near
    within: str | None = None
    baseline: str | None = None
    margin: float = 0.01  # no_gain: a gain whose 95% CI stays below this (a fraction: 1 point) is none
    param: str | None = None
    near: float | None = None
    tolerance: float = 1.0


STEPS_EPOCHS_CAP = 200  # the most epochs a min_steps budget asks for (a tiny dataset)


@dataclass(frozen=True)
class Budget:
    num_samples: int  # Optuna trials (per grid point when the search is a grid)
    max_epochs: int
    seeds: tuple = (0,)
    grace_period: int = 1  # ASHA: epochs before the first cut
    reduction_factor: int = 2
    searcher: str | None = None  # override the experiment's searcher ("grid" for full grids)
    fixed: dict = field(default_factory=dict)  # settings this budget changes (e.g. dataset for smoke)
    max_concurrent: int | None = None
    groups: tuple | None = None  # a study's arms (group labels) this budget runs; None: every arm
    # A floor in optimizer steps: a trial trains max_epochs epochs, or more where those are fewer
    # than min_steps steps of the data actually loaded (ceil(min_steps / steps per epoch), at most
    # STEPS_EPOCHS_CAP), so the 2,475-image sample gets as many updates as full MNIST instead of a
    # twelfth of them. grace_steps moves ASHA's first cut the same way.
    min_steps: int | None = None
    grace_steps: int | None = None


# The original study's noisy copies: one copy per variance, so 10% of a class x 10 = balance.
NOISE_VARIANCES = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]

# Shared budgets. `local` must finish within ~15 minutes on a 2-core CPU on full MNIST.
SMOKE = Budget(num_samples=4, max_epochs=2, fixed={"dataset": "mnist-sample"}, grace_period=1, reduction_factor=2)
LOCAL = Budget(num_samples=8, max_epochs=4, grace_period=1, reduction_factor=2)
PAPER = Budget(num_samples=1, max_epochs=100, seeds=(0, 1, 2, 3, 4), searcher="grid", grace_period=10,
               reduction_factor=3)


@dataclass(frozen=True)
class Experiment:
    name: str
    description: str
    fixed: dict[str, Any] = field(default_factory=dict)
    space: dict[str, Range | Choice] = field(default_factory=dict)
    arms: tuple[dict, ...] = ()  # study groups: each a dict of settings including "group"
    searcher: str = "optuna"  # optuna | grid | random
    metric: str = "val_balanced_acc"
    mode: str = "max"
    budgets: dict[str, Budget] = field(default_factory=lambda: {"smoke": SMOKE, "local": LOCAL, "paper": PAPER})
    remedies: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()  # settings the user must give with --set (a follow-up study's inputs)
    claims: tuple[Claim, ...] = ()  # the original study's claims, tested in the report (analysis.claims)
    task: str = "classification"  # the study task (tuner.tasks): its targets, models, loss and metrics

    def __post_init__(self):
        if self.task != "classification" and self.fixed.get("task") != self.task:  # every trial records its task
            object.__setattr__(self, "fixed", {"task": self.task, **self.fixed})

    def with_(self, **changes) -> "Experiment":
        return replace(self, **changes)


EXPERIMENTS: dict[str, Experiment] = {}


def register(exp: Experiment) -> Experiment:
    if exp.name in EXPERIMENTS:
        raise ValueError(f"experiment {exp.name!r} registered twice")
    EXPERIMENTS[exp.name] = exp
    return exp
