"""What a search is asked for and what it will do: the command line's options (`parser`) and the
`Plan` they become once checked (`tuner.planning`). Plain data: no Ray, no data loading."""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field

import numpy as np

from tuner.metrics import metrics_from_confusion

PROG = "python -m tuner.search"
DEFAULT_STORAGE = "results"
CALLBACKS = ("mlflow", "wandb")
SUMMARY_METRICS = ("acc", "minority_acc", "majority_acc", "balanced_acc")


def metric_names() -> list[str]:
    test = ["loss", *metrics_from_confusion(np.eye(10, dtype=np.int64), [0])]
    return ["train_loss", "train_acc", *test, *("val_" + m for m in test)]


@dataclass
class Plan:
    """Everything a search will do, decided and checked before Ray starts."""

    experiment: object
    budget_name: str
    fixed: dict
    space: dict  # name -> Range | Choice (searched)
    searcher: str  # optuna | grid | random
    seeds: list[int]
    num_samples: int
    max_epochs: int
    metric: str
    mode: str
    asha: bool
    grace_period: int
    reduction_factor: int
    storage_path: str
    name: str
    resume: bool
    cpus_per_trial: float
    gpus_per_trial: float
    max_concurrent: int | None
    address: str | None
    arms: tuple = ()
    notes: list[str] = field(default_factory=list)
    objectives: tuple = ()  # 2+ metrics: a multi-objective (Pareto) search; `metric` is then the first
    max_steps: int | None = None  # --max-steps: every trial's budget in optimizer steps (compute-matched arms)
    min_steps: int | None = None  # a budget with a floor in steps: max_epochs follows from the data (size_to_data)
    grace_steps: int | None = None
    callbacks: tuple = ()  # mlflow | wandb: Ray's logger callbacks
    experiment_file: str | None = None

    @property
    def run_dir(self) -> str:
        return f"{self.storage_path.rstrip('/')}/{self.name}"

    def grid_size(self) -> int:
        n = max(1, len(self.arms)) * len(self.seeds)
        if self.searcher == "grid":
            for spec in self.space.values():
                n *= len(spec.grid_values())
        return n

    def num_trials(self) -> int:
        if self.searcher == "optuna":
            return self.num_samples
        return self.grid_size() * self.num_samples

    def shown_params(self, groups: bool = True) -> list[str]:
        """The settings that differ between trials: the searched ones, the seed, a study's arm."""
        return [*self.space, *(["seed"] if len(self.seeds) > 1 else []), *(["group"] if groups and self.arms else [])]


def first_value(spec):
    return spec.grid_values()[0]


STEPS_CAP = 200  # the most epochs a --max-steps budget runs (a tiny dataset)


def parser(prog: str = PROG, suppress: bool = False) -> argparse.ArgumentParser:
    """The search's options. `suppress`: no defaults, so a parse holds only the options typed
    (a resume compares those with the run's recorded ones)."""
    p = argparse.ArgumentParser(
        prog=prog, description="Search class-imbalance remedies with Ray Tune (ASHA + Optuna).",
        argument_default=argparse.SUPPRESS if suppress else None,
        epilog=None if prog == PROG else f"Analysis: {prog} report RUN_DIR [--out DIR], {prog} export RUN_DIR [--out DIR] "
               "(see their --help).",
    )
    _what_options(p)
    _how_options(p)
    if not suppress:
        p.set_defaults(budget="local", storage_path=DEFAULT_STORAGE, set=[], cpus_per_trial=1.0, gpus_per_trial=0.0,
                       resume=False, callback=[])
    return p


def _what_options(p: argparse.ArgumentParser) -> None:
    """What is searched: the experiment, its data, budget, metric and settings."""
    p.add_argument("experiment", nargs="?", help="experiment name (see --list)")
    p.add_argument("--list", action="store_true", help="list the experiments and exit")
    p.add_argument("--experiment-file", help="a .py or .yaml file defining experiments (docs/experiments.md)")
    p.add_argument("--budget", help="smoke | local (default) | paper")
    p.add_argument("--dataset", help="mnist | mnist-sample | cifar10 | imagefolder:PATH | table:PATH (your own data; "
                   "settings such as --set image_size=64 or --set label=COLUMN; default: the experiment's)")
    p.add_argument("--data-dir", help="data folder (default $TUNER_DATA_DIR, else ~/.cache/imbalance-tune/data)")
    p.add_argument("--num-samples", type=int, help="trials the searcher proposes (per grid point for grids)")
    p.add_argument("--max-epochs", type=int, help="maximum epochs per trial")
    p.add_argument("--max-steps", type=int,
                   help="a budget in optimizer steps: every trial stops after exactly this many (mid-epoch if need "
                        "be), so arms that draw more samples per epoch get the same compute; epochs up to --max-epochs "
                        f"(default {STEPS_CAP}); ASHA then counts steps")
    p.add_argument("--metric", help="selection metric on validation (default val_balanced_acc)")
    p.add_argument("--mode", choices=("max", "min"), help="maximise or minimise --metric")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="fix any trial setting")
    p.add_argument("--seeds", help="comma-separated seeds, a grid dimension (e.g. 0,1,2)")
    p.add_argument("--searcher", choices=("optuna", "grid", "random"), help="override the experiment's searcher")
    p.add_argument("--rerun-top", type=int, metavar="K",
                   help="select, then re-run: the K best configurations (by --metric on validation) re-run to the end "
                        "over --seeds, ASHA off, as a new run (RUN-topK); after this search, or of --from-run")
    p.add_argument("--from-run", metavar="RUN_DIR", help="with --rerun-top: the finished run to take the best configurations from")
    p.add_argument("--no-asha", action="store_true", help="run every trial to --max-epochs")
    p.add_argument("--asha", action="store_true",
                   help="keep ASHA on a grid over several seeds (off by default there: seed means need complete runs)")


def _how_options(p: argparse.ArgumentParser) -> None:
    """How and where it runs: storage, resume, resources, cluster, logging."""
    p.add_argument("--storage-path", help="where runs are written (local dir, s3://...)")
    p.add_argument("--name", help="run name (default EXPERIMENT-BUDGET-TIMESTAMP)")
    p.add_argument("--resume", nargs="?", const=True,
                   metavar="RUN_DIR", help="continue an interrupted run: RUN_DIR, or the run --name under "
                   "--storage-path, with the options recorded in the run")
    p.add_argument("--cpus-per-trial", type=float)
    p.add_argument("--gpus-per-trial", type=float, help="fractional packs trials: 0.25 = 4 per GPU")
    p.add_argument("--max-concurrent", type=int, help="at most this many trials at once")
    p.add_argument("--address", help="join a running Ray cluster (auto after `ray up`, or HOST:PORT)")
    p.add_argument("--callback", action="append", choices=CALLBACKS,
                   help="also log every trial to MLflow or Weights & Biases (Ray's logger callbacks; optional extras)")


def parse_args(argv=None, prog: str = PROG) -> argparse.Namespace:
    return parser(prog).parse_args(argv)
