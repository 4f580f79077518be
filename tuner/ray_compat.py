"""Everything that leans on Ray Tune's internals, in one place. Checked against Ray 2.60.0
(pyproject.toml bounds Ray to 2.60.x; constraints-cluster.txt pins it): on a Ray upgrade, read the
Ray code named below again and rerun tests/test_multinode.py and tests/test_faults.py."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path


def quiet_tune_output() -> None:
    """Environment settings read by Ray Tune when fit() starts (not a documented API)."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the classic reporter honours our trimmed columns
    # per-epoch checkpoints of short trials trigger a noisy (harmless) snapshot warning
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")


# what Ray Tune puts in every trial actor's runtime_env (ray/tune/execution/class_cache.py
# DEFAULT_ENV_VARS, Ray 2.60.0); a local Ray started by the search inherits it from the driver instead
TUNE_TRIAL_ENV = {"PL_DISABLE_FORK": "1"}
# and, for the local Ray's processes only: glibc malloc with one arena. Tune runs every trial in a
# new thread of the (reused) worker; with several arenas, each trial's first epoch faulted in
# ~50 MB of fresh pages again (13,000 minor faults, ~0.1 s on the sample's 0.2-s epochs), with one
# it reuses the pages the previous trial freed (docs/performance.md). A value the user set is kept.
LOCAL_RAY_ENV = {**TUNE_TRIAL_ENV, "MALLOC_ARENA_MAX": "1"}
# The raylet connects to its object store while the store's thread may still be creating its
# socket, and then retries after raylet_client_connect_timeout_milliseconds (1000): ray.init took
# 1 s longer in about one start in three. Retry every 100 ms instead, with the same 10 s of patience.
CONNECT_RETRY = {"raylet_client_connect_timeout_milliseconds": 100, "raylet_client_num_connect_attempts": 100}
# The raylet starts its workers (one per CPU) when it starts, not when the driver has connected
# (Ray's `enable_worker_prestart`, off by default; ray-project/ray#33623): the first trial's worker
# begins its imports 0.6 s sooner on the 2-core VM (docs/performance.md).
WORKER_PRESTART = {"enable_worker_prestart": True}
_tune_env_defaults: dict = {}


def local_ray_options(preload: list[str]) -> dict:
    """`ray.init` options of the local Ray a search starts on this machine. Its worker processes
    import the modules `preload` (the trial function's: torch and the package) as they start,
    through the raylet setting `preload_python_modules` (not a documented API: the raylet passes it
    to ray/_private/workers/default_worker.py as `--worker-preload-modules`, Ray 2.60.0). Ray starts
    its workers while `ray.init` runs (`head_without_idle_daemons` says how many), so the first
    trial (`trial_actors_inherit_env`) takes one that has imported torch, or is importing it,
    instead of a new process. Sets the trial actors' environment in this process first
    (LOCAL_RAY_ENV): Ray's processes inherit it. The raylet settings (`_system_config`) are
    `preload_python_modules`, CONNECT_RETRY and WORKER_PRESTART."""
    for key, value in LOCAL_RAY_ENV.items():
        os.environ.setdefault(key, value)
    return {"include_dashboard": False, "log_to_driver": False,
            "_system_config": {"preload_python_modules": preload, **CONNECT_RETRY, **WORKER_PRESTART}}


PRESTART_FLAG = "--num_prestart_python_workers="  # the raylet's (ray/_private/services.py `start_raylet`)


@contextlib.contextmanager
def head_without_idle_daemons(workers: int | None = None):
    """While it is open, a Ray head started in this process (`ray.init` without an address) starts
    `workers` worker processes ahead (Ray: one per CPU) and none of the Python daemons a search
    never uses.
    The workers: each one Ray starts ahead imports torch and the package (`local_ray_options`, 3 s
    of CPU on the 2-core VM), so `workers` is the number of trials that run at once: more would
    only take CPU from the first trial's worker, or be given the first trial before the one that
    has imported (docs/performance.md, sixth round). The raylet's command line (PRESTART_FLAG, set
    by `start_raylet` from the CPU count) is rewritten as Ray starts it; Ray starts more workers
    later if a trial needs one.
    The daemons: the API server (Ray starts it even with include_dashboard=False, for its state and
    job APIs), the autoscaler monitor (nothing to autoscale) and the log monitor (it streams the
    workers' output to a driver that asked for none: log_to_driver=False). Each imports Ray's
    modules while the first trial's worker imports torch: on the 2-core VM `ray.init` took 2.3-2.5 s
    without them against 3.5-4.5 s, and a preloaded worker ran its first task 1.3-2.3 s sooner
    (docs/performance.md).
    ray.init has no option for them (RayParams has `no_monitor` and `include_log_monitor`, which
    `ray start` sets and `ray.init` does not), so the head's Node sets them here, and its API server
    is left unstarted, the state Ray already handles when that server fails to start (its URL None;
    ray/_private/node.py `start_head_processes`, `start_api_server`, Ray 2.60.0). Ray's state and job
    APIs (`ray list`, job submission) are then unavailable on that Ray; the search uses neither."""
    from ray._private import node as node_mod
    from ray._private import services

    cls = node_mod.Node
    init, start_api_server, start_process = cls.__init__, cls.start_api_server, services.start_ray_process

    def lean_init(self, ray_params, *args, **kwargs):
        if kwargs.get("head", args[0] if args else False):
            ray_params.no_monitor, ray_params.include_log_monitor = True, False
        init(self, ray_params, *args, **kwargs)

    def no_api_server(self, *, include_dashboard, raise_on_failure):
        self._webui_url = None

    def start_with_workers(command, process_type, *args, **kwargs):
        if workers is not None and process_type == services.ray_constants.PROCESS_TYPE_RAYLET:
            command = [f"{PRESTART_FLAG}{int(workers)}" if c.startswith(PRESTART_FLAG) else c for c in command]
        return start_process(command, process_type, *args, **kwargs)

    cls.__init__, cls.start_api_server, services.start_ray_process = lean_init, no_api_server, start_with_workers
    try:
        yield
    finally:
        cls.__init__, cls.start_api_server, services.start_ray_process = init, start_api_server, start_process


def local_cpus() -> int:
    """The CPUs a local Ray started here will have (its own count: cgroup limits included;
    ray/_private/utils.py `get_num_cpus`, Ray 2.60.0)."""
    from ray._private.utils import get_num_cpus

    return get_num_cpus()


def trial_actors_inherit_env(local: bool) -> None:
    """With `local` (a Ray this process started: its workers inherit this process's environment),
    Ray Tune's trial actors get no runtime_env, so they run in the workers Ray started ahead (and
    `local_ray_options` preloaded). Tune gives every trial actor a runtime_env of environment
    variables (its DEFAULT_ENV_VARS, and AWS credentials and Ray Train settings from the
    driver's environment, to reach the workers of other machines), and Ray starts a new worker
    process for any actor with a runtime_env: a process start and a torch import before the first
    trial, 1-2 s. On a cluster (`local` False) Tune's own behaviour is kept. Overrides the module
    globals DEFAULT_ENV_VARS and ENV_VARS_TO_PROPAGATE of ray/tune/execution/class_cache.py (Ray
    2.60.0), read by `_ActorClassCache.get` each time a trainable is registered."""
    from ray.tune.execution import class_cache

    if not _tune_env_defaults:
        _tune_env_defaults.update(DEFAULT_ENV_VARS=class_cache.DEFAULT_ENV_VARS,
                                  ENV_VARS_TO_PROPAGATE=class_cache.ENV_VARS_TO_PROPAGATE)
    inherited = local and all(os.environ.get(k) == v for k, v in _tune_env_defaults["DEFAULT_ENV_VARS"].items())
    class_cache.DEFAULT_ENV_VARS = {} if inherited else _tune_env_defaults["DEFAULT_ENV_VARS"]
    class_cache.ENV_VARS_TO_PROPAGATE = set() if inherited else _tune_env_defaults["ENV_VARS_TO_PROPAGATE"]


def shutdown_local_ray() -> None:
    """`ray.shutdown()` of the local Ray this process started. It has no autoscaler monitor
    (`head_without_idle_daemons`), which ignored SIGTERM and made `ray.shutdown()` wait 1 s for it
    (ray/_private/node.py `_kill_process_impl`, Ray 2.60.0)."""
    import ray

    ray.shutdown()


# the file `Tuner.can_restore` looks for (ray/tune/impl/tuner_internal.py `_TUNER_PKL`, Ray 2.60.0)
TUNER_PKL = "tuner.pkl"


def can_restore(run_dir: str) -> bool:
    """Ray Tune's `Tuner.can_restore`: the run folder holds the tuner Tune restores. A local
    folder is looked at directly: `import ray.tune` takes 0.9 s, and the checks run before Ray
    starts, so that import would delay the whole search (docs/performance.md); a remote one
    (s3://...) goes through Ray's file systems."""
    from tuner import runstore

    if not runstore.is_remote(run_dir):
        return (Path(run_dir) / TUNER_PKL).is_file()
    from ray.tune import Tuner

    return Tuner.can_restore(run_dir)


def has_experiment_state(run_dir: str) -> bool:
    """A local run folder holds a snapshot of Tune's experiment state: Tune's own file name
    (`experiment_state-<timestamp>.json`, ray/tune/execution/tune_controller.py, Ray 2.60.0)."""
    return any(Path(run_dir).glob("experiment_state*.json"))


def result_loggers() -> list:
    """Ray Tune's result.json / progress.csv loggers, except that a retried trial keeps its log.

    Ray Tune (2.60) restarts a failed trial by copying its log files back from the storage path
    over the driver's copy. Storage lags the driver by up to one experiment snapshot, so after a
    lost worker node the epochs reported in that gap vanished from result.json (the trial itself
    resumed correctly from its checkpoint; tests/test_multinode.py). Copy only when the driver has
    no copy: a --resume on a new driver. Overrides the private
    `ray.tune.logger.logger.LoggerCallback._restore_from_remote` (Ray 2.60.0).
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

    return [JsonLog(), CsvLog(), *tensorboard_log()]  # Tune adds its defaults only for the kinds missing here


def tensorboard_log() -> list:
    """Ray Tune's TensorBoard logger, writing each result as one event, or [] without tensorboardX.

    Tune's `TBXLoggerCallback` writes every metric as an event of its own and a histogram for each
    list (the confusion matrices, the class counts): 28 ms per result on the 2-core VM, in the
    driver, while the trial waits for its report to be taken (Tune's function trainables report
    synchronously): about half of that wait. This subclass writes the same scalars, under the same
    tags and step, as one `Summary` holding them all (the form TensorBoard reads from any writer of
    merged summaries): 1.7 ms. The lists are left out: a histogram of a flattened confusion matrix
    says nothing, and they are in result.json and the Parquet tables. Hyperparameters at the trial's
    end are Tune's own (`log_trial_end`). Overrides `log_trial_result` of
    ray/tune/logger/tensorboardx.py (Ray 2.60.0), whose `_trial_writer` / `_trial_result` it fills."""
    try:
        from tensorboardX.proto.summary_pb2 import Summary
    except ImportError:
        return []
    import math

    from ray.air.constants import TRAINING_ITERATION
    from ray.tune.logger import TBXLoggerCallback
    from ray.tune.logger.tensorboardx import VALID_SUMMARY_TYPES
    from ray.tune.result import TIME_TOTAL_S, TIMESTEPS_TOTAL
    from ray.tune.utils import flatten_dict

    class TensorBoardLog(TBXLoggerCallback):
        def log_trial_result(self, iteration, trial, result):
            if trial not in self._trial_writer:
                self.log_trial_start(trial)
            step = result.get(TIMESTEPS_TOTAL) or result[TRAINING_ITERATION]
            skip = {"config", "pid", "timestamp", TIME_TOTAL_S, TRAINING_ITERATION}  # as Tune's
            flat = flatten_dict({k: v for k, v in result.items() if k not in skip}, delimiter="/")
            scalars = {f"ray/tune/{k}": v for k, v in flat.items()
                       if isinstance(v, tuple(VALID_SUMMARY_TYPES)) and not math.isnan(v)}
            summary = Summary(value=[Summary.Value(tag=k, simple_value=float(v)) for k, v in scalars.items()])
            self._trial_writer[trial].file_writer.add_summary(summary, global_step=step)
            self._trial_result[trial] = scalars
            self._trial_writer[trial].flush()

    return [TensorBoardLog()]


def stop_gracefully_on_signals(stop: dict) -> dict | None:
    """Ctrl-C and SIGTERM (kill, a batch scheduler, a pod shutdown) stop the search the way Ray Tune
    stops on Ctrl-C: the trials stop, the experiment state is saved once more, fit() returns. We take
    SIGINT over from Tune (TUNE_DISABLE_SIGINT_HANDLER) to know that a stop was asked for, and pass
    the first signal on to Tune's handler of SIGUSR1, the same graceful stop; a second one stops at
    once. Returns the handlers to restore (None off the main thread, where there are no signals).
    Relies on fit() installing that SIGUSR1 handler while it runs (ray/tune/tune.py, Ray 2.60.0)."""
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


def restore_signals(previous: dict | None) -> None:
    import signal

    for sig, handler in (previous or {}).items():
        if sig == "env":
            os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
            if handler is not None:
                os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = handler
        elif handler is not None:
            signal.signal(sig, handler)
