"""TEST ONLY: the production trainable, after it records what the trial's worker process held when
the trial began (for tests/test_performance.py). The search runs it through its test hook,
`TUNER_TRAINABLE=tests.worker_probe:probe_trainable`; each trial appends one JSON line to the
file $TUNER_PROBE_FILE (environment variables: the test runs the real CLI in a subprocess, and a
local Ray's workers inherit the driver's environment)."""
from __future__ import annotations

import json
import os
import sys

PROBE_FILE = "TUNER_PROBE_FILE"
HOOK = {"TUNER_TRAINABLE": f"{__name__}:probe_trainable"}


def probe_trainable(config: dict, data=None, plugins=None) -> None:
    import ray

    seen = {"pid": os.getpid(), "preloaded": "tuner.preload" in sys.modules,
            "dynamo": "torch._dynamo" in sys.modules,
            "runtime_env": ray.get_runtime_context().get_runtime_env_string(),
            "PL_DISABLE_FORK": os.environ.get("PL_DISABLE_FORK"),
            # the environment the process started with, which glibc's malloc read
            "MALLOC_ARENA_MAX at start": _start_env().get("MALLOC_ARENA_MAX"),
            # the settings of this Ray (its GCS's copy, which its raylet and workers read)
            "system_config": ray._private.state.state.get_system_config(),
            # the command lines of this Ray's processes (those sharing this worker's RAY_TMPDIR, which the test sets)
            "ray processes": _processes_sharing("RAY_TMPDIR")}
    with open(os.environ[PROBE_FILE], "a") as f:
        f.write(json.dumps(seen) + "\n")
    from tuner.trainable import tune_trainable

    tune_trainable(config, data, plugins)


def _start_env() -> dict:
    with open("/proc/self/environ") as f:
        return dict(kv.split("=", 1) for kv in f.read().split("\0") if "=" in kv)


def _processes_sharing(key: str) -> list[str]:
    """The command lines of the processes whose environment has this process's value of `key`."""
    needle = f"{key}={os.environ.get(key)}".encode()
    found = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and needle in open(f"/proc/{entry}/environ", "rb").read().split(b"\0"):
                found.append(open(f"/proc/{entry}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:  # gone, or not ours
            pass
    return found
