"""`python -m benchmarks.run [--quick] [--out FILE.json] [--data-dir DIR]`: our data path, search
and memory against their references, each measured in the same run; prints a table, writes JSON.

  a. training throughput (samples/s): `tuner.trainable.train_epoch` over `DeviceData` vs the
     DataLoader pipeline of `benchmarks.reference`, lstm and cnn, imbalanced full MNIST, five configs;
     plus (informational) the two data paths with no model and evaluation throughput
  b. search overhead: 16 trials x 2 epochs of lstm_weighted through `python -m tuner.search`
     vs the same configs in a plain loop (`python -m benchmarks.loop`)
  c. memory: peak footprint of a search with 1, 2 and 4 concurrent trials on full MNIST, per
     added trial, against the training set's bytes (with the shipped sample as a control)
  d. precision: training samples/s of each model in bf16 against fp32 (autocast), same run
  e. the limit: each model's training step in FLOP/s (torch.utils.flop_counter) against dense
     matmul FLOP/s measured in the same run, same threads: the share of peak the step reaches

The GPU figures come from `bash benchmarks/gpu_check.sh` (one short run on a GPU machine).

Full MNIST is required: --data-dir, else $TUNER_DATA_DIR, else ../shared/data beside the repo.
Timings on a shared machine are noisy: ours and the reference alternate within each figure, so
the ratios are what to read. See docs/performance.md.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

QUICK = dict(batches={"lstm": 6, "cnn": 3}, rounds=5, probe={"lstm": 6, "cnn": 3}, search_datasets=("mnist-sample",),
             eval_n=2000, eval_rounds=2, data_batches=20, full_epoch=False, search_concurrent_row=False)
FULL = dict(batches={"lstm": 30, "cnn": 12}, rounds=5, probe={"lstm": 12, "cnn": 6}, search_datasets=("mnist-sample", "mnist"),
            eval_n=10000, eval_rounds=3, data_batches=60, full_epoch=True, search_concurrent_row=True)


SECTIONS = ("throughput", "search", "memory", "precision", "limit")


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="partial epochs, search on mnist-sample: a few minutes on 2 cores")
    p.add_argument("--out", help="write the JSON here (default: benchmarks/results-<date>.json)")
    p.add_argument("--data-dir", help="folder with MNIST/raw (default $TUNER_DATA_DIR, else ../shared/data)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads for both paths (default 1: what a Ray trial with 1 CPU gets)")
    p.add_argument("--num-workers", default="auto", help="reference DataLoader workers: auto (probe 0, 1, 2) or a number")
    p.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections: " + ", ".join(SECTIONS))
    return p.parse_args(argv)


def data_dir_or_exit(arg: str | None) -> Path:
    d = Path(arg or os.environ.get("TUNER_DATA_DIR") or REPO.parent / "shared" / "data").expanduser().resolve()
    if not (d / "MNIST" / "raw" / "train-images-idx3-ubyte").exists():
        print(f"error: full MNIST not found under {d} (expected {d / 'MNIST' / 'raw' / 'train-images-idx3-ubyte'}).\n"
              "The benchmark needs full MNIST: pass --data-dir DIR or set TUNER_DATA_DIR.", file=sys.stderr)
        raise SystemExit(2)
    return d


def machine() -> dict:
    import ray
    import torch
    import torchvision

    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor() or "?"
    info = {
        "cpu_model": cpu, "cores": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
        "torch": torch.__version__, "torchvision": torchvision.__version__, "ray": ray.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        info["memory_bytes"] = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        pass
    return info


def loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


class Rows(list):
    def add(self, name, ours, reference, unit, target=None, higher_is_better=True, **extra):
        ratio = ours / reference if reference else None
        met = None
        if target is not None and ratio is not None:
            met = ratio >= target if higher_is_better else ratio <= target
        self.append({"name": name, "ours": ours, "reference": reference, "unit": unit, "ratio": ratio,
                     "target": target, "higher_is_better": higher_is_better, "met": met, **extra})


def _fmt(v, unit=""):
    if v is None:
        return "-"
    if unit == "bytes":
        return f"{v / 2**20:.1f} MiB"
    if isinstance(v, float):
        return f"{v:.0f}" if abs(v) >= 100 else f"{v:.2f}" if abs(v) >= 1 else f"{v:.3f}"
    return str(v)


def table(rows: list[dict]) -> str:
    head = ["name", "ours", "reference", "unit", "ratio", "target", "met"]
    lines = [head]
    for r in rows:
        target = "-" if r["target"] is None else ("≥ " if r["higher_is_better"] else "≤ ") + f"{r['target']:g}"
        met = "-" if r["met"] is None else ("yes" if r["met"] else "NO")
        unit = "MiB" if r["unit"] == "bytes" else r["unit"]
        lines.append([r["name"], _fmt(r["ours"], r["unit"]).replace(" MiB", ""),
                      _fmt(r["reference"], r["unit"]).replace(" MiB", ""), unit,
                      "-" if r["ratio"] is None else f"{r['ratio']:.2f}", target, met])
    widths = [max(len(str(l[c])) for l in lines) for c in range(len(head))]
    out = []
    for i, l in enumerate(lines):
        out.append("  ".join(str(c).ljust(w) if j == 0 else str(c).rjust(w) for j, (c, w) in enumerate(zip(l, widths))))
        if i == 0:
            out.append("-" * len(out[0]))
    return "\n".join(out)


def section_throughput(images, mode: dict, args, rows: Rows, report: dict, log) -> None:
    from benchmarks import throughput as tp

    report.setdefault("reference_num_workers", {})
    for model in ("lstm", "cnn"):
        if args.num_workers == "auto":
            probe = tp.probe_num_workers(model, images, batches=mode["probe"][model], choices=(0, 1, 2), log=log)
            nw = probe["chosen"]
        else:
            nw, probe = int(args.num_workers), {"chosen": int(args.num_workers), "given": True}
        report["reference_num_workers"][model] = probe
        log(f"  reference DataLoader for {model}: num_workers={nw}")
        for name in tp.CONFIGS:
            r = tp.compare(model, name, images, batches=mode["batches"][model], rounds=mode["rounds"],
                           num_workers=nw, log=log)
            # no CPU target: the model step is ~98% of a step here, so the data path cannot show
            # (docs/performance.md); on a GPU gpu_check.sh holds the >= 10x target
            rows.add(f"train {model} {name}", r["ours"], r["reference"], "samples/s", None, True,
                     num_workers=nw, ours_rounds=r["ours_rounds"], reference_rounds=r["reference_rounds"])
        if model == "lstm":
            for name in ("none", "combined"):
                r = tp.data_path_only(model, name, images, batches=mode["data_batches"], rounds=mode["rounds"],
                                      num_workers=nw)
                rows.add(f"data path only {name} (no model)", r["ours"], r["reference"], "samples/s", None, True,
                         num_workers=nw)
                log(f"  data path only, {name}: ours {r['ours']:.0f}, reference {r['reference']:.0f} samples/s")
        r = tp.eval_compare(model, images, n=mode["eval_n"], rounds=mode["eval_rounds"], num_workers=nw)
        rows.add(f"eval {model} (test images)", r["ours"], r["reference"], "samples/s", None, True,
                 num_workers=nw, agreement=r["agreement"])
        log(f"  eval {model}: ours {r['ours']:.0f}, reference {r['reference']:.0f} samples/s "
            f"(confusion agreement {r['agreement']:.4f})")
        if mode.get("full_epoch") and model == "lstm":
            r = tp.full_epoch(model, "combined", images, num_workers=nw)
            rows.add("train lstm combined, one whole epoch", r["ours"], r["reference"], "samples/s", None, True,
                     num_workers=nw, ours_s=r["ours_s"], reference_s=r["reference_s"], samples=r["samples"])
            log(f"  whole epoch lstm combined: ours {r['ours_s']:.1f} s, reference {r['reference_s']:.1f} s")


SEARCH_TARGETS = {"mnist-sample": 1.3, "mnist": 1.05}  # search / plain loop, 16 trials x 2 epochs, 1 at a time


def section_search(data_dir, mode, args, rows: Rows, report: dict, log) -> None:
    from benchmarks import searchbench as sb

    for dataset in mode["search_datasets"]:
        r = sb.search_overhead(dataset, str(data_dir), threads=args.threads, log=log)
        report.setdefault("search_overhead", {})[dataset] = r
        rows.add(f"search 16x2 epochs lstm_weighted ({dataset}, 1 at a time) vs loop", r["search_s"], r["loop_s"],
                 "s wall", SEARCH_TARGETS[dataset], False, search_in_trials_s=r["search_time_in_trials_s"],
                 loop_train_s=r["loop_train_s"], breakdown=r["search_breakdown"])
        log(f"  where the search's {r['search_s']:.1f} s went: " +
            ", ".join(f"{k} {v:.1f} s" for k, v in r["search_breakdown"].items()))
        log(f"  the loop's {r['loop_s']:.1f} s: {r['loop_train_s']:.1f} s in train() calls (their epochs "
            f"{r['loop_epochs_s']:.1f} s; the first call {r['loop_first_trial_s']:.1f} s), "
            f"{r['loop_s'] - r['loop_train_s']:.1f} s start-up, imports and data")
    if mode.get("search_concurrent_row"):
        c = sb.search_overhead("mnist", str(data_dir), concurrent=None, threads=args.threads, log=log)
        report["search_concurrent"] = c
        rows.add("search 16x2 epochs lstm_weighted (mnist, default concurrency) vs loop", c["search_s"],
                 c["loop_s"], "s wall", None, False)


def section_precision(images, mode, rows: Rows, report: dict, log) -> None:
    """bf16 autocast against fp32: training samples/s of our path, alternating, median of rounds."""
    import statistics

    from benchmarks.throughput import OursTrial

    from tuner.precision import cpu_has_bf16
    from tuner.settings import BF16_ON_CPU

    out = report.setdefault("precision", {})
    if not cpu_has_bf16():
        out["bf16"] = f"not measured: {BF16_ON_CPU}"
        log(f"  bf16 not measured: {BF16_ON_CPU}")
    for model in ("lstm", "cnn") if cpu_has_bf16() else ():
        trials = {p: OursTrial({"model": model, "precision": p}, images) for p in ("fp32", "bf16")}
        for t in trials.values():
            t.run(2)
        rates = {p: [] for p in trials}
        for k in range(mode["rounds"]):
            for p in (("fp32", "bf16") if k % 2 == 0 else ("bf16", "fp32")):
                n, sec = trials[p].run(mode["batches"][model])
                rates[p].append(n / sec)
        med = {p: statistics.median(v) for p, v in rates.items()}
        out[model] = {"samples_per_s": med, "rounds": rates}
        rows.add(f"train {model} bf16 vs fp32 (autocast)", med["bf16"], med["fp32"], "samples/s", None, True)
        log(f"  {model}: bf16 {med['bf16']:.0f}, fp32 {med['fp32']:.0f} samples/s")
    # channels_last=true against the default memory order, cnn (the LSTM has no 4-D weights)
    trials = {k: OursTrial({"model": "cnn", "channels_last": k}, images) for k in (False, True)}
    for t in trials.values():
        t.run(2)
    rates = {k: [] for k in trials}
    for r in range(mode["rounds"]):
        for k in ((False, True) if r % 2 == 0 else (True, False)):
            n, sec = trials[k].run(mode["batches"]["cnn"])
            rates[k].append(n / sec)
    med = {k: statistics.median(v) for k, v in rates.items()}
    out["cnn channels_last"] = {"samples_per_s": {str(k): v for k, v in med.items()}}
    rows.add("train cnn channels_last vs default memory order", med[True], med[False], "samples/s", None, True)
    log(f"  cnn: channels_last {med[True]:.0f}, default {med[False]:.0f} samples/s")


def section_limit(images, mode, rows: Rows, report: dict, log) -> None:
    from benchmarks.limits import share_of_peak
    from tuner.precision import cpu_has_bf16

    out = report.setdefault("limit", {})
    for model in ("lstm", "cnn"):
        for p in ("fp32", "bf16") if cpu_has_bf16() else ("fp32",):  # bf16: section_precision says why not
            r = share_of_peak(model, images, precision=p, batches=mode["batches"][model], log=log)
            out[f"{model} {p}"] = r
            rows.add(f"share of peak: {model} {p} step vs dense matmul", r["achieved_flops_per_s"] / 1e9,
                     r["peak_matmul_flops_per_s"] / 1e9, "GFLOP/s", None, True)


def section_memory(data_dir, images, rows: Rows, report: dict, log) -> None:
    from benchmarks import searchbench as sb

    m = sb.memory(str(data_dir), cores=os.cpu_count() or 2, log=log)
    train_bytes = images.train_x.nbytes + images.train_y.nbytes
    report["memory"] = {f"{ds}:{k}": v for (ds, k), v in m.items()}
    report["memory"]["train_set_bytes"] = train_bytes
    levels = sorted({k for _, k in m})
    lo, hi = levels[0], levels[-1]
    per = {ds: (m[(ds, hi)]["pss"] - m[(ds, lo)]["pss"]) / (hi - lo) for ds in ("mnist", "mnist-sample")}
    per_rss = {ds: (m[(ds, hi)]["rss"] - m[(ds, lo)]["rss"]) / (hi - lo) for ds in ("mnist", "mnist-sample")}
    for k in levels:
        rows.add(f"memory: search, {k} concurrent trial(s), full MNIST (peak PSS)", m[("mnist", k)]["pss"], train_bytes,
                 "bytes", None, False, rss_sum=m[("mnist", k)]["rss"])
    rows.add(f"memory: per added trial ({lo}->{hi}), full MNIST, all of it (PSS)", per["mnist"], train_bytes, "bytes",
             None, False, rss_sum_per_trial=per_rss["mnist"])
    rows.add(f"memory: per added trial that scales with the data (full minus sample control)",
             per["mnist"] - per["mnist-sample"], train_bytes, "bytes", 1.0, False,
             rss_sum_per_trial=per_rss["mnist"] - per_rss["mnist-sample"])


def main(argv=None) -> int:
    args = parse_args(argv)
    data_dir = data_dir_or_exit(args.data_dir)
    sections = {s.strip() for s in args.only.split(",") if s.strip()}
    unknown = sections - set(SECTIONS)
    if unknown:
        print(f"error: unknown section(s) {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    import torch

    torch.set_num_threads(args.threads)
    from tuner.data import load_dataset

    mode = QUICK if args.quick else FULL
    images = load_dataset("mnist", data_dir, download=False)
    t0 = time.perf_counter()
    report = {"machine": machine(), "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
              "mode": "quick" if args.quick else "full", "threads": args.threads, "data_dir": str(data_dir),
              "loadavg_start": loadavg(), "settings": {k: v for k, v in mode.items()}}

    def log(msg):
        print(f"[{time.perf_counter() - t0:6.0f}s] {msg}", flush=True)

    rows = Rows()
    log(f"benchmark ({report['mode']}), torch threads {args.threads}, {report['machine']['cpu_model']}, "
        f"{report['machine']['cores']} cores, load {report['loadavg_start']}")
    if "throughput" in sections:
        log("a. training throughput, ours vs reference DataLoader")
        section_throughput(images, mode, args, rows, report, log)
    if "search" in sections:
        log("b. search overhead")
        section_search(data_dir, mode, args, rows, report, log)
    if "memory" in sections:
        log("c. memory of concurrent trials")
        section_memory(data_dir, images, rows, report, log)
    if "precision" in sections:
        log("d. precision: bf16 vs fp32")
        section_precision(images, mode, rows, report, log)
    if "limit" in sections:
        log("e. the limit: training step FLOP/s vs dense matmul FLOP/s")
        section_limit(images, mode, rows, report, log)
    report["rows"] = rows
    report["loadavg_end"] = loadavg()
    report["elapsed_s"] = time.perf_counter() - t0
    print()
    print(table(rows))
    with_target = [r for r in rows if r["met"] is not None]
    print(f"\ntargets met: {sum(r['met'] for r in with_target)}/{len(with_target)}; "
          f"load average {report['loadavg_start']} -> {report['loadavg_end']}; {report['elapsed_s'] / 60:.1f} min")
    out = Path(args.out) if args.out else REPO / "benchmarks" / f"results-{dt.date.today().isoformat()}{'-quick' if args.quick else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, default=str))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
