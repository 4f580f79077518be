"""`--resume`: a run records its options (`record_options`) and a resume reads them back
(`apply_recorded_options`); the restored trials keep their configs but get the data this command
loads, so a resume that would change them is refused (`check_resume_options`, `check_resume_dataset`)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from tuner import runstore
from tuner.errors import ConfigError
from tuner.plan import PROG, Plan, parser

# may differ between the run and its resume: another machine's data folder (the data actually
# loaded is compared after loading, `check_resume_dataset`)
RESUME_FREE = ("data_dir", "dataset_fallback")
# may differ between the run and its resume: where the data is, and how many resources the trials get
RESUME_FREE_OPTIONS = ("data_dir", "address", "cpus_per_trial", "gpus_per_trial", "max_concurrent", "callback")
NOT_RECORDED = ("resume", "list", "name", "storage_path")


# --- the restored trials' configs against this command's ----------------------------------------

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


def check_resume_options(plan: Plan) -> None:
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


# --- resume by path: the run records its options; a resume reads them back ------------------------

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
    run_dir = _run_dir_to_resume(args, given)
    text = runstore.read_text(runstore.join(run_dir, runstore.OPTIONS_FILE))
    if text is None:
        if not args.experiment and not args.experiment_file:
            raise ConfigError(f"--resume: {run_dir} has no recorded options ({runstore.OPTIONS_FILE}): no run there, "
                              "or one started before runs recorded them; for that, type its experiment and options again")
        return args
    recorded = json.loads(text)
    copy = recorded.pop("experiment_file_copy", None)
    _merge_recorded(args, given, recorded)
    if copy and not runstore.is_remote(run_dir) and "experiment_file" not in given:
        args.experiment_file = runstore.join(run_dir, copy)  # the run's own copy: the original may have changed or gone
    return args


def _run_dir_to_resume(args: argparse.Namespace, given: dict) -> str:
    """The run folder a resume names (`--resume RUN_DIR`, or --name under --storage-path); sets
    args.storage_path, args.name and args.resume=True accordingly."""
    if isinstance(args.resume, str):
        if "name" in given or "storage_path" in given:
            raise ConfigError(f"--resume {args.resume}: the folder names the run; drop --name and --storage-path")
        run_dir = args.resume.rstrip("/") if runstore.is_remote(args.resume) else str(Path(args.resume).expanduser().resolve())
        args.storage_path, _, args.name = run_dir.rpartition("/")
        args.resume = True
    elif not args.name:
        raise ConfigError("--resume: give the run's folder (--resume RUN_DIR) or its --name (and --storage-path)")
    return runstore.join(args.storage_path if runstore.is_remote(args.storage_path)
                         else str(Path(args.storage_path).expanduser().resolve()), args.name)


def _merge_recorded(args: argparse.Namespace, given: dict, recorded: dict) -> None:
    """The recorded options fill in those not typed; a typed one must equal the recorded one."""
    if "experiment_file" in given:
        given["experiment_file"] = str(Path(given["experiment_file"]).expanduser().resolve())
    for key, value in recorded.items():
        if key in given and key not in RESUME_FREE_OPTIONS and json.loads(json.dumps(given[key])) != value:
            raise ConfigError(f"--resume: run {args.name!r} was started with {_flag(key, value)} but this command "
                              f"gives {_flag(key, given[key])}; drop it to continue with the run's")
        if key not in given:
            setattr(args, key, value)


def _flag(key: str, value) -> str:
    if key == "experiment":
        return f"the experiment {value}"
    if isinstance(value, bool):
        return f"--{key.replace('_', '-')}" if value else f"no --{key.replace('_', '-')}"
    if isinstance(value, list):
        return " ".join(f"--{key} {v}" for v in value) or f"no --{key}"
    return f"--{key.replace('_', '-')} {value}"
