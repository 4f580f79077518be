"""`python -m benchmarks.gpu_check [--out FILE.json] [--data-dir DIR] [--dry-run]` (or
`bash benchmarks/gpu_check.sh`): what a GPU changes, in one short run (under 8 minutes on one
H100-class GPU) that writes one JSON file.

  1. training throughput, our device-resident data path vs the DataLoader reference (target >= 10x)
  2. one `lstm` epoch on imbalanced full MNIST (target < 0.5 s for the training part)
  3. precision: fp32 vs bf16 vs fp16 training throughput, and bf16 vs fp32 accuracy after 3 epochs
     over 3 seeds (within noise?)
  4. share of peak: each model's training step in FLOP/s against dense matmul FLOP/s measured now
  5. 1, 2, 4, 8 trials packed on the GPU through the search (--gpus-per-trial 1/k) (target: 4 >= 3x 1)
  6. a 16-trial ASHA search of lstm_weighted, wall time

Every section is timed and written to the JSON as soon as it ends, so a section that fails or a
run stopped at its time limit keeps what came before. `--dry-run` runs the same code on the CPU
with the shipped sample and tiny sizes: what CI checks, since CI has no GPU.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

GPU = dict(device="cuda", dataset="mnist", batches=60, rounds=3, workers=(0, 4, 8), probe_batches=20, acc_epochs=3,
           acc_seeds=(0, 1, 2), packing=(1, 2, 4, 8), search_trials=16, search_gpus=0.25, peak_batches=30)
DRY = dict(device="cpu", dataset="mnist-sample", batches=2, rounds=1, workers=(0,), probe_batches=2, acc_epochs=1,
           acc_seeds=(0,), packing=(1,), search_trials=2, search_gpus=0.0, peak_batches=2)


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", help="the JSON file (default benchmarks/gpu-check-<date>.json)")
    p.add_argument("--data-dir", help="folder with MNIST/raw (default $TUNER_DATA_DIR, else ../shared/data)")
    p.add_argument("--dry-run", action="store_true", help="CPU, shipped sample, tiny sizes: checks the script runs")
    return p.parse_args(argv)


class Check:
    def __init__(self, out: Path, mode: dict, dry: bool):
        from benchmarks.run import Rows, machine

        self.out, self.mode, self.t0 = out, mode, time.perf_counter()
        self.rows = Rows()
        self.report = {"machine": machine(), "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                       "dry_run": dry, "settings": mode, "sections": {}, "rows": self.rows}

    def log(self, msg: str) -> None:
        print(f"[{time.perf_counter() - self.t0:6.0f}s] {msg}", flush=True)

    def section(self, name: str, fn, *args) -> None:
        self.log(name)
        t = time.perf_counter()
        try:
            result = fn(*args)
        except Exception as e:  # one failed section must not lose the others
            result = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-3000:]}
            self.log(f"  FAILED: {result['error']}")
        result["seconds"] = round(time.perf_counter() - t, 1)
        self.report["sections"][name] = result
        self.write()

    def write(self) -> None:
        self.report["elapsed_s"] = time.perf_counter() - self.t0
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.out.write_text(json.dumps(self.report, indent=1, default=str))


def throughput(chk: Check, images) -> dict:
    from benchmarks import throughput as tp

    m, out = chk.mode, {}
    for model in ("lstm", "cnn"):
        probe = tp.probe_num_workers(model, images, batches=m["probe_batches"], device=m["device"],
                                     choices=m["workers"], log=chk.log)
        out[model] = {"reference_num_workers": probe}
        for name in ("none", "combined"):
            r = tp.compare(model, name, images, batches=m["batches"], rounds=m["rounds"], num_workers=probe["chosen"],
                           device=m["device"], log=chk.log)
            out[model][name] = r
            chk.rows.add(f"train {model} {name}: ours vs DataLoader", r["ours"], r["reference"], "samples/s", 10.0,
                         True, num_workers=probe["chosen"])
    return out


def lstm_epoch(chk: Check, images) -> dict:
    from benchmarks import throughput as tp
    from benchmarks.reference import ReferenceTrial
    from tuner.trainable import train

    device = chk.mode["device"]
    hist = train({"model": "lstm", "dataset": images.name, "epochs": 2, "device": device}, data=images)
    ours = tp.OursTrial({"model": "lstm", "device": device}, images, device)
    ours.run(2)
    samples, seconds = ours.epoch_full()
    ref = ReferenceTrial({"model": "lstm", "device": device}, images, num_workers=max(chk.mode["workers"]),
                         device=device)
    try:
        ref.run(2)
        ref_samples, ref_seconds = ref.epoch()
    finally:
        ref.close()
    # the target is absolute: the reference column holds the 0.5 s it is measured against
    chk.rows.add("lstm epoch, training part, vs the 0.5 s target", seconds, 0.5, "s", 1.0, False, samples=samples)
    chk.rows.add("lstm epoch, training part, ours vs DataLoader", seconds, ref_seconds, "s", None, False)
    chk.rows.add("lstm epoch incl. validation + test, train() epoch 2", hist[-1]["epoch_time_s"], None, "s", None,
                 False)
    return {"samples": samples, "train_part_s": seconds, "reference_epoch_s": ref_seconds,
            "reference_samples": ref_samples, "train_epoch_time_s": [h["epoch_time_s"] for h in hist]}


def precision(chk: Check, images) -> dict:
    from benchmarks import throughput as tp
    from tuner.trainable import train

    from tuner.precision import cpu_has_bf16

    m, out = chk.mode, {"throughput": {}, "accuracy": {}}
    names = ("fp32", "bf16", "fp16") if m["device"] == "cuda" else ("fp32", "bf16") if cpu_has_bf16() else ("fp32",)
    if "bf16" not in names:
        chk.log("  bf16 not measured: this CPU has no bf16 kernels (tuner.precision.cpu_has_bf16)")
    for model in ("lstm", "cnn"):
        rates = {}
        for p in names:
            trial = tp.OursTrial({"model": model, "precision": p, **_dev(m)}, images, m["device"])
            trial.run(2)
            rates[p] = statistics.median(s / t for s, t in (trial.run(m["batches"]) for _ in range(m["rounds"])))
            chk.log(f"  {model} {p}: {rates[p]:.0f} samples/s")
        out["throughput"][model] = rates
        for p in names[1:]:
            chk.rows.add(f"train {model} {p} vs fp32", rates[p], rates["fp32"], "samples/s", None, True)
    for p in names[:2]:  # accuracy after a few epochs (fp32, and bf16 where it runs): test set, every seed
        accs = [train({"model": "lstm", "dataset": images.name, "epochs": m["acc_epochs"], "seed": s, "precision": p,
                       **_dev(m)}, data=images)[-1]["acc"] for s in m["acc_seeds"]]
        out["accuracy"][p] = accs
        chk.log(f"  lstm {p}, {m['acc_epochs']} epochs, seeds {list(m['acc_seeds'])}: test acc {accs}")
    return out


def share_of_peak(chk: Check, images) -> dict:
    from benchmarks.limits import share_of_peak as measure

    from tuner.precision import cpu_has_bf16

    m, out = chk.mode, {}
    for model in ("lstm", "cnn"):
        for p in ("fp32", "bf16") if m["device"] == "cuda" or cpu_has_bf16() else ("fp32",):
            r = measure(model, images, device=m["device"], precision=p, batches=m["peak_batches"], rounds=3,
                        log=chk.log)
            out[f"{model} {p}"] = r
            chk.rows.add(f"share of peak: {model} {p} step vs matmul", r["achieved_flops_per_s"] / 1e9,
                         r["peak_matmul_flops_per_s"] / 1e9, "GFLOP/s", None, True)
    return out


def packing(chk: Check, data_dir: Path) -> dict:
    from benchmarks import searchbench as sb

    m = chk.mode
    pack = sb.gpu_packing(str(data_dir), levels=m["packing"], cores=os.cpu_count() or 1, device=m["device"],
                          dataset=m["dataset"], log=chk.log)
    one = pack[min(pack)]["samples_per_s"]
    for k, v in pack.items():
        chk.rows.add(f"{k} trial(s) packed on one GPU, total vs 1", v["samples_per_s"], one, "samples/s",
                     3.0 if k == 4 else None, True)
    return {str(k): v for k, v in pack.items()}


def asha_search(chk: Check, data_dir: Path) -> dict:
    from benchmarks import searchbench as sb

    m = chk.mode
    with tempfile.TemporaryDirectory(prefix="gpu-check-search-") as d:
        args = ["--dataset", m["dataset"], "--data-dir", str(data_dir), "--num-samples", str(m["search_trials"]),
                "--gpus-per-trial", f"{m['search_gpus']:g}", "--cpus-per-trial", "1",
                "--max-concurrent", str(min(os.cpu_count() or 1, int(1 / m["search_gpus"]) if m["search_gpus"] else 2)),
                "--set", f"device={m['device']}"]
        if m["device"] == "cpu":
            args += ["--budget", "smoke", "--max-epochs", "1"]
        cmd = [sys.executable, "-m", "tuner.search", sb.EXPERIMENT, "--storage-path", d, "--name", "asha", *args]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=REPO, env=sb._env(1), capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"search failed (exit {proc.returncode}): {proc.stdout[-2000:]}{proc.stderr[-2000:]}")
        trials = sorted((Path(d) / "asha").glob("trial_*"))
        epochs = sum(len(sb._results(t)) for t in trials)
    chk.rows.add(f"{len(trials)}-trial ASHA search of {sb.EXPERIMENT}, wall", wall, None, "s", None, False,
                 epochs=epochs)
    chk.log(f"  {len(trials)} trials, {epochs} epochs in {wall:.0f} s")
    return {"wall_s": wall, "trials": len(trials), "epochs": epochs, "summary_tail": proc.stdout[-1500:]}


def _dev(m: dict) -> dict:
    return {"device": "cuda"} if m["device"] == "cuda" else {}


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    mode = DRY if args.dry_run else GPU
    if not args.dry_run and not torch.cuda.is_available():
        print("error: no CUDA GPU visible (torch.cuda.is_available() is False): run this on a GPU machine, "
              "or pass --dry-run to check the script on the CPU", file=sys.stderr)
        return 2
    from tuner.data import load_dataset

    if args.dry_run:
        data_dir = Path(args.data_dir or REPO)  # the shipped sample needs no data folder
    else:
        from benchmarks.run import data_dir_or_exit

        data_dir = data_dir_or_exit(args.data_dir)
    if mode["device"] == "cpu":
        torch.set_num_threads(1)
    images = load_dataset(mode["dataset"], data_dir, download=False)
    out = Path(args.out) if args.out else REPO / "benchmarks" / f"gpu-check-{dt.date.today().isoformat()}.json"
    chk = Check(out, mode, args.dry_run)
    chk.log(f"gpu_check{' (dry run, CPU)' if args.dry_run else ''}: {chk.report['machine'].get('cuda') or 'cpu'}, "
            f"torch {torch.__version__}, data {images.name}")
    chk.section("throughput", throughput, chk, images)
    chk.section("lstm_epoch", lstm_epoch, chk, images)
    chk.section("precision", precision, chk, images)
    chk.section("share_of_peak", share_of_peak, chk, images)
    chk.section("packing", packing, chk, data_dir)
    chk.section("asha_search", asha_search, chk, data_dir)
    from benchmarks.run import table

    print()
    print(table(chk.rows))
    failed = [k for k, v in chk.report["sections"].items() if "error" in v]
    met = [r for r in chk.rows if r["met"] is not None]
    print(f"\ntargets met: {sum(r['met'] for r in met)}/{len(met)}; sections failed: {', '.join(failed) or 'none'}; "
          f"{chk.report['elapsed_s'] / 60:.1f} min")
    chk.write()
    print(f"wrote {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
