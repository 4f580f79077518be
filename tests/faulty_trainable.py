"""TEST ONLY: the production trainable with faults injected, for tests/test_faults.py.

The search runs it through its test hook: `TUNER_TRAINABLE=tests.faulty_trainable:faulty_trainable`
(tuner/run.py, TRAINABLE_ENV) makes every trial call `faulty_trainable` instead of
`tuner.trainable.tune_trainable`. `TUNER_FAULT_INJECT="oom:2,nan:1"` then picks the faults: the
trial with seed 2 fails with a CUDA out-of-memory error raised where training would run (inside the
real `tune_trainable`, which turns it into its clear message), and the trial with seed 1 trains
with a learning rate that really diverges (the real NaN guard stops it). Both are environment
variables because the tests run the real CLI in a subprocess and Ray workers inherit the driver's
environment.
"""
from __future__ import annotations

import os
from unittest import mock

import torch

from tuner import trainable

HOOK = {"TUNER_TRAINABLE": f"{__name__}:faulty_trainable"}
FAULT_ENV = "TUNER_FAULT_INJECT"


def injected_fault(config: dict) -> str | None:
    for item in filter(None, os.environ.get(FAULT_ENV, "").split(",")):
        kind, _, seed = item.partition(":")
        if kind not in ("oom", "nan") or not seed.strip().lstrip("-").isdigit():
            raise ValueError(f"{FAULT_ENV}={os.environ[FAULT_ENV]!r}: expected oom:SEED or nan:SEED, comma-separated")
        if int(seed) == config.get("seed", 0):
            return kind
    return None


def faulty_trainable(config: dict, data=None, plugins=None) -> None:
    fault = injected_fault(config)
    if fault == "nan":
        config = {**config, "optimizer": "sgd", "lr": 1e10}  # really diverges: train's non-finite guard stops it
    if fault == "oom":
        oom = torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate 2.00 GiB ({FAULT_ENV})")
        # one trial per actor process at a time: the patch is undone before the actor takes another trial
        with mock.patch.object(trainable, "train", side_effect=oom):
            return trainable.tune_trainable(config, data, plugins)
    return trainable.tune_trainable(config, data, plugins)
