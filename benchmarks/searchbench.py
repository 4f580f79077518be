"""Figures that go through the search CLI (`python -m tuner.search`, a subprocess each time, so the
wall clock is what a user waits for): search overhead against a plain loop, memory of concurrent
trials, and (on a GPU) the throughput of trials packed onto one GPU."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.procmem import TreeMonitor

REPO = Path(__file__).resolve().parents[1]
EXPERIMENT = "lstm_weighted"


def _env(threads: int) -> dict:
    env = dict(os.environ)
    # RAY_ADDRESS=local: always a fresh local Ray of our own (never join a cluster another user started)
    env.update(OMP_NUM_THREADS=str(threads), RAY_USAGE_STATS_ENABLED="0", PYTHONUNBUFFERED="1", RAY_ADDRESS="local",
               RAY_AIR_NEW_OUTPUT="0")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_search(args: list[str], storage: Path, name: str, *, threads: int = 1, monitor: bool = False,
               log=print) -> dict:
    # benchmarks.phased_search is `python -m tuner.search` with a clock on its phases
    cmd = [sys.executable, "-m", "benchmarks.phased_search", EXPERIMENT, "--storage-path", str(storage), "--name",
           name, "--searcher", "random", "--no-asha", *args]
    phases_file = storage / f"{name}.phases.json"
    times_file = storage / f"{name}.trial-times.jsonl"
    env = {**_env(threads), "BENCH_PHASES_FILE": str(phases_file), "BENCH_TRIAL_TIMES": str(times_file)}
    t0 = time.perf_counter()
    with open(storage / f"{name}.log", "w") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        if monitor:
            with TreeMonitor(proc.pid) as mon:
                rc = proc.wait()
            peak = mon.peak
        else:
            rc, peak = proc.wait(), None
    wall = time.perf_counter() - t0
    if rc != 0:
        tail = (storage / f"{name}.log").read_text()[-3000:]
        raise RuntimeError(f"search {name} failed (exit {rc}):\n{tail}")
    trials = sorted((storage / name).glob("trial_*"))
    phases = json.loads(phases_file.read_text()) if phases_file.exists() else {}
    spans = sorted(json.loads(line) for line in times_file.read_text().splitlines()) if times_file.exists() else []
    return {"wall_s": wall, "peak": peak, "run_dir": storage / name, "trials": trials, "phases": phases,
            "trial_spans": spans}


def breakdown(phases: dict, wall: float, in_trials: float, spans: list | None = None) -> dict:
    """Where a search's wall time went: seconds per phase (the trials' own epochs taken out of fit).
    With the trial functions' [entry, exit] times (`spans`, one trial at a time), the time in fit
    outside the epochs splits into: until the first trial function starts (its worker process starts
    and imports), between one trial function's exit and the next one's entry (Tune's trial cycle),
    inside the trial functions but outside the epochs (set-up, reports, checkpoints), and after
    the last exit (Tune stops the trial actors)."""
    p = phases
    if not {"imports: tuner", "ray.init start", "ray.init end", "fit start", "fit end", "search returned"} <= set(p):
        return {}
    out = {"imports": p["imports: tuner"], "plan and data": p["ray.init start"] - p["imports: tuner"],
           "ray.init": p["ray.init end"] - p["ray.init start"],
           "tuner set-up (imports Ray Tune)": p["fit start"] - p["ray.init end"],
           "trials' epochs (as reported)": in_trials}
    outside = p["fit end"] - p["fit start"] - in_trials
    if spans:
        gaps = [b[0] - a[1] for a, b in zip(spans, spans[1:])]
        out.update({
            "fit: until the first trial starts (worker process start, imports)": spans[0][0] - p["fit start"],
            f"fit: between trials ({len(gaps)} gaps, Tune's trial cycle)": sum(gaps),
            "fit: in the trial functions outside the epochs (set-up, reports, checkpoints)":
                sum(e - s for s, e in spans) - in_trials,
            "fit: after the last trial (stopping the trial actors)": p["fit end"] - spans[-1][1]})
    else:
        out["fit outside the epochs (scheduling, trial start, reports, checkpoints, loggers)"] = outside
    out.update({"summary": p["search returned"] - p["fit end"], "exit (Ray shutdown)": wall - p["search returned"]})
    return out


def _configs(trials: list[Path]) -> list[dict]:
    return [json.loads((t / "params.json").read_text()) for t in trials]


def _results(trial: Path) -> list[dict]:
    path = trial / "result.json"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def run_loop(configs: list[dict], workdir: Path, *, threads: int = 1) -> dict:
    path = workdir / "loop-configs.json"
    path.write_text(json.dumps(configs))
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "benchmarks.loop", str(path)], cwd=REPO, env=_env(threads),
                         capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise RuntimeError(f"plain loop failed:\n{out.stderr[-3000:]}")
    return {"wall_s": wall, **json.loads(out.stdout.strip().splitlines()[-1])}


def search_overhead(dataset: str, data_dir: str, *, trials: int = 16, epochs: int = 2, concurrent: int | None = 1,
                    threads: int = 1, log=print) -> dict:
    """`trials` x `epochs` of lstm_weighted through the search (one trial at a time by default:
    the same CPU a plain loop gets) vs the same configs in a plain loop; both as subprocesses."""
    with tempfile.TemporaryDirectory(prefix="bench-search-") as d:
        d = Path(d)
        args = ["--budget", "smoke", "--dataset", dataset, "--data-dir", data_dir, "--num-samples", str(trials),
                "--max-epochs", str(epochs), "--cpus-per-trial", "1"]
        if concurrent:
            args += ["--max-concurrent", str(concurrent)]
        log(f"  search: {trials} trials x {epochs} epochs of {EXPERIMENT} on {dataset}, "
            f"{concurrent or 'default'} concurrent ...")
        s = run_search(args, d, "overhead", threads=threads, log=log)
        configs = _configs(s["trials"])
        epochs_done = sum(len(_results(t)) for t in s["trials"])
        log(f"  search wall {s['wall_s']:.1f} s ({len(configs)} trials, {epochs_done} epochs); plain loop ...")
        loop = run_loop(configs, d, threads=threads)
        log(f"  loop wall {loop['wall_s']:.1f} s ({loop['trials']} trials, {loop['epochs']} epochs)")
        trial_s = sum(r.get("epoch_time_s", 0) for t in s["trials"] for r in _results(t))
    return {"search_s": s["wall_s"], "loop_s": loop["wall_s"], "loop_train_s": loop["train_s"],
            "search_breakdown": breakdown(s["phases"], s["wall_s"], trial_s, s["trial_spans"] if concurrent == 1 else None),
            "loop_in_process_s": loop["in_process_s"], "loop_epochs_s": loop["epochs_s"],
            "loop_first_trial_s": loop["first_trial_s"],
            "search_trials": len(configs), "search_epochs": epochs_done, "loop_epochs": loop["epochs"],
            "search_time_in_trials_s": trial_s, "dataset": dataset, "concurrent": concurrent or "default"}


def memory(data_dir: str, *, levels=(1, 2, 4), cores: int = 2, log=print) -> dict:
    """Peak memory of a search with k concurrent trials (1 epoch each) on full MNIST, and on the
    shipped 5,000-image sample as a control: the growth per added trial that full MNIST adds over
    the sample is the memory that scales with the dataset, per trial."""
    out = {}
    with tempfile.TemporaryDirectory(prefix="bench-mem-") as d:
        d = Path(d)
        for dataset in ("mnist", "mnist-sample"):
            for k in levels:
                cpus = min(1.0, cores / k)
                args = ["--budget", "smoke", "--dataset", dataset, "--data-dir", data_dir, "--num-samples", str(k),
                        "--max-concurrent", str(k), "--cpus-per-trial", f"{cpus:g}", "--max-epochs", "1"]
                s = run_search(args, d, f"mem-{dataset}-{k}", monitor=True, log=log)
                p = s["peak"]
                out[(dataset, k)] = {"pss": p.pss, "rss": p.rss, "processes": p.processes, "ray_workers": p.workers,
                                     "wall_s": s["wall_s"], "top": sorted(p.by_name.items(), key=lambda kv: -kv[1])[:6]}
                log(f"  {dataset:12s} {k} concurrent (cpus/trial {cpus:g}): peak PSS {p.pss / 2**20:7.0f} MiB, "
                    f"peak RSS sum {p.rss / 2**20:7.0f} MiB, {p.workers} ray:: processes, {s['wall_s']:.0f} s")
    return out


def gpu_packing(data_dir: str, *, levels=(1, 2, 4, 8), epochs: int = 2, cores: int = 1, device: str = "cuda",
                dataset: str = "mnist", log=print) -> dict:
    """k trials packed on one GPU with --gpus-per-trial 1/k: total training samples/s, as the sum
    of the trials' samples over the longest trial's summed epoch times (the trials run together).
    (device="cpu" runs the same plumbing without a GPU: --gpus-per-trial 0, for testing it.)"""
    out = {}
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as d:
        d = Path(d)
        for k in levels:
            gpus = 1 / k if device == "cuda" else 0
            args = ["--budget", "smoke", "--dataset", dataset, "--data-dir", data_dir, "--num-samples", str(k),
                    "--max-concurrent", str(k), "--gpus-per-trial", f"{gpus:g}",
                    "--cpus-per-trial", f"{min(1.0, cores / k):g}", "--max-epochs", str(epochs), "--set", f"device={device}"]
            s = run_search(args, d, f"gpu-{k}", log=log)
            samples, longest = 0, 0.0
            for t in s["trials"]:
                rows = _results(t)
                samples += sum(sum(r["train_counts"]) for r in rows)
                longest = max(longest, sum(r["epoch_time_s"] for r in rows))
            out[k] = {"samples": samples, "longest_trial_s": longest, "samples_per_s": samples / max(longest, 1e-9),
                      "wall_s": s["wall_s"]}
            log(f"  {k} trial(s) on one GPU: {out[k]['samples_per_s']:.0f} samples/s in total")
    return out
