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
    import ray
    from ray import tune

    mark("imports: ray")
    from tuner import search
    from tuner import trainable  # noqa: F401  (the search imports it later; counted here)

    mark("imports: tuner")
    init, fit = ray.init, tune.Tuner.fit

    def timed_init(*a, **k):
        mark("ray.init start")
        out = init(*a, **k)
        mark("ray.init end")
        return out

    def timed_fit(self):
        mark("fit start")
        out = fit(self)
        mark("fit end")
        return out

    ray.init, tune.Tuner.fit = timed_init, timed_fit
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
    sys.exit(main())
