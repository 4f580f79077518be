"""`python -m benchmarks.phased_search ...`: `python -m tuner.search ...` with a clock on its phases,
for the search-overhead figure: where the time outside the trials' epochs goes. Writes
{phase: seconds since start} to $BENCH_PHASES_FILE (JSON) when the search returns; the exit
(Ray's shutdown) is the caller's wall time minus "search returned"."""
from __future__ import annotations

import json
import os
import sys
import time

T0 = time.perf_counter()
PHASES: dict[str, float] = {}


def mark(name: str) -> None:
    PHASES[name] = round(time.perf_counter() - T0, 3)


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
    search.one_line_warnings()
    rc = search.main(sys.argv[1:])
    mark("search returned")
    if os.environ.get("BENCH_PHASES_FILE"):
        with open(os.environ["BENCH_PHASES_FILE"], "w") as f:
            json.dump(PHASES, f)
    return rc


if __name__ == "__main__":
    sys.exit(main())
