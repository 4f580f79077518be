"""`python -m benchmarks.loop CONFIGS.json`: the plain-loop counterpart of a search, for the
search-overhead figure. Loads the configs' dataset once and calls `tuner.trainable.train(config,
data=images)` for each config in turn, in this one process (no Ray, no checkpoints), with the
torch thread count a Ray trial of 1 CPU gets (OMP_NUM_THREADS, default 1). Prints one JSON line.
"""
from __future__ import annotations

import json
import os
import sys
import time


def main(argv=None) -> int:
    t0 = time.perf_counter()
    argv = sys.argv[1:] if argv is None else argv
    configs = json.loads(open(argv[0]).read())
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    from tuner.data import load_dataset
    from tuner.trainable import train

    first = configs[0]
    images = load_dataset(first.get("dataset", "mnist"), first.get("data_dir"), download=False)
    t_train = time.perf_counter()
    epochs, epochs_s, first_trial_s = 0, 0.0, None
    for cfg in configs:
        history = train(cfg, data=images)
        first_trial_s = first_trial_s or time.perf_counter() - t_train  # it also imports torch._dynamo
        epochs += len(history)
        epochs_s += sum(r["epoch_time_s"] for r in history)
    end = time.perf_counter()
    print(json.dumps({"trials": len(configs), "epochs": epochs, "train_s": end - t_train, "in_process_s": end - t0,
                      "epochs_s": epochs_s, "first_trial_s": first_trial_s}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
