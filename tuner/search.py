"""`python -m tuner.search EXPERIMENT [options]`: one named experiment -> a Ray Tune search.

The driver only turns an experiment (plain data, `search_spaces`, or an --experiment-file) and the
options into a `Tuner`: ASHA stops weak trials, Optuna (its study persisted in the run folder) or a
grid proposes them, the training data goes into Ray's object store once (`tune.with_parameters`), and each trial is
`tuner.trainable.tune_trainable`. Every option is checked before Ray starts.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tuner import config as config_mod
from tuner import data as data_mod
from tuner import runstore
from tuner.errors import ConfigError, one_line_warnings
from tuner.metrics import metrics_from_confusion
from tuner.pareto import front_and_knee

DEFAULT_STORAGE = "results"
ADDRESS = re.compile(r"^(auto|local|(ray://)?[A-Za-z0-9][A-Za-z0-9.\-]*:\d{1,5})$")
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


PROG = "python -m tuner.search"
CALLBACKS = ("mlflow", "wandb")


def parser(prog: str = PROG, suppress: bool = False) -> argparse.ArgumentParser:
    """The search's options. `suppress`: no defaults, so a parse holds only the options typed
    (a resume compares those with the run's recorded ones)."""
    p = argparse.ArgumentParser(
        prog=prog, description="Search class-imbalance remedies with Ray Tune (ASHA + Optuna).",
        argument_default=argparse.SUPPRESS if suppress else None,
        epilog=None if prog == PROG else f"Analysis: {prog} report RUN_DIR [--out DIR], {prog} export RUN_DIR [--out DIR] "
               "(see their --help).",
    )
    p.add_argument("experiment", nargs="?", help="experiment name (see --list)")
    p.add_argument("--list", action="store_true", help="list the experiments and exit")
    p.add_argument("--experiment-file", help="a .py or .yaml file defining experiments (docs/experiments.md)")
    p.add_argument("--budget", help="smoke | local (default) | paper")
    p.add_argument("--dataset", help="mnist | mnist-sample | cifar10 | imagefolder:PATH | table:PATH (your own data; "
                   "settings such as --set image_size=64 or --set label=COLUMN; default: the experiment's)")
    p.add_argument("--data-dir", help="data folder (default $TUNER_DATA_DIR, else ~/.cache/imbalance-tune/data)")
    p.add_argument("--num-samples", type=int, help="trials the searcher proposes (per grid point for grids)")
    p.add_argument("--max-epochs", type=int, help="maximum epochs per trial")
    p.add_argument("--metric", help="selection metric on validation (default val_balanced_acc)")
    p.add_argument("--mode", choices=("max", "min"), help="maximise or minimise --metric")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="fix any trial setting")
    p.add_argument("--seeds", help="comma-separated seeds, a grid dimension (e.g. 0,1,2)")
    p.add_argument("--searcher", choices=("optuna", "grid", "random"), help="override the experiment's searcher")
    p.add_argument("--no-asha", action="store_true", help="run every trial to --max-epochs")
    p.add_argument("--asha", action="store_true",
                   help="keep ASHA on a grid over several seeds (off by default there: seed means need complete runs)")
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
    p.add_argument("--yes", action="store_true", help="accepted for scripts; the search never asks")
    if not suppress:
        p.set_defaults(budget="local", storage_path=DEFAULT_STORAGE, set=[], cpus_per_trial=1.0, gpus_per_trial=0.0,
                       resume=False, callback=[])
    return p


def parse_args(argv=None, prog: str = PROG) -> argparse.Namespace:
    return parser(prog).parse_args(argv)


def _fail(msg: str, code: int = 2):
    print(f"error: {msg}", file=sys.stderr)
    raise SystemExit(code)


def list_experiments(experiment_file: str | None = None) -> str:
    """The built-in experiments, then those of --experiment-file (marked with the file's name)."""
    from search_spaces import EXPERIMENTS

    own = file_experiments(experiment_file)
    exps = {**EXPERIMENTS, **own}
    width = max(map(len, exps))
    lines = [f"{name:<{width}}  {exp.description}" + (f"  [{Path(experiment_file).name}]" if name in own else "")
             for name, exp in exps.items()]
    return "\n".join(lines + ["", "Any experiment runs on your own data: --dataset imagefolder:PATH (a folder per class) or "
                              "--dataset table:PATH --set label=COLUMN (.csv, .parquet); see README, 'Your own data'."])


def file_experiments(experiment_file: str | None) -> dict:
    if not experiment_file:
        return {}
    from tuner import experiment_file as ef

    return ef.load(experiment_file)


def resolve_experiment(args: argparse.Namespace):
    """The Experiment to run: a built-in name, or one from --experiment-file (the only one when no
    name is given). Raises ConfigError naming the known experiments."""
    from search_spaces import EXPERIMENTS

    own = file_experiments(args.experiment_file)
    if not args.experiment and len(own) == 1:
        return next(iter(own.values()))
    if args.experiment in own:
        return own[args.experiment]
    if args.experiment in EXPERIMENTS:
        return EXPERIMENTS[args.experiment]
    what = f"unknown experiment {args.experiment!r}" if args.experiment else "give an EXPERIMENT name"
    raise ConfigError(f"{what}; known experiments: {', '.join([*EXPERIMENTS, *own])} (--list describes them)")


def parse_sets(items: list[str]) -> dict:
    params = config_mod.all_params()
    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set {item!r} is malformed: expected KEY=VALUE")
        key, value = item.split("=", 1)
        key = key.strip()
        if key not in params:
            raise ConfigError(f"--set {key}: unknown setting; known settings are {', '.join(sorted(params))}")
        out[key] = config_mod.coerce(key, value, params[key])
    return out


def build_plan(args: argparse.Namespace) -> Plan:
    """All checks that need no Ray and no data. Raises ConfigError with one line."""
    exp = resolve_experiment(args)
    if args.budget not in exp.budgets:
        raise ConfigError(f"--budget {args.budget!r}: choose one of {', '.join(exp.budgets)}")
    budget = exp.budgets[args.budget]
    # a budget may run a subset of a study's arms (a coarser grid for a CPU)
    arms = tuple(a for a in exp.arms if budget.groups is None or a["group"] in budget.groups)
    for opt, value, low in (("--num-samples", args.num_samples, 1), ("--max-epochs", args.max_epochs, 1),
                            ("--max-concurrent", args.max_concurrent, 1)):
        if value is not None and value < low:
            raise ConfigError(f"{opt} {value}: must be an integer >= {low}")
    for name in args.callback:
        check_callback_package(name)
    if args.cpus_per_trial <= 0:
        raise ConfigError(f"--cpus-per-trial {args.cpus_per_trial:g}: must be > 0")
    if args.gpus_per_trial < 0 or (args.gpus_per_trial > 1 and not float(args.gpus_per_trial).is_integer()):
        raise ConfigError(f"--gpus-per-trial {args.gpus_per_trial:g}: must be a fraction in [0, 1] or a whole number")
    if args.address is not None and not ADDRESS.match(args.address):
        raise ConfigError(f"--address {args.address!r} is malformed: expected auto, HOST:PORT or ray://HOST:PORT")
    # comma-separated metrics ask for a multi-objective search: the Pareto front of all of them
    objectives = tuple(m.strip() for m in (args.metric or exp.metric).split(","))
    for metric in objectives:
        if metric not in metric_names() and not re.fullmatch(r"(val_)?acc_\d+", metric):  # any class count
            raise ConfigError(f"--metric {metric!r}: choose a reported metric, e.g. val_balanced_acc, val_minority_acc, val_macro_f1")
        if args.metric and not metric.startswith("val_"):
            print(f"warning: selecting on {metric!r}, which is not a validation metric", file=sys.stderr)
    metric = objectives[0]
    objectives = objectives if len(objectives) > 1 else ()
    seeds = list(budget.seeds)
    if args.seeds:
        try:
            seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
        except ValueError:
            raise ConfigError(f"--seeds {args.seeds!r}: expected comma-separated integers, e.g. 0,1,2") from None
        if not seeds:
            raise ConfigError(f"--seeds {args.seeds!r}: give at least one seed")

    sets = parse_sets(args.set)
    fixed = {**exp.fixed, **budget.fixed, **sets, "experiment": exp.name, "budget": args.budget}
    if objectives:  # recorded in every result: the report draws the same front
        fixed["objectives"] = ",".join(objectives)
    missing = [k for k in exp.requires if fixed.get(k) is None]
    if missing:
        raise ConfigError(f"{exp.name} needs --set {missing[0]}=VALUE: {exp.description}")
    if args.dataset:
        fixed["dataset"] = args.dataset
    if data_mod.is_own(fixed.get("dataset", "")):  # an absolute path: the same data whatever the working folder
        kind, path = fixed["dataset"].split(":", 1)
        fixed["dataset"] = f"{kind}:{Path(path).expanduser().resolve()}" if path else fixed["dataset"]
    fixed.setdefault("dataset", config_mod.CORE["dataset"].default)
    # only the default dataset may fall back to the shipped sample when it is unavailable
    # the paper budget never shrinks silently: without its data it stops, naming what is missing
    fixed["dataset_fallback"] = (not args.dataset and "dataset" not in exp.fixed and "dataset" not in sets
                                 and args.budget != "paper")
    if args.data_dir:
        fixed["data_dir"] = str(Path(args.data_dir).expanduser().resolve())
        if not Path(fixed["data_dir"]).is_dir():
            raise ConfigError(f"--data-dir {args.data_dir!r} does not exist: pass an existing folder")
    max_epochs = args.max_epochs or budget.max_epochs
    min_steps = None if args.max_epochs else budget.min_steps  # --max-epochs: exactly that many epochs
    fixed["epochs"] = max_epochs
    space = {k: v for k, v in exp.space.items() if k not in sets}
    searcher = args.searcher or budget.searcher or exp.searcher
    notes = []
    if searcher == "optuna" and not space:
        searcher = "grid"
    if searcher == "optuna" and (len(seeds) > 1 or arms):
        notes.append(f"{len(seeds)} seeds: searching the grid of each parameter so every config runs with every seed")
        searcher = "grid"
    num_samples = args.num_samples or (budget.num_samples if searcher != "grid" else 1)

    if fixed.get("precision") == "fp16" and args.gpus_per_trial == 0:
        raise ConfigError(f"{config_mod.FP16_ON_CPU}, or give trials a GPU with --gpus-per-trial")
    # ASHA ranks one metric; a grid over several seeds compares seed means, which need every trial
    # at the same epochs: ASHA is off there unless --asha asks for it
    asha = exp.searcher != "grid" and not args.no_asha and not arms and not objectives
    if asha and searcher == "grid" and len(seeds) > 1 and not args.asha:
        asha = False
        notes.append("ASHA off: a grid over several seeds runs every trial to the end (--asha keeps it)")
    storage = args.storage_path
    if "://" not in storage:
        storage = str(Path(storage).expanduser().resolve())
        _check_writable(Path(storage))
    name = args.name or f"{exp.name}-{args.budget}-{time.strftime('%Y%m%d-%H%M%S')}"
    if not re.fullmatch(r"[A-Za-z0-9._-]+", name):
        raise ConfigError(f"--name {name!r}: use letters, digits, '.', '_' and '-' only")
    plan = Plan(
        experiment=exp, budget_name=args.budget, fixed=fixed, space=space, searcher=searcher, seeds=seeds,
        num_samples=num_samples, max_epochs=max_epochs, metric=metric, mode=args.mode or exp.mode,
        asha=asha,
        grace_period=min(budget.grace_period, max_epochs), reduction_factor=budget.reduction_factor,
        storage_path=storage, name=name, resume=args.resume, cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial, max_concurrent=args.max_concurrent or budget.max_concurrent,
        address=args.address, arms=arms, notes=notes, objectives=objectives, min_steps=min_steps,
        grace_steps=budget.grace_steps if min_steps else None, callbacks=tuple(dict.fromkeys(args.callback)),
        experiment_file=str(Path(args.experiment_file).expanduser().resolve()) if args.experiment_file else None,
    )
    for cfg in plan_configs(plan):  # every value any trial can get, now, not inside a trial on the cluster
        config_mod.resolve(cfg)
    if objectives:
        notes.append(f"multi-objective: Pareto front of {', '.join(objectives)} ({plan.mode}), every trial to the end")
    _check_run_dir(plan)
    return plan


def size_to_data(plan: Plan, train_count: int) -> Plan:
    """A budget with a floor in steps (`min_steps`): where the budget's epochs of the data actually
    loaded are fewer steps (the sample fallback has a twelfth of full MNIST's images), the trials
    train ceil(min_steps / steps per epoch) epochs instead, and ASHA's first cut moves likewise.
    A searched batch size counts with its first value. Called after the data is loaded, before Ray."""
    from search_spaces.registry import STEPS_EPOCHS_CAP

    if not plan.min_steps:
        return plan
    batch = plan.fixed.get("batch_size") or config_mod.CORE["batch_size"].default
    if "batch_size" in plan.space:
        batch = _first(plan.space["batch_size"])
    per_epoch = max(1, -(-int(train_count) // int(batch)))
    epochs = min(max(plan.max_epochs, -(-plan.min_steps // per_epoch)), max(plan.max_epochs, STEPS_EPOCHS_CAP))
    grace = max(plan.grace_period, -(-(plan.grace_steps or 0) // per_epoch))
    plan.max_epochs = plan.fixed["epochs"] = epochs
    plan.grace_period = min(grace, epochs)
    plan.notes.append(f"at least {plan.min_steps} steps: {epochs} epochs of {per_epoch} steps ({train_count} training "
                      f"images, batch {batch}); ASHA's first cut after {plan.grace_period}")
    return plan


def plan_configs(plan: Plan):
    """Every config a trial of the plan can get, as far as checks go: each arm with the first value
    of every searched setting, and each searched value (and range end) alone."""
    for arm in plan.arms or ({},):
        base = {**plan.fixed, **arm, "seed": plan.seeds[0]}
        yield {**base, **{k: _first(v) for k, v in plan.space.items()}}
        for key, spec in plan.space.items():
            for value in spec.grid_values() + ([spec.low, spec.high] if hasattr(spec, "low") else []):
                yield {**base, key: value}


def settle_on_data(plan: Plan, images) -> None:
    """Once the data is loaded, before Ray: own data fixes its class settings (names -> indices, the
    minority classes, natural imbalance; `tuner.owndata.settle`), explicitly in every trial's config;
    then every config is checked against the data (the model takes its shape, ...)."""
    from tuner import owndata

    if data_mod.is_own(plan.fixed["dataset"]):
        plan.fixed.update(owndata.settle(plan.fixed, images))
        if images.info.get("test_split", "").startswith("stratified"):  # the split's settings, in every result
            for key in ("test_fraction", "data_seed"):
                plan.fixed.setdefault(key, config_mod.CORE[key].default)
        if plan.resume:
            _check_resume_options(plan)
    for cfg in plan_configs(plan):
        owndata.check_fits(config_mod.resolve(cfg), images)


def _first(spec):
    return spec.grid_values()[0]


def _check_writable(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_bytes(b"x" * 4096)
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"--storage-path {str(path)!r} is not writable ({e.strerror or e}): choose another folder") from None


def _check_run_dir(plan: Plan) -> None:
    """A new run never overwrites one; a resume needs one. Ray's own test (`Tuner.can_restore`: the
    run's tuner.pkl, on any storage Ray supports, s3:// included), and for local runs also a run
    killed before its tuner.pkl was written but with an experiment state."""
    from ray.tune import Tuner  # imports Ray's library only: nothing starts

    exists = Tuner.can_restore(plan.run_dir)
    if not exists and not runstore.is_remote(plan.run_dir):
        exists = any(Path(plan.run_dir).glob("experiment_state*.json"))
    if plan.resume and not exists:
        raise ConfigError(f"--resume: no run {plan.name!r} under {plan.storage_path} to resume")
    if not plan.resume and exists:
        raise ConfigError(
            f"a run named {plan.name!r} already exists under {plan.storage_path}: add --resume to continue it, "
            "or choose another --name"
        )


# --- --resume: the restored trials keep their configs but get the data this command loads ----------

# may differ between the run and its resume: another machine's data folder (the data actually
# loaded is compared after loading, `check_resume_dataset`)
RESUME_FREE = ("data_dir", "dataset_fallback")


def stored_trial_configs(run_dir) -> list[dict]:
    """The configs of the run's trials (Ray's `params.json`); unreadable ones are skipped (the export
    names them)."""
    configs = []
    for path in sorted(Path(run_dir).glob("*/params.json")):
        try:
            configs.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return configs


def _as_option(key: str, value) -> str:
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return {"budget": f"--budget {text}", "dataset": f"--dataset {text}", "epochs": f"--max-epochs {text}",
            "experiment": f"the experiment {text}", "objectives": f"--metric {text}"}.get(key, f"--set {key}={text}")


def _check_resume_options(plan: Plan) -> None:
    """Tune.restore keeps the run's own configs, searcher and scheduler, but the training data comes
    from this command's options (`tune.with_parameters`). A resume typed with another --budget,
    --dataset or --set than the run's would continue its trials on other data: refuse, naming the
    option that brings the run's value back. Local runs only; a remote run's files are Ray's to read."""
    if "://" in plan.storage_path:
        return
    stored = stored_trial_configs(plan.run_dir)
    if not stored:
        return
    run = stored[0]
    ours = json.loads(json.dumps(plan.fixed, default=str))  # tuples -> lists, as params.json has them
    varying = {*plan.space, *(k for a in plan.arms for k in a), "seed", "group"}  # differ from trial to trial
    first = ("experiment", "budget", "dataset", "epochs")  # the options a typed resume most likely changed
    for key, value in sorted(ours.items(), key=lambda kv: (kv[0] not in first, first.index(kv[0]) if kv[0] in first else 0)):
        if key not in RESUME_FREE and key not in varying and key in run and run[key] != value:
            raise ConfigError(f"--resume: run {plan.name!r} has {key}={run[key]!r} but this command gives {value!r}; "
                              f"resume with {_as_option(key, run[key])}")
    missing = sorted(set(run) - set(ours) - varying)
    if missing:
        raise ConfigError(f"--resume: run {plan.name!r} was started with {_as_option(missing[0], run[missing[0]])}; "
                          "add it to the resume command")


# --- resume by path: the run records its options; a resume reads them back ------------------------

# may differ between the run and its resume: where the data is, and how many resources the trials get
RESUME_FREE_OPTIONS = ("data_dir", "address", "cpus_per_trial", "gpus_per_trial", "max_concurrent", "callback")
NOT_RECORDED = ("resume", "list", "yes", "name", "storage_path")


def record_options(plan: Plan, args: argparse.Namespace) -> None:
    """Write the options of a new run into its folder (and a copy of its experiment file), so that
    `--resume RUN_DIR` continues it with exactly these."""
    options = {k: v for k, v in vars(args).items() if k not in NOT_RECORDED}
    options["experiment"] = plan.experiment.name
    options["experiment_file"] = plan.experiment_file
    if plan.experiment_file:
        copy = "experiment" + Path(plan.experiment_file).suffix
        runstore.write_text(runstore.join(plan.run_dir, copy), Path(plan.experiment_file).read_text())
        options["experiment_file_copy"] = copy
    runstore.write_text(runstore.join(plan.run_dir, runstore.OPTIONS_FILE), json.dumps(options, indent=1) + "\n")


def apply_recorded_options(args: argparse.Namespace, argv: list[str], prog: str = PROG) -> argparse.Namespace:
    """`--resume RUN_DIR` (or `--resume --name N [--storage-path S]`): the run's recorded options
    fill in every option not typed; a typed one must equal the recorded one (RESUME_FREE_OPTIONS
    excepted), else ConfigError. A run without recorded options (started before they were
    recorded) keeps the typed options, checked against its trial configs by build_plan."""
    if not args.resume:
        return args
    given = vars(parser(prog, suppress=True).parse_args(argv))
    if isinstance(args.resume, str):
        if "name" in given or "storage_path" in given:
            raise ConfigError(f"--resume {args.resume}: the folder names the run; drop --name and --storage-path")
        run_dir = args.resume.rstrip("/") if runstore.is_remote(args.resume) else str(Path(args.resume).expanduser().resolve())
        args.storage_path, _, args.name = run_dir.rpartition("/")
        args.resume = True
    elif not args.name:
        raise ConfigError("--resume: give the run's folder (--resume RUN_DIR) or its --name (and --storage-path)")
    run_dir = runstore.join(args.storage_path if runstore.is_remote(args.storage_path)
                            else str(Path(args.storage_path).expanduser().resolve()), args.name)
    text = runstore.read_text(runstore.join(run_dir, runstore.OPTIONS_FILE))
    if text is None:
        if not args.experiment and not args.experiment_file:
            raise ConfigError(f"--resume: {run_dir} has no recorded options ({runstore.OPTIONS_FILE}): no run there, "
                              "or one started before runs recorded them; for that, type its experiment and options again")
        return args
    recorded = json.loads(text)
    copy = recorded.pop("experiment_file_copy", None)
    if "experiment_file" in given:
        given["experiment_file"] = str(Path(given["experiment_file"]).expanduser().resolve())
    for key, value in recorded.items():
        if key in given and key not in RESUME_FREE_OPTIONS and json.loads(json.dumps(given[key])) != value:
            raise ConfigError(f"--resume: run {args.name!r} was started with {_flag(key, value)} but this command "
                              f"gives {_flag(key, given[key])}; drop it to continue with the run's")
        if key not in given:
            setattr(args, key, value)
    if copy and not runstore.is_remote(run_dir) and "experiment_file" not in given:
        args.experiment_file = runstore.join(run_dir, copy)  # the run's own copy: the original may have changed or gone
    return args


def _flag(key: str, value) -> str:
    if key == "experiment":
        return f"the experiment {value}"
    if isinstance(value, bool):
        return f"--{key.replace('_', '-')}" if value else f"no --{key.replace('_', '-')}"
    if isinstance(value, list):
        return " ".join(f"--{key} {v}" for v in value) or f"no --{key}"
    return f"--{key.replace('_', '-')} {value}"


def check_resume_dataset(plan: Plan, images) -> None:
    """The dataset this resume loaded must be the one the run's trials trained on (a default dataset
    falls back to the shipped sample where the full one is missing: a run started on one machine
    and resumed on another could switch silently)."""
    if not plan.resume or "://" in plan.storage_path:
        return
    for path in sorted(Path(plan.run_dir).glob("*/result.json")):
        try:
            with open(path) as f:
                used = json.loads(f.readline()).get("dataset")
        except (OSError, ValueError):
            continue
        if used and used != images.name:
            raise ConfigError(f"--resume: run {plan.name!r} trained on dataset {used!r} but this command loaded "
                              f"{images.name!r}; resume where {used!r} is available (--data-dir) or start a new --name")
        return


def describe(plan: Plan, images=None, split_counts=None) -> str:
    exp = plan.experiment
    searched = ", ".join(f"{k} {v.describe()}" for k, v in plan.space.items()) or "nothing (fixed settings)"
    lines = [
        f"Experiment  {exp.name}: {exp.description}",
        f"Budget      {plan.budget_name}: {plan.num_trials()} trials x up to {plan.max_epochs} epochs, "
        f"seeds {plan.seeds}" + (f", arms {[a.get('group') for a in plan.arms]}" if plan.arms else ""),
        f"Model       {plan.fixed.get('model', config_mod.CORE['model'].default)}",
        f"Data        {images.name if images else plan.fixed['dataset']}"
        + (f", training counts per class {list(split_counts)}" if split_counts is not None else ""),
        *(f"            {line}" for line in (owndata_lines(plan, images) if images is not None else [])),
        f"Searcher    {plan.searcher} over {searched}; selecting on {plan.metric} ({plan.mode})",
        f"Scheduler   " + (f"ASHA (grace {plan.grace_period} epochs, reduction factor {plan.reduction_factor})"
                           if plan.asha else "none: every trial runs to the end"),
        f"Resources   {plan.cpus_per_trial:g} CPU, {plan.gpus_per_trial:g} GPU per trial"
        + (f", at most {plan.max_concurrent} at once" if plan.max_concurrent else ""),
        f"Results     {plan.run_dir}",
    ]
    return "\n".join(lines + [f"Note        {n}" for n in plan.notes])


def owndata_lines(plan: Plan, images) -> list[str]:
    """Own data: what was found (classes, counts, minority classes), shown before the search starts."""
    if not data_mod.is_own(images.name):
        return []
    from tuner import owndata

    return owndata.describe(images, plan.fixed.get("minority_classes", []))


def param_space(plan: Plan) -> dict:
    from ray import tune

    space = {k: v for k, v in plan.fixed.items()}
    for key, spec in plan.space.items():
        if plan.searcher == "grid":
            space[key] = tune.grid_search(spec.grid_values())
        elif hasattr(spec, "values"):
            space[key] = tune.choice(list(spec.values))
        elif spec.scale == "log":
            space[key] = tune.loguniform(spec.low, spec.high)
        elif spec.scale == "int":
            space[key] = tune.randint(int(spec.low), int(spec.high) + 1)
        else:
            space[key] = tune.uniform(spec.low, spec.high)
    space["seed"] = tune.grid_search(plan.seeds) if len(plan.seeds) > 1 else plan.seeds[0]
    if plan.arms:
        # a study: grid over the arm's group label; each arm's other settings follow its label,
        # so every setting stays a flat config key (and a Parquet column)
        arms = {a["group"]: a for a in plan.arms}
        space["group"] = tune.grid_search(list(arms))
        for key in sorted({k for a in plan.arms for k in a} - {"group"}):
            default = plan.fixed.get(key, config_mod.all_params()[key].default)
            space[key] = tune.sample_from(lambda config, key=key, default=default: arms[config["group"]].get(key, default))
    return space


def load_images(plan: Plan):
    # before Ray: an unavailable dataset fails here in seconds; the default may fall back (warning)
    try:
        return data_mod.load_dataset(plan.fixed["dataset"], plan.fixed.get("data_dir"),
                                     fallback=plan.fixed["dataset_fallback"], options=plan.fixed)
    except ConfigError as e:
        if plan.budget_name == "paper":
            raise ConfigError(f"{e}; --budget paper runs on the real data only (no fallback to the shipped "
                              "sample): pass --data-dir DIR") from None
        raise


def make_tuner(plan: Plan, images, cluster_cpus: float):
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from tuner.trainable import tune_trainable

    resources = {"cpu": plan.cpus_per_trial, "gpu": plan.gpus_per_trial}
    from tuner import remedies, tasks

    # remedies and tasks registered outside the package (an experiment file, a notebook) travel with the trainable
    plugins = {"remedies": remedies.extra(), "tasks": tasks.extra()}
    trainable = tune.with_resources(tune.with_parameters(tune_trainable, data=images, plugins=plugins), resources)
    if plan.resume:
        # the space again: Ray stores its functions (a study's arms, tune.sample_from) as placeholders,
        # and trials not yet created when the run stopped would get a placeholder as their config
        return tune.Tuner.restore(plan.run_dir, trainable=trainable, param_space=param_space(plan),
                                  resume_unfinished=True, resume_errored=True)
    concurrent = plan.max_concurrent or max(1, int(cluster_cpus // plan.cpus_per_trial))
    if plan.address and not plan.max_concurrent:
        # an autoscaling cluster starts small: pending trials are what make it add GPU nodes
        concurrent = max(concurrent, min(plan.num_samples, 32))
    search_alg = optuna_searcher(plan, concurrent) if plan.searcher == "optuna" else None
    scheduler = (
        ASHAScheduler(max_t=plan.max_epochs, grace_period=plan.grace_period, reduction_factor=plan.reduction_factor)
        if plan.asha else FIFOScheduler()
    )
    tune_config = tune.TuneConfig(
        metric=None if plan.objectives else plan.metric, mode=None if plan.objectives else plan.mode,
        search_alg=search_alg, scheduler=scheduler,
        # one concurrency setting: Tune wraps a searcher in its ConcurrencyLimiter itself (a searcher
        # such as Optuna, unlimited, would propose one trial at a time); a grid runs what fits
        num_samples=plan.num_samples, max_concurrent_trials=concurrent if search_alg else plan.max_concurrent,
        reuse_actors=True,  # a fresh actor per trial costs seconds; the trainable rebuilds all state from config
        trial_name_creator=_trial_name,
        trial_dirname_creator=_trial_name,
    )
    run_config = tune.RunConfig(
        name=plan.name,
        storage_path=plan.storage_path,
        checkpoint_config=tune.CheckpointConfig(
            num_to_keep=2, checkpoint_score_attribute=plan.metric, checkpoint_score_order=plan.mode
        ),
        failure_config=tune.FailureConfig(max_failures=2),  # a crashed trial resumes from its checkpoint
        callbacks=_result_loggers() + tracking_callbacks(plan),
        progress_reporter=progress_reporter(plan),
        verbose=1,
    )
    return tune.Tuner(trainable, param_space=param_space(plan), tune_config=tune_config, run_config=run_config)


OPTUNA_JOURNAL = "optuna.journal"


def optuna_storage(run_dir: str):
    """The run's Optuna study, persistent: Optuna's journal file in the run folder, which
    `optuna.load_study`, `optuna.visualization` and `optuna-dashboard` read, while the search runs too."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    Path(run_dir).mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(Path(run_dir) / OPTUNA_JOURNAL)))


def optuna_searcher(plan: Plan, concurrent: int):
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    # several trials at once: the constant liar counts the running ones as bad results, so TPE does
    # not propose the same region to every free slot
    sampler = optuna.samplers.TPESampler(seed=plan.seeds[0], constant_liar=concurrent > 1)
    # the journal is a local file (file locks); a run on s3:// keeps its study in memory
    storage = None if runstore.is_remote(plan.run_dir) else optuna_storage(plan.run_dir)
    metrics = {}
    if plan.objectives:  # the searcher holds the metrics (TPE handles several); TuneConfig must not
        metrics = {"metric": list(plan.objectives), "mode": [plan.mode] * len(plan.objectives)}
    return OptunaSearch(sampler=sampler, storage=storage, study_name=plan.name, **metrics)


# --callback: Ray's own logger callbacks; the packages are optional extras of imbalance-tune
CALLBACK_PACKAGES = {"mlflow": "mlflow", "wandb": "wandb"}


def check_callback_package(name: str) -> None:
    import importlib.util

    if importlib.util.find_spec(CALLBACK_PACKAGES[name]) is None:
        raise ConfigError(f"--callback {name} needs the {CALLBACK_PACKAGES[name]} package: "
                          f"pip install 'imbalance-tune[{name}]'")


def tracking_callbacks(plan: Plan) -> list:
    out = []
    if "mlflow" in plan.callbacks:
        from ray.air.integrations.mlflow import MLflowLoggerCallback

        # tracking server from $MLFLOW_TRACKING_URI (MLflow's own default: ./mlruns); one MLflow run per trial
        out.append(MLflowLoggerCallback(tracking_uri=os.environ.get("MLFLOW_TRACKING_URI"), experiment_name=plan.name,
                                        save_artifact=False))
    if "wandb" in plan.callbacks:
        from ray.air.integrations.wandb import WandbLoggerCallback

        # credentials from `wandb login` / $WANDB_API_KEY, as wandb itself reads them
        out.append(WandbLoggerCallback(project=os.environ.get("WANDB_PROJECT", "imbalance-tune"), group=plan.name))
    return out


def _result_loggers() -> list:
    """Ray Tune's result.json / progress.csv loggers, except that a retried trial keeps its log.

    Ray Tune (2.60) restarts a failed trial by copying its log files back from the storage path
    over the driver's copy. Storage lags the driver by up to one experiment snapshot, so after a
    lost worker node the epochs reported in that gap vanished from result.json (the trial itself
    resumed correctly from its checkpoint; tests/test_multinode.py). Copy only when the driver has
    no copy: a --resume on a new driver.
    """
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    class KeepDriverLog:
        def _restore_from_remote(self, file_name, trial):
            if not Path(trial.local_path, file_name).exists():
                super()._restore_from_remote(file_name, trial)

    class JsonLog(KeepDriverLog, JsonLoggerCallback):
        pass

    class CsvLog(KeepDriverLog, CSVLoggerCallback):
        pass

    return [JsonLog(), CsvLog()]  # Tune adds its defaults only for the kinds missing here


def _trial_name(trial) -> str:
    return f"trial_{trial.trial_id}"


def progress_reporter(plan: Plan):
    from ray.tune import CLIReporter

    short = {"epoch": "epoch", plan.metric: plan.metric, "val_minority_acc": "val_min_acc", "acc": "test_acc"}
    params = [*plan.space, *(["seed"] if len(plan.seeds) > 1 else []), *(["group"] if plan.arms else [])]
    return CLIReporter(metric_columns=short, parameter_columns=params, max_report_frequency=15,
                       sort_by_metric=True, max_progress_rows=12)


def best_epoch_rows(result_grid, plan: Plan) -> list[dict]:
    """Per trial, the epoch with the best validation metric (selection never looks at test)."""
    rows = []
    for r in result_grid:
        df = r.metrics_dataframe
        row = {"trial_id": r.metrics.get("trial_id", "?") if r.metrics else "?", "status": "ERROR" if r.error else "OK",
               "config": r.config}
        if df is not None and len(df) and plan.metric in df:
            best = df.loc[df[plan.metric].idxmax() if plan.mode == "max" else df[plan.metric].idxmin()]
            row.update({k: best.get(k) for k in ("epoch", plan.metric, *SUMMARY_METRICS)})
            row["epochs_run"] = int(df["epoch"].max())
        if r.error:
            row["error"] = str(r.error).strip().splitlines()[-1][:120]
        rows.append(row)
    key = (lambda x: -x.get(plan.metric, float("-inf"))) if plan.mode == "max" else (lambda x: x.get(plan.metric, float("inf")))
    return sorted(rows, key=lambda x: key(x) if x.get(plan.metric) == x.get(plan.metric) and plan.metric in x else float("inf"))


def summary(result_grid, plan: Plan, top: int = 10, prog: str = PROG) -> str:
    rows = best_epoch_rows(result_grid, plan)
    params = [*plan.space, *(["seed"] if len(plan.seeds) > 1 else []), *(["group"] if plan.arms else [])]
    head = ["rank", "trial", *params, "epoch", plan.metric, *SUMMARY_METRICS]
    table = [head]
    for i, row in enumerate([r for r in rows if plan.metric in r][:top], 1):
        table.append([str(i), row["trial_id"], *(_fmt(row["config"].get(p)) for p in params),
                      f"{row['epoch']:.0f}/{row['epochs_run']}", *(_fmt(row[m]) for m in (plan.metric, *SUMMARY_METRICS))])
    widths = [max(len(r[c]) for r in table) for c in range(len(head))]
    text = "\n".join("  ".join(cell.rjust(w) for cell, w in zip(r, widths)) for r in table)
    failed = [r for r in rows if r["status"] == "ERROR"]
    stopped = sum(1 for r in rows if r.get("epochs_run", plan.max_epochs) < plan.max_epochs)
    out = [
        f"\nBest configs by {plan.metric} (validation; test metrics at that epoch):",
        text,
        f"\n{len(rows)} trials: {len(rows) - len(failed)} finished ({stopped} stopped early by ASHA or a stop reason), "
        f"{len(failed)} failed.",
    ]
    out += [f"  failed {r['trial_id']}: {r.get('error', '')}" for r in failed]
    if plan.objectives:
        out += pareto_summary(result_grid, plan)
    report = "python -m analysis.report" if prog == PROG else f"{prog} report"
    out += [f"Results:  {plan.run_dir}", f"Analyse:  {report} {plan.run_dir}"]
    return "\n".join(out)


# --- multi-objective searches: the Pareto front and its knee ------------------------------------

def pareto_summary(result_grid, plan: Plan) -> list[str]:
    """The front over every trial's final epoch (what the multi-objective searcher was told), the
    knee point, and a plot `pareto.png` in the run folder."""
    objectives = list(plan.objectives)
    rows = [{"trial_id": r.metrics.get("trial_id", "?"), "config": r.config, **r.metrics} for r in result_grid
            if r.metrics and all(np.isfinite(r.metrics.get(m, np.nan)) for m in objectives)]
    if not rows:
        return ["\nPareto front: no trial reported " + ", ".join(objectives)]
    points = np.array([[row[m] for m in objectives] for row in rows])
    modes = [plan.mode] * len(objectives)
    on_front, order, knee_row = front_and_knee(points, modes)
    front, knee = [rows[i] for i in order], rows[knee_row]
    params = [*plan.space, *(["seed"] if len(plan.seeds) > 1 else [])]
    head = ["knee", "trial", *params, "epoch", *objectives, *SUMMARY_METRICS]
    table = [head] + [["*" if r is knee else "", r["trial_id"], *(_fmt(r["config"].get(p)) for p in params),
                       str(r.get("epoch")), *(_fmt(r.get(m)) for m in (*objectives, *SUMMARY_METRICS))] for r in front]
    widths = [max(len(r[c]) for r in table) for c in range(len(head))]
    out = [
        f"\nPareto front of {', '.join(objectives)} ({plan.mode}) over {len(rows)} trials "
        "(final epochs, validation; test metrics at that epoch):",
        "\n".join("  ".join(cell.rjust(w) for cell, w in zip(r, widths)) for r in table),
        f"Knee (*): trial {knee['trial_id']}, the front point closest to the ideal (every objective at its best) "
        "after scaling each objective to [0, 1] over the front.",
    ]
    if len(objectives) == 2 and "://" not in plan.storage_path:
        from analysis.plots import pareto_plot  # matplotlib only when there is a front to draw

        path = pareto_plot(points, on_front, [knee[m] for m in objectives], objectives, plan.run_dir, "pareto")
        out.append(f"Plot:     {path}")
    return out


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 1000 else f"{v:.3g}"
    return str(v)


def resume_command(argv: list[str], plan: Plan, prog: str = PROG) -> str:
    """The command that continues this run: its folder holds the options it was started with."""
    import shlex

    return shlex.join([*(["python", "-m", "tuner.search"] if prog == PROG else [prog]), "--resume", plan.run_dir])


def _stop_gracefully_on_signals(stop: dict) -> dict | None:
    """Ctrl-C and SIGTERM (kill, a batch scheduler, a pod shutdown) stop the search the way Ray Tune
    stops on Ctrl-C: the trials stop, the experiment state is saved once more, fit() returns. We take
    SIGINT over from Tune (TUNE_DISABLE_SIGINT_HANDLER) to know that a stop was asked for, and pass
    the first signal on to Tune's handler of SIGUSR1, the same graceful stop; a second one stops at
    once. Returns the handlers to restore (None off the main thread, where there are no signals)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None

    def on_signal(signum, frame):
        first = "signal" not in stop
        stop.setdefault("signal", signum)
        tune_stop = signal.getsignal(signal.SIGUSR1)  # Tune's while fit() runs
        if not (first and callable(tune_stop)):
            raise KeyboardInterrupt
        tune_stop(signal.SIGUSR1, frame)

    previous = {signal.SIGUSR1: signal.getsignal(signal.SIGUSR1), "env": os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")}
    previous.update({sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)})
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    return previous


def _restore_signals(previous: dict | None) -> None:
    import signal

    for sig, handler in (previous or {}).items():
        if sig == "env":
            os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
            if handler is not None:
                os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = handler
        elif handler is not None:
            signal.signal(sig, handler)


def prepare(args: argparse.Namespace, argv: list[str], prog: str = PROG):
    """Options -> (plan, images), every check done, nothing started. Raises ConfigError (one line)."""
    args = apply_recorded_options(args, argv, prog)
    plan = build_plan(args)
    images = load_images(plan)
    settle_on_data(plan, images)  # own data: class settings fixed (and the resume check made) here
    first = {**plan.fixed, **{k: _first(v) for k, v in plan.space.items()}, **(plan.arms[0] if plan.arms else {})}
    split = data_mod.make_split(images, config_mod.resolve(first))
    size_to_data(plan, int(split.counts.sum()))
    if plan.resume and not data_mod.is_own(plan.fixed["dataset"]):
        _check_resume_options(plan)
    check_resume_dataset(plan, images)
    print(describe(plan, images, split.counts.tolist()), flush=True)
    if not plan.resume:
        record_options(plan, args)
    return plan, images


def check_cluster(plan: Plan, nodes: list[dict]) -> None:
    """On a cluster, trials that ask for no GPU run on the CPUs they find first (the head's), and an
    autoscaler never starts a GPU worker for them: refuse, naming the GPU nodes or node types.
    `nodes`: `ray.nodes()` entries (the GPU workers of an autoscaling cluster may not be up yet;
    cluster.yaml's head advertises no CPU for trials, so they then wait for a worker instead)."""
    if not plan.address or plan.gpus_per_trial > 0:
        return
    gpus = [f"{n.get('NodeManagerAddress', '?')} ({n['Resources']['GPU']:g} GPU)" for n in nodes
            if n.get("Alive", True) and n.get("Resources", {}).get("GPU", 0) > 0]
    if gpus:
        raise ConfigError(f"--gpus-per-trial 0 on a cluster with GPU nodes ({', '.join(gpus)}): the trials would train on "
                          "CPUs only; pass --gpus-per-trial 1 (or 0.25 to pack 4 trials per GPU)")


def execute(plan: Plan, images, argv: list[str], prog: str = PROG):
    """Start (or join) Ray and run the search. Returns (exit code, ResultGrid or None when stopped)."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the classic reporter honours our trimmed columns
    # per-epoch checkpoints of short trials trigger a noisy (harmless) snapshot warning
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    import signal

    import ray

    stop, previous = {}, None
    try:
        if plan.address:
            ray.init(address=plan.address, log_to_driver=True)
            check_cluster(plan, ray.nodes())
        elif not ray.is_initialized():
            ray.init(include_dashboard=False, log_to_driver=False)
        previous = _stop_gracefully_on_signals(stop)  # after ray.init, which installs a SIGTERM handler that aborts
        tuner = make_tuner(plan, images, ray.cluster_resources().get("CPU", 1))
        results = tuner.fit()
    except KeyboardInterrupt:
        # a second signal, or one before the search started: no final snapshot, the last one is used
        saved = runstore.is_remote(plan.run_dir) or any(Path(plan.run_dir).glob("experiment_state*.json"))
        print("\nInterrupted. " + (f"Resume with: {resume_command(argv, plan, prog)}" if saved else
                                   "The search had not started: nothing to resume."), flush=True)
        return 128 + stop.get("signal", signal.SIGINT), None
    finally:
        _restore_signals(previous)
    if stop:
        # Ray marks the trials it stopped TERMINATED in `results`: a summary would count them as finished
        print(f"\nInterrupted ({signal.Signals(stop['signal']).name}): the trials that finished are kept, the others "
              f"continue from their last checkpoint.\nResume with: {resume_command(argv, plan, prog)}", flush=True)
        return 128 + stop["signal"], results
    print(summary(results, plan, prog=prog))
    return 0, results


def main(argv=None, prog: str = PROG) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv, prog)
    try:
        if args.list:
            print(list_experiments(args.experiment_file))
            return 0
        plan, images = prepare(args, argv, prog)
        return execute(plan, images, argv, prog)[0]
    except ConfigError as e:
        _fail(str(e))


if __name__ == "__main__":
    one_line_warnings()
    sys.exit(main())
