"""A checked `Plan` -> a Ray Tune `Tuner`, run: ASHA stops weak trials, Optuna (its study persisted
in the run folder) or a grid proposes them, the training data goes into Ray's object store once
(`tune.with_parameters`), and each trial is `tuner.trainable.tune_trainable`. `execute` starts (or
joins) Ray, runs the search and prints its summary; Ctrl-C and SIGTERM stop it gracefully."""
from __future__ import annotations

import importlib
import os
from pathlib import Path

from tuner import config as config_mod
from tuner import ray_compat, runstore
from tuner.errors import ConfigError
from tuner.plan import PROG, Plan
from tuner.summary import resume_command, summary

OPTUNA_JOURNAL = "optuna.journal"
# TEST HOOK, unset in normal use: TUNER_TRAINABLE=module:function runs that function as every trial
# instead of tuner.trainable.tune_trainable (tests/faulty_trainable.py injects faults this way).
# An environment variable because the tests run the real CLI in a subprocess.
TRAINABLE_ENV = "TUNER_TRAINABLE"


def execute(plan: Plan, images, argv: list[str], prog: str = PROG):
    """Start (or join) Ray and run the search. Returns (exit code, ResultGrid or None when stopped)."""
    import signal

    ray_compat.quiet_tune_output()
    stop, previous = {}, None
    try:
        cluster_cpus = start_ray(plan)
        previous = ray_compat.stop_gracefully_on_signals(stop)  # after ray.init, which installs a SIGTERM handler that aborts
        results = make_tuner(plan, images, cluster_cpus).fit()
    except KeyboardInterrupt:
        # a second signal, or one before the search started: no final snapshot, the last one is used
        saved = runstore.is_remote(plan.run_dir) or ray_compat.has_experiment_state(plan.run_dir)
        print("\nInterrupted. " + (f"Resume with: {resume_command(argv, plan, prog)}" if saved else
                                   "The search had not started: nothing to resume."), flush=True)
        return 128 + stop.get("signal", signal.SIGINT), None
    finally:
        ray_compat.restore_signals(previous)
    if stop:
        # Ray marks the trials it stopped TERMINATED in `results`: a summary would count them as finished
        print(f"\nInterrupted ({signal.Signals(stop['signal']).name}): the trials that finished are kept, the others "
              f"continue from their last checkpoint.\nResume with: {resume_command(argv, plan, prog)}", flush=True)
        return 128 + stop["signal"], results
    print(summary(results, plan, prog=prog))
    return 0, results


_started_here: list[bool] = []  # whether this process started a local Ray (start_ray)


def start_ray(plan: Plan) -> float:
    """Join the cluster at --address (checked: check_cluster) or start a local Ray; the CPUs it has."""
    import ray

    if plan.address:
        ray.init(address=plan.address, log_to_driver=True)
        check_cluster(plan, ray.nodes())
    elif not ray.is_initialized():
        _start_local_ray(plan)
    return ray.cluster_resources().get("CPU", 1)


def _start_local_ray(plan: Plan) -> None:
    import ray

    _started_here.append(True)
    options = ray_compat.local_ray_options(preload=trial_modules())
    with ray_compat.head_without_idle_daemons(workers=concurrency(plan, ray_compat.local_cpus())):
        ray.init(**options)


def stop_local_ray() -> None:
    """Stop the local Ray this process started, at the command line's end. Ray's own exit hook
    would do it too, but first sleeps 0.5 s for log messages the search does not print, and then
    waits for its processes while the interpreter tears torch down (docs/performance.md)."""
    if _started_here:
        try:
            ray_compat.shutdown_local_ray()
        finally:
            _started_here.clear()


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


# --- the Tuner ----------------------------------------------------------------------------------------

def _trial_hook() -> tuple[str, str] | None:
    """(module, function) of the test hook's trial function (TRAINABLE_ENV), None when unset."""
    spec = os.environ.get(TRAINABLE_ENV)
    if not spec:
        return None
    module, _, name = spec.partition(":")
    if not module or not name:
        raise ConfigError(f"{TRAINABLE_ENV}={spec!r}: expected MODULE:FUNCTION (a test hook; unset it)")
    return module, name


def trial_modules() -> list[str]:
    """What Ray's workers import as they start: `tuner.preload` and the module of the test hook's trial function."""
    hook = _trial_hook()
    return ["tuner.preload"] + ([hook[0]] if hook else [])


def trial_function():
    """The function every trial runs: tune_trainable, or the test hook's (TRAINABLE_ENV)."""
    hook = _trial_hook()
    if hook is None:
        from tuner.trainable import tune_trainable

        return tune_trainable
    return getattr(importlib.import_module(hook[0]), hook[1])


def make_tuner(plan: Plan, images, cluster_cpus: float):
    from ray import tune

    from tuner import remedies, tasks

    resources = {"cpu": plan.cpus_per_trial, "gpu": plan.gpus_per_trial}
    ray_compat.trial_actors_inherit_env(local=bool(_started_here))
    # remedies and tasks registered outside the package (an experiment file, a notebook) travel with the trainable
    plugins = {"remedies": remedies.extra(), "tasks": tasks.extra()}
    trainable = tune.with_resources(tune.with_parameters(trial_function(), data=images, plugins=plugins), resources)
    if plan.resume:
        # the space again: Ray stores its functions (a study's arms, tune.sample_from) as placeholders,
        # and trials not yet created when the run stopped would get a placeholder as their config
        return tune.Tuner.restore(plan.run_dir, trainable=trainable, param_space=param_space(plan),
                                  resume_unfinished=True, resume_errored=True)
    return tune.Tuner(trainable, param_space=param_space(plan), tune_config=tune_config(plan, cluster_cpus),
                      run_config=run_config(plan))


def concurrency(plan: Plan, cluster_cpus: float) -> int:
    concurrent = plan.max_concurrent or max(1, int(cluster_cpus // plan.cpus_per_trial))
    if plan.address and not plan.max_concurrent:
        # an autoscaling cluster starts small: pending trials are what make it add GPU nodes
        concurrent = max(concurrent, min(plan.num_samples, 32))
    return concurrent


def tune_config(plan: Plan, cluster_cpus: float):
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    concurrent = concurrency(plan, cluster_cpus)
    search_alg = optuna_searcher(plan, concurrent) if plan.searcher == "optuna" else None
    scheduler = FIFOScheduler()
    if plan.asha and plan.max_steps:  # a budget in steps: ASHA's rungs count optimizer steps, the same for every arm
        scheduler = ASHAScheduler(time_attr="steps", max_t=plan.max_steps, reduction_factor=plan.reduction_factor,
                                  grace_period=max(1, plan.max_steps // 8))
    elif plan.asha:
        scheduler = ASHAScheduler(max_t=plan.max_epochs, grace_period=plan.grace_period, reduction_factor=plan.reduction_factor)
    return tune.TuneConfig(
        metric=None if plan.objectives else plan.metric, mode=None if plan.objectives else plan.mode,
        search_alg=search_alg, scheduler=scheduler,
        # one concurrency setting: Tune wraps a searcher in its ConcurrencyLimiter itself (a searcher
        # such as Optuna, unlimited, would propose one trial at a time); a grid runs what fits
        num_samples=plan.num_samples, max_concurrent_trials=concurrent if search_alg else plan.max_concurrent,
        reuse_actors=True,  # the trainable rebuilds all state from config (docs/performance.md: why)
        trial_name_creator=_trial_name,
        trial_dirname_creator=_trial_name,
    )


def run_config(plan: Plan):
    from ray import tune

    return tune.RunConfig(
        name=plan.name,
        storage_path=plan.storage_path,
        checkpoint_config=tune.CheckpointConfig(
            num_to_keep=2, checkpoint_score_attribute=plan.metric, checkpoint_score_order=plan.mode
        ),
        failure_config=tune.FailureConfig(max_failures=2),  # a crashed trial resumes from its checkpoint
        callbacks=ray_compat.result_loggers() + tracking_callbacks(plan),
        progress_reporter=progress_reporter(plan),
        verbose=1,
    )


def _trial_name(trial) -> str:
    return f"trial_{trial.trial_id}"


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


def progress_reporter(plan: Plan):
    from ray.tune import CLIReporter

    short = {"epoch": "epoch", plan.metric: plan.metric, "val_minority_acc": "val_min_acc", "acc": "test_acc"}
    return CLIReporter(metric_columns=short, parameter_columns=plan.shown_params(), max_report_frequency=15,
                       sort_by_metric=True, max_progress_rows=12)
