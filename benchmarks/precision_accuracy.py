"""`python -m benchmarks.precision_accuracy [--epochs 3] [--seeds 0,1,2] [--data-dir DIR]`: test accuracy
of the `lstm` trained in fp32 and in bf16 on imbalanced full MNIST (digits 0-4 kept at 10%), same
seeds, on this machine (CPU unless a GPU is visible): is bf16 within the seed-to-seed noise of fp32?
Prints one line per run, a paired comparison (scipy.stats), and writes JSON with --out."""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from scipy import stats


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.precision_accuracy")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--model", default="lstm")
    p.add_argument("--data-dir")
    p.add_argument("--out")
    args = p.parse_args(argv)
    from benchmarks.run import data_dir_or_exit, machine
    from tuner.data import load_dataset
    from tuner.trainable import train

    torch.set_num_threads(1)  # what a Ray trial with 1 CPU gets
    images = load_dataset("mnist", data_dir_or_exit(args.data_dir), download=False)
    seeds = [int(s) for s in args.seeds.split(",")]
    runs = {}
    for precision in ("fp32", "bf16"):
        for seed in seeds:
            t0 = time.perf_counter()
            hist = train({"model": args.model, "epochs": args.epochs, "seed": seed, "precision": precision}, data=images)
            last = hist[-1]
            runs[(precision, seed)] = {"acc": last["acc"], "minority_acc": last["minority_acc"],
                                       "seconds": time.perf_counter() - t0,
                                       "epoch_time_s": [h["epoch_time_s"] for h in hist]}
            print(f"{precision} seed {seed}: test acc {last['acc']:.4f}, minority {last['minority_acc']:.4f}, "
                  f"{runs[(precision, seed)]['seconds']:.0f} s", flush=True)
    diff = [runs[("bf16", s)]["acc"] - runs[("fp32", s)]["acc"] for s in seeds]
    fp32 = [runs[("fp32", s)]["acc"] for s in seeds]
    test = stats.ttest_rel([runs[("bf16", s)]["acc"] for s in seeds], fp32) if len(seeds) > 1 else None
    summary = {"machine": machine(), "epochs": args.epochs, "seeds": seeds,
               "runs": {f"{p} {s}": v for (p, s), v in runs.items()},
               "bf16_minus_fp32": diff, "fp32_seed_sd": statistics.stdev(fp32) if len(seeds) > 1 else None,
               "paired_t_p": None if test is None else float(test.pvalue)}
    print(f"bf16 - fp32 test accuracy per seed: {[round(d, 4) for d in diff]}; fp32 seed-to-seed sd "
          f"{summary['fp32_seed_sd']}; paired t-test p = {summary['paired_t_p']}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(summary, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
