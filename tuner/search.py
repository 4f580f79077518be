"""`python -m tuner.search EXPERIMENT [options]`: one named experiment -> a Ray Tune search.

The command line's entry point only. The search is built in steps, each its own module:

    tuner.plan        the options (`parser`) and the `Plan` they become
    tuner.planning    options -> a checked Plan and the loaded data, before Ray (`prepare`)
    tuner.resume      --resume: recorded options, and the checks that a resume continues the same run
    tuner.run         Plan -> Ray Tune `Tuner`, run (`execute`)
    tuner.summary     what is printed before and after
    tuner.ray_compat  what leans on Ray's internals

Every option is checked before Ray starts. The names below are re-exported for the callers and
tests that import them from here.
"""
from __future__ import annotations

import sys
from typing import NoReturn

from tuner.errors import ConfigError, one_line_warnings
from tuner.plan import CALLBACKS, DEFAULT_STORAGE, PROG, SUMMARY_METRICS, Plan, metric_names, parse_args, parser
from tuner.planning import (
    ADDRESS, build_plan, check_callback_package, list_experiments, load_images, parse_sets, plan_configs, prepare,
    resolve_experiment, settle_on_data, size_to_data,
)
from tuner.ray_compat import restore_signals as _restore_signals
from tuner.ray_compat import result_loggers as _result_loggers
from tuner.ray_compat import stop_gracefully_on_signals as _stop_gracefully_on_signals
from tuner.resume import apply_recorded_options, check_resume_dataset, record_options, stored_trial_configs
from tuner.run import OPTUNA_JOURNAL, check_cluster, execute, make_tuner, optuna_searcher, optuna_storage, param_space
from tuner.summary import best_epoch_rows, describe, pareto_summary, resume_command, summary

__all__ = [
    "ADDRESS", "CALLBACKS", "DEFAULT_STORAGE", "OPTUNA_JOURNAL", "PROG", "SUMMARY_METRICS", "ConfigError", "Plan",
    "_restore_signals", "_result_loggers", "_stop_gracefully_on_signals", "apply_recorded_options",
    "best_epoch_rows", "build_plan", "check_callback_package", "check_cluster", "check_resume_dataset", "describe",
    "execute", "list_experiments", "load_images", "main", "make_tuner", "metric_names", "one_line_warnings",
    "optuna_searcher", "optuna_storage", "param_space", "pareto_summary", "parse_args", "parse_sets", "parser",
    "plan_configs", "prepare", "record_options", "resolve_experiment", "resume_command", "settle_on_data",
    "size_to_data", "stored_trial_configs", "summary",
]


def _fail(msg: str, code: int = 2):
    print(f"error: {msg}", file=sys.stderr)
    raise SystemExit(code)


def main(argv=None, prog: str = PROG) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv, prog)
    try:
        if args.list:
            print(list_experiments(args.experiment_file))
            return 0
        plan, images = prepare(args, argv, prog)
        code = execute(plan, images, argv, prog)[0]
        if code == 0 and args.rerun_top and not args.from_run:  # select, then re-run the best over the seeds
            args.from_run, args.name, args.resume = plan.run_dir, None, None
            plan, images = prepare(args, argv + ["--from-run", plan.run_dir], prog)
            code = execute(plan, images, argv, prog)[0]
        return code
    except ConfigError as e:
        _fail(str(e))


def run_cli(argv=None, prog: str = PROG) -> int:
    """The command line: `main`, then the local Ray it started is stopped before the interpreter exits."""
    from tuner.run import stop_local_ray

    try:
        return main(argv, prog)
    finally:
        stop_local_ray()


def exit_without_teardown(run, *args) -> NoReturn:
    """End this process with the exit code of `run(*args)` (the command line), without the
    interpreter's teardown: with torch and Ray Tune loaded it frees their modules' objects one by
    one, 0.6 s after the search has finished, against 0.04 s (docs/performance.md). What that
    teardown does that counts is done here: threads that are not daemons are joined, the atexit
    functions run (Ray's, logging's) and stdout and stderr are flushed. An exception other than
    SystemExit leaves through the normal exit, with its traceback."""
    import atexit
    import os
    import threading

    try:
        code = run(*args)
    except SystemExit as e:
        code = e.code
    if isinstance(code, str):  # sys.exit("message"), as Python handles it
        print(code, file=sys.stderr)
        code = 1
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()  # what the interpreter calls at exit (CPython's, in every 3.x)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code or 0)


if __name__ == "__main__":
    one_line_warnings()
    exit_without_teardown(run_cli)
