"""`python -m benchmarks.run [--quick] [--out FILE.json] [--data-dir DIR]`: our data path, search
and memory against their references, each measured in the same run; prints a table, writes JSON.

  a. training throughput (samples/s): `tuner.trainable.train_epoch` over `DeviceData` vs the
     DataLoader pipeline of `tuner.reference`, lstm and cnn, imbalanced full MNIST, five configs;
     plus (informational) the two data paths with no model and evaluation throughput
  b. search overhead: 16 trials x 2 epochs of lstm_weighted through `python -m tuner.search`
     vs the same configs in a plain loop (`python -m benchmarks.loop`)
  c. memory: peak footprint of a search with 1, 2 and 4 concurrent trials on full MNIST, per
     added trial, against the training set's bytes (with the shipped sample as a control)
  d. GPU (skipped without CUDA): the throughput ratios on cuda, one lstm epoch, and the total
     samples/s of 1, 2, 4, 8 trials packed with fractional --gpus-per-trial

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

QUICK = dict(batches={"lstm": 6, "cnn": 3}, rounds=5, probe={"lstm": 6, "cnn": 3}, search_dataset="mnist-sample",
             eval_n=2000, eval_rounds=2, data_batches=20, full_epoch=False, search_concurrent_row=False)
FULL = dict(batches={"lstm": 30, "cnn": 12}, rounds=5, probe={"lstm": 12, "cnn": 6}, search_dataset="mnist",
            eval_n=10000, eval_rounds=3, data_batches=60, full_epoch=True, search_concurrent_row=True)
GPU = dict(batches={"lstm": 60, "cnn": 60}, rounds=5, probe={"lstm": 30, "cnn": 30}, workers=(0, 2, 4, 8))


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="partial epochs, search on mnist-sample: a few minutes on 2 cores")
    p.add_argument("--out", help="write the JSON here (default: benchmarks/results-<date>.json)")
    p.add_argument("--data-dir", help="folder with MNIST/raw (default $TUNER_DATA_DIR, else ../shared/data)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads for both paths (default 1: what a Ray trial with 1 CPU gets)")
    p.add_argument("--num-workers", default="auto", help="reference DataLoader workers: auto (probe 0, 1, 2) or a number")
    p.add_argument("--only", default="throughput,search,memory,gpu",
                   help="comma-separated sections: throughput, search, memory, gpu")
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


def section_throughput(images, mode: dict, args, rows: Rows, report: dict, log, device="cpu", prefix="") -> None:
    from benchmarks import throughput as tp

    settings = GPU if device == "cuda" else mode
    report.setdefault("reference_num_workers", {})
    for model in ("lstm", "cnn"):
        if args.num_workers == "auto":
            choices = GPU["workers"] if device == "cuda" else (0, 1, 2)
            probe = tp.probe_num_workers(model, images, batches=settings["probe"][model], device=device,
                                         choices=choices, log=log)
            nw = probe["chosen"]
        else:
            nw, probe = int(args.num_workers), {"chosen": int(args.num_workers), "given": True}
        report["reference_num_workers"][prefix + model] = probe
        log(f"  reference DataLoader for {model}: num_workers={nw}")
        for name in tp.CONFIGS:
            r = tp.compare(model, name, images, batches=settings["batches"][model], rounds=settings["rounds"],
                           num_workers=nw, device=device, log=log)
            target = 1.5 if name in tp.AUGMENTED else 1.0
            rows.add(f"{prefix}train {model} {name}", r["ours"], r["reference"], "samples/s", target, True,
                     num_workers=nw, ours_rounds=r["ours_rounds"], reference_rounds=r["reference_rounds"])
        if model == "lstm" and device == "cpu":
            for name in ("none", "combined"):
                r = tp.data_path_only(model, name, images, batches=mode["data_batches"], rounds=mode["rounds"],
                                      num_workers=nw)
                rows.add(f"data path only {name} (no model)", r["ours"], r["reference"], "samples/s", None, True,
                         num_workers=nw)
                log(f"  data path only, {name}: ours {r['ours']:.0f}, reference {r['reference']:.0f} samples/s")
        if device == "cpu":
            r = tp.eval_compare(model, images, n=mode["eval_n"], rounds=mode["eval_rounds"], num_workers=nw)
            rows.add(f"eval {model} (test images)", r["ours"], r["reference"], "samples/s", None, True,
                     num_workers=nw, agreement=r["agreement"])
            log(f"  eval {model}: ours {r['ours']:.0f}, reference {r['reference']:.0f} samples/s "
                f"(confusion agreement {r['agreement']:.4f})")
        if mode.get("full_epoch") and model == "lstm" and device == "cpu":
            r = tp.full_epoch(model, "combined", images, num_workers=nw)
            rows.add("train lstm combined, one whole epoch", r["ours"], r["reference"], "samples/s", 1.5, True,
                     num_workers=nw, ours_s=r["ours_s"], reference_s=r["reference_s"], samples=r["samples"])
            log(f"  whole epoch lstm combined: ours {r['ours_s']:.1f} s, reference {r['reference_s']:.1f} s")


def section_search(data_dir, mode, args, rows: Rows, report: dict, log) -> None:
    from benchmarks import searchbench as sb

    r = sb.search_overhead(mode["search_dataset"], str(data_dir), threads=args.threads, log=log)
    report["search_overhead"] = r
    rows.add(f"search 16x2 epochs lstm_weighted ({r['dataset']}, 1 at a time) vs loop", r["search_s"], r["loop_s"],
             "s wall", 1.15, False, search_in_trials_s=r["search_time_in_trials_s"], loop_train_s=r["loop_train_s"])
    log(f"  outside the trials' epochs: search {r['search_s'] - r['search_time_in_trials_s']:.1f} s, "
        f"loop {r['loop_s'] - r['loop_train_s']:.1f} s (start-up, imports, data, Ray, scheduling, checkpoints)")
    if mode.get("search_concurrent_row"):
        c = sb.search_overhead(mode["search_dataset"], str(data_dir), concurrent=None, threads=args.threads, log=log)
        report["search_concurrent"] = c
        rows.add(f"search 16x2 epochs lstm_weighted ({c['dataset']}, default concurrency) vs loop", c["search_s"],
                 c["loop_s"], "s wall", None, False)


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


def section_gpu(data_dir, images, args, rows: Rows, report: dict, log) -> None:
    import torch

    if not torch.cuda.is_available():
        msg = "GPU section skipped: no CUDA device here (torch.cuda.is_available() is False)"
        log(msg)
        report["gpu"] = {"skipped": msg}
        return
    from benchmarks import searchbench as sb
    from benchmarks import throughput as tp
    from tuner.reference import ReferenceTrial
    from tuner.trainable import train

    report["gpu"] = {"device": torch.cuda.get_device_name(0)}
    section_throughput(images, FULL, args, rows, report, log, device="cuda", prefix="gpu: ")
    # one lstm epoch on imbalanced full MNIST: train() (training + evaluation, as reported) and the
    # training part against the reference (its best num_workers from the probe above)
    hist = train({"model": "lstm", "dataset": "mnist", "epochs": 2, "device": "cuda"}, data=images)
    nw = report["reference_num_workers"]["gpu: lstm"]["chosen"]
    ours = tp.OursTrial({"model": "lstm", "device": "cuda"}, images, "cuda")
    ours.run(2)
    so, to = ours.epoch_full()
    ref = ReferenceTrial({"model": "lstm", "device": "cuda"}, images, num_workers=nw, device="cuda")
    try:
        ref.run(2)
        sr, tr = ref.epoch()
    finally:
        ref.close()
    report["gpu"]["train_epoch_time_s"] = [h["epoch_time_s"] for h in hist]
    rows.add("gpu: lstm epoch, training part (imbalanced full MNIST)", to, tr, "s", None, False, samples=so)
    rows.add("gpu: lstm epoch incl. evaluation, train() 2nd epoch", hist[-1]["epoch_time_s"], None, "s", None, False)
    pack = sb.gpu_packing(str(data_dir), cores=os.cpu_count() or 1, log=log)
    report["gpu"]["packing"] = pack
    for k, v in pack.items():
        rows.add(f"gpu: {k} trial(s) packed, --gpus-per-trial {1 / k:g}, total", v["samples_per_s"],
                 pack[1]["samples_per_s"], "samples/s", None, True)


def main(argv=None) -> int:
    args = parse_args(argv)
    data_dir = data_dir_or_exit(args.data_dir)
    sections = {s.strip() for s in args.only.split(",") if s.strip()}
    unknown = sections - {"throughput", "search", "memory", "gpu"}
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
    if "gpu" in sections:
        log("d. GPU")
        section_gpu(data_dir, images, args, rows, report, log)
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
