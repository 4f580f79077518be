"""Options -> a checked `Plan`, before Ray starts: the experiment, its budget and every option are
checked here (`build_plan`), the data is loaded once on the driver (`load_images`) and every
config any trial can get is checked against it (`settle_on_data`). `prepare` does all of it.
Every check raises ConfigError with one line."""
from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

from tuner import config as config_mod
from tuner import data as data_mod
from tuner import ray_compat, runstore
from tuner.errors import ConfigError
from tuner.plan import PROG, STEPS_CAP, Plan, first_value, metric_names
from tuner.resume import apply_recorded_options, check_resume_dataset, check_resume_options, record_options
from tuner.summary import describe

ADDRESS = re.compile(r"^(auto|local|(ray://)?[A-Za-z0-9][A-Za-z0-9.\-]*:\d{1,5})$")
# --callback: Ray's own logger callbacks; the packages are optional extras of imbalance-tune
CALLBACK_PACKAGES = {"mlflow": "mlflow", "wandb": "wandb"}


def prepare(args: argparse.Namespace, argv: list[str], prog: str = PROG):
    """Options -> (plan, images), every check done, nothing started. Raises ConfigError (one line)."""
    args = apply_recorded_options(args, argv, prog)
    plan = build_plan(args)
    images = load_images(plan)
    settle_on_data(plan, images)  # own data: class settings fixed (and the resume check made) here
    first = {**plan.fixed, **{k: first_value(v) for k, v in plan.space.items()}, **(plan.arms[0] if plan.arms else {})}
    split = data_mod.make_split(images, config_mod.resolve(first))
    size_to_data(plan, int(split.counts.sum()))
    if plan.resume and not data_mod.is_own(plan.fixed["dataset"]):
        check_resume_options(plan)
    check_resume_dataset(plan, images)
    print(describe(plan, images, split.counts.tolist()), flush=True)
    if not plan.resume:
        record_options(plan, args)
    return plan, images


# --- the experiment ---------------------------------------------------------------------------------

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


def check_callback_package(name: str) -> None:
    import importlib.util

    if importlib.util.find_spec(CALLBACK_PACKAGES[name]) is None:
        raise ConfigError(f"--callback {name} needs the {CALLBACK_PACKAGES[name]} package: "
                          f"pip install 'imbalance-tune[{name}]'")


# --- build_plan: all checks that need no Ray and no data, in the order they are reported ------------

def build_plan(args: argparse.Namespace) -> Plan:
    """All checks that need no Ray and no data. Raises ConfigError with one line."""
    exp = resolve_experiment(args)
    if args.budget not in exp.budgets:
        raise ConfigError(f"--budget {args.budget!r}: choose one of {', '.join(exp.budgets)}")
    budget = exp.budgets[args.budget]
    # a budget may run a subset of a study's arms (a coarser grid for a CPU)
    arms = tuple(a for a in exp.arms if budget.groups is None or a["group"] in budget.groups)
    _check_resources(args)
    metric, objectives = _objectives(args, exp)
    seeds = _seeds(args, budget)
    sets = parse_sets(args.set)
    fixed = _fixed_settings(args, exp, budget, sets, objectives)
    max_epochs, min_steps = _epochs(args, budget, fixed)
    space = {k: v for k, v in exp.space.items() if k not in sets}
    notes = [f"compute-matched: every trial trains {fixed['max_steps']} optimizer steps (epochs up to {max_epochs})"] \
        if fixed.get("max_steps") else []
    searcher = _searcher(args, exp, budget, space, seeds, arms, notes)
    num_samples = args.num_samples or (budget.num_samples if searcher != "grid" else 1)
    if fixed.get("precision") == "fp16" and args.gpus_per_trial == 0:
        raise ConfigError(f"{config_mod.FP16_ON_CPU}, or give trials a GPU with --gpus-per-trial")
    if fixed.get("precision") == "bf16" and args.gpus_per_trial == 0 and args.address in (None, "local"):
        from tuner.precision import cpu_has_bf16  # the trials run on this machine's CPU

        if not cpu_has_bf16():
            raise ConfigError(f"{config_mod.BF16_ON_CPU} with --gpus-per-trial")
    asha = _asha(args, exp, searcher, seeds, arms, objectives, notes)
    storage, name = _storage_and_name(args, exp)
    plan = Plan(
        experiment=exp, budget_name=args.budget, fixed=fixed, space=space, searcher=searcher, seeds=seeds,
        num_samples=num_samples, max_epochs=max_epochs, metric=metric, mode=args.mode or exp.mode,
        asha=asha,
        grace_period=min(budget.grace_period, max_epochs), reduction_factor=budget.reduction_factor,
        storage_path=storage, name=name, resume=args.resume, cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial, max_concurrent=args.max_concurrent or budget.max_concurrent,
        address=args.address, arms=arms, notes=notes, objectives=objectives, min_steps=min_steps,
        max_steps=getattr(args, "max_steps", None),
        grace_steps=budget.grace_steps if min_steps else None, callbacks=tuple(dict.fromkeys(args.callback)),
        experiment_file=str(Path(args.experiment_file).expanduser().resolve()) if args.experiment_file else None,
    )
    if getattr(args, "from_run", None):  # --rerun-top K --from-run RUN_DIR: the run's best configurations
        plan = _rerun(plan, args)
    for cfg in plan_configs(plan):  # every value any trial can get, now, not inside a trial on the cluster
        config_mod.resolve(cfg)
    if objectives:
        notes.append(f"multi-objective: Pareto front of {', '.join(objectives)} ({plan.mode}), every trial to the end")
    _check_run_dir(plan)
    return plan


def _check_resources(args: argparse.Namespace) -> None:
    """Counts, callbacks, resources per trial and the cluster address."""
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


def _objectives(args: argparse.Namespace, exp) -> tuple[str, tuple]:
    """(the selection metric, the objectives of a multi-objective search or ())."""
    # comma-separated metrics ask for a multi-objective search: the Pareto front of all of them
    objectives = tuple(m.strip() for m in (args.metric or exp.metric).split(","))
    for metric in objectives:
        if metric not in metric_names() and not re.fullmatch(r"(val_)?acc_\d+", metric):  # any class count
            raise ConfigError(f"--metric {metric!r}: choose a reported metric, e.g. val_balanced_acc, val_minority_acc, val_macro_f1")
        if args.metric and not metric.startswith("val_"):
            print(f"warning: selecting on {metric!r}, which is not a validation metric", file=sys.stderr)
    return objectives[0], (objectives if len(objectives) > 1 else ())


def _seeds(args: argparse.Namespace, budget) -> list[int]:
    # `--rerun-top K --seeds S` without --from-run: the search runs on its budget's seeds, the re-run on S
    if not args.seeds or (getattr(args, "rerun_top", None) and not getattr(args, "from_run", None)):
        return list(budget.seeds)
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--seeds {args.seeds!r}: expected comma-separated integers, e.g. 0,1,2") from None
    if not seeds:
        raise ConfigError(f"--seeds {args.seeds!r}: give at least one seed")
    return seeds


def _fixed_settings(args: argparse.Namespace, exp, budget, sets: dict, objectives: tuple) -> dict:
    """The settings every trial shares: the experiment's, the budget's, --set, the dataset."""
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
    return fixed


def _rerun(plan: Plan, args: argparse.Namespace) -> Plan:
    from tuner import rerun

    if not args.rerun_top:
        raise ConfigError("--from-run needs --rerun-top K: how many of its best configurations to re-run")
    plan = rerun.rerun_plan(plan, args, args.from_run)
    if not args.name:
        plan.name = rerun.default_name(args.from_run, args.rerun_top)
    return plan


def _epochs(args: argparse.Namespace, budget, fixed: dict) -> tuple[int, int | None]:
    """(max epochs, the budget's floor in steps). --max-steps: every trial's budget in optimizer steps,
    epochs only a cap; --max-epochs: exactly that many epochs (no floor in steps)."""
    max_steps = getattr(args, "max_steps", None)
    if max_steps is not None:
        if max_steps < 1:
            raise ConfigError(f"--max-steps {max_steps}: must be an integer >= 1")
        fixed["max_steps"] = max_steps
        fixed["epochs"] = args.max_epochs or STEPS_CAP
        return fixed["epochs"], None
    fixed["epochs"] = args.max_epochs or budget.max_epochs
    return fixed["epochs"], None if args.max_epochs else budget.min_steps


def _searcher(args: argparse.Namespace, exp, budget, space: dict, seeds: list, arms: tuple, notes: list) -> str:
    searcher = args.searcher or budget.searcher or exp.searcher
    if searcher == "optuna" and not space:
        searcher = "grid"
    if searcher == "optuna" and (len(seeds) > 1 or arms):
        notes.append(f"{len(seeds)} seeds: searching the grid of each parameter so every config runs with every seed")
        searcher = "grid"
    return searcher


def _asha(args: argparse.Namespace, exp, searcher: str, seeds: list, arms: tuple, objectives: tuple, notes: list) -> bool:
    # ASHA ranks one metric; a grid over several seeds compares seed means, which need every trial
    # at the same epochs: ASHA is off there unless --asha asks for it
    asha = exp.searcher != "grid" and not args.no_asha and not arms and not objectives
    if asha and searcher == "grid" and len(seeds) > 1 and not args.asha:
        asha = False
        notes.append("ASHA off: a grid over several seeds runs every trial to the end (--asha keeps it)")
    return asha


def _storage_and_name(args: argparse.Namespace, exp) -> tuple[str, str]:
    storage = args.storage_path
    if "://" not in storage:
        storage = str(Path(storage).expanduser().resolve())
        _check_writable(Path(storage))
    name = args.name or f"{exp.name}-{args.budget}-{time.strftime('%Y%m%d-%H%M%S')}"
    if not re.fullmatch(r"[A-Za-z0-9._-]+", name):
        raise ConfigError(f"--name {name!r}: use letters, digits, '.', '_' and '-' only")
    return storage, name


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
    exists = ray_compat.can_restore(plan.run_dir)
    if not exists and not runstore.is_remote(plan.run_dir):
        exists = ray_compat.has_experiment_state(plan.run_dir)
    if plan.resume and not exists:
        raise ConfigError(f"--resume: no run {plan.name!r} under {plan.storage_path} to resume")
    if not plan.resume and exists:
        raise ConfigError(
            f"a run named {plan.name!r} already exists under {plan.storage_path}: add --resume to continue it, "
            "or choose another --name"
        )


def plan_configs(plan: Plan):
    """Every config a trial of the plan can get, as far as checks go: each arm with the first value
    of every searched setting, and each searched value (and range end) alone."""
    for arm in plan.arms or ({},):
        base = {**plan.fixed, **arm, "seed": plan.seeds[0]}
        yield {**base, **{k: first_value(v) for k, v in plan.space.items()}}
        for key, spec in plan.space.items():
            for value in spec.grid_values() + ([spec.low, spec.high] if hasattr(spec, "low") else []):
                yield {**base, key: value}


# --- once the data is loaded ---------------------------------------------------------------------------

def load_images(plan: Plan):
    # an unavailable dataset stops the search here, before Ray starts (docs/performance.md); the default may fall back (warning)
    try:
        return data_mod.load_dataset(plan.fixed["dataset"], plan.fixed.get("data_dir"),
                                     fallback=plan.fixed["dataset_fallback"], options=plan.fixed)
    except ConfigError as e:
        if plan.budget_name == "paper":
            raise ConfigError(f"{e}; --budget paper runs on the real data only (no fallback to the shipped "
                              "sample): pass --data-dir DIR") from None
        raise


def settle_on_data(plan: Plan, images) -> None:
    """Once the data is loaded, before Ray: own data fixes its class settings (names -> indices, the
    minority classes, natural imbalance; `tuner.owndata.settle`), explicitly in every trial's config;
    then every config is checked against the data (the model takes its shape, ...)."""
    from tuner import owndata, tasks

    if data_mod.is_own(plan.fixed["dataset"]):
        plan.fixed.update(owndata.settle(plan.fixed, images))
        if images.info.get("test_split", "").startswith("stratified"):  # the split's settings, in every result
            for key in ("test_fraction", "data_seed"):
                plan.fixed.setdefault(key, config_mod.CORE[key].default)
        if plan.resume:
            check_resume_options(plan)
    for cfg in plan_configs(plan):
        resolved = config_mod.resolve(cfg)
        tasks.for_config(resolved).check_data(resolved, images)  # classification: the model takes the data's shape


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
        batch = first_value(plan.space["batch_size"])
    per_epoch = max(1, -(-int(train_count) // int(batch)))
    epochs = min(max(plan.max_epochs, -(-plan.min_steps // per_epoch)), max(plan.max_epochs, STEPS_EPOCHS_CAP))
    grace = max(plan.grace_period, -(-(plan.grace_steps or 0) // per_epoch))
    plan.max_epochs = plan.fixed["epochs"] = epochs
    plan.grace_period = min(grace, epochs)
    plan.notes.append(f"at least {plan.min_steps} steps: {epochs} epochs of {per_epoch} steps ({train_count} training "
                      f"images, batch {batch}); ASHA's first cut after {plan.grace_period}")
    return plan
