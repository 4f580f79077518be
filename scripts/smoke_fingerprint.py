"""Smoke fingerprint: did a refactoring change any number? For every registered experiment, the
configs of its smoke plan (each arm with the first searched values, then each searched value; at
most 4 per experiment) are trained with `tuner.trainable.train`, one thread, and every epoch's
metrics are written in full precision to a JSON file. Run it on two checkouts and compare:

    python scripts/smoke_fingerprint.py before.json              # on the old commit
    python scripts/smoke_fingerprint.py after.json               # on the new one
    python scripts/smoke_fingerprint.py --compare before.json after.json
    python scripts/smoke_fingerprint.py out.json lstm_best       # only some experiments

Experiments whose data is missing (cifar_vgg needs CIFAR-10: set TUNER_DATA_DIR) record the error,
which compares equal only to the same error.
"""
from __future__ import annotations

import json
import sys
import time

KEYS = ("train_loss", "train_acc", "val_loss", "val_balanced_acc", "loss", "acc", "minority_acc", "balanced_acc",
        "digit_acc", "steps", "samples_seen", "remedies", "num_params")


def fingerprint(out_path: str, only: list[str]) -> None:
    import torch

    torch.set_num_threads(1)
    import search_spaces  # noqa: F401  (registers the experiments)
    from search_spaces.registry import EXPERIMENTS
    from tuner.search import build_plan, parse_args, plan_configs
    from tuner.trainable import train

    out = {}
    for name, exp in EXPERIMENTS.items():
        if only and name not in only:
            continue
        argv = [name, "--budget", "smoke", "--storage-path", "/tmp/fingerprint-runs", "--name", f"fp-{name}-{time.time_ns()}"]
        for k in exp.requires:
            argv += ["--set", f"{k}=[1,1,1,1,1,2,2,2,2,2]"]
        seen = []
        for cfg in plan_configs(build_plan(parse_args(argv))):
            key = json.dumps({k: v for k, v in cfg.items() if k != "task"}, sort_keys=True, default=str)
            if key in seen or len(seen) >= 4:
                continue
            seen.append(key)
            try:
                result = [{k: h.get(k) for k in KEYS} for h in train(dict(cfg))]
            except Exception as e:  # noqa: BLE001  (recorded: the same error must come out on both sides)
                result = f"{type(e).__name__}: {e}"
            out[f"{name} {key}"] = result
            print(name, len(seen), file=sys.stderr, flush=True)
    with open(out_path, "w") as f:
        json.dump(out, f, indent=1, sort_keys=True)


def _load(path: str) -> dict:
    """name + config (without `task`, which newer code adds to a study task's configs) -> metrics."""
    out = {}
    for key, value in json.load(open(path)).items():
        name, cfg = key.split(" ", 1)
        cfg = {k: v for k, v in json.loads(cfg).items() if k != "task"}
        out[f"{name} {json.dumps(cfg, sort_keys=True)}"] = value
    return out


def compare(a_path: str, b_path: str) -> int:
    a, b = _load(a_path), _load(b_path)
    same, differ, missing = 0, [], 0
    for key, va in a.items():
        if key not in b:
            missing += 1
            continue
        vb = b[key]
        if isinstance(va, list) and isinstance(vb, list):  # a metric only the newer code reports is not a difference
            vb = [{k: v for k, v in e.items() if k in old and (old[k] is not None or v is None)} | {k: None for k in old if old[k] is None}
                  for e, old in zip(vb, va)] if len(vb) == len(va) else vb
        if va == vb:
            same += 1
        else:
            differ.append(key)
    for key in differ:
        print("DIFFERENT", key[:160])
    print(f"{same} identical, {len(differ)} different, of {len(a)} configs" + (f" ({missing} not run in the second)" if missing else ""))
    return 1 if differ else 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--compare"]:
        sys.exit(compare(sys.argv[2], sys.argv[3]))
    fingerprint(sys.argv[1], sys.argv[2:])
