"""`python -m benchmarks.phased_search ...`: `python -m tuner.search ...` with a clock on its phases,
for the search-overhead figure: where the time outside the trials' epochs goes. Writes
{phase: seconds since start} to $BENCH_PHASES_FILE (JSON) when the search returns; the exit
(Ray's shutdown) is the caller's wall time minus "search returned". With $BENCH_TRIAL_TIMES set,
each trial runs through `traced_trainable` (the search's trainable hook, `tuner.run.TRAINABLE_ENV`),
which appends [entry, exit] of the trial function, seconds since the same start, to that file:
what happens between trials and what happens once."""
from __future__ import annotations

import json
import os
import sys
import time

# wall clock (time.time), so that the trials' times, taken in Ray's worker processes, compare
T0 = float(os.environ.setdefault("BENCH_T0", repr(time.time())))
PHASES: dict[str, float] = {}


def mark(name: str) -> None:
    PHASES[name] = round(time.time() - T0, 3)


def traced_trainable(config, data=None, plugins=None):
    """`tune_trainable`, with the entry and exit of the trial function recorded."""
    from tuner.trainable import tune_trainable

    entry = time.time() - T0
    try:
        tune_trainable(config, data=data, plugins=plugins)
    finally:
        with open(os.environ["BENCH_TRIAL_TIMES"], "a") as f:
            f.write(json.dumps([round(entry, 4), round(time.time() - T0, 4)]) + "\n")


def main() -> int:
    # the command line's own imports, in its order: Ray Tune is imported after ray.init (make_tuner)
    from tuner import run, search

    mark("imports: tuner")
    import ray

    init, make_tuner = ray.init, run.make_tuner

    def timed_init(*a, **k):
        mark("ray.init start")
        out = init(*a, **k)
        mark("ray.init end")
        return out

    def timed_make_tuner(*a, **k):
        tuner = make_tuner(*a, **k)
        fit = tuner.fit

        def timed_fit():
            mark("fit start")
            out = fit()
            mark("fit end")
            return out

        tuner.fit = timed_fit
        return tuner

    ray.init, run.make_tuner = timed_init, timed_make_tuner
    if os.environ.get("BENCH_TRIAL_TIMES"):
        from tuner.run import TRAINABLE_ENV

        os.environ[TRAINABLE_ENV] = "benchmarks.phased_search:traced_trainable"
    search.one_line_warnings()
    rc = search.main(sys.argv[1:])
    mark("search returned")
    if os.environ.get("BENCH_PHASES_FILE"):
        with open(os.environ["BENCH_PHASES_FILE"], "w") as f:
            json.dump(PHASES, f)
    from tuner.run import stop_local_ray

    stop_local_ray()  # as the command line does (search.run_cli): part of the exit phase
    return rc


if __name__ == "__main__":
    from tuner.search import exit_without_teardown

    exit_without_teardown(main)  # as the command line exits: part of the exit phase
