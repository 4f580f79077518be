"""How close a training step comes to the machine's limit: achieved FLOP/s of the step (FLOPs
counted by `torch.utils.flop_counter`) over the dense matmul FLOP/s measured in the same process,
same threads, same dtype.

FLOPs are counted on the CPU with oneDNN off, where `nn.LSTM` runs as plain matmuls the counter
sees (the fused oneDNN and cuDNN LSTM kernels are opaque to it); the count does not depend on the
device, so the same figure serves a GPU run.
"""
from __future__ import annotations

import copy
import statistics
import time
import warnings

import torch
from torch.utils.flop_counter import FlopCounterMode


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_flops_per_s(device="cpu", dtype=torch.float32, n: int | None = None, repeats: int = 5) -> float:
    """Dense n x n x n matrix products: the best of `repeats` timed runs (after a warm-up)."""
    device = torch.device(device)
    n = n or (8192 if device.type == "cuda" else 1024)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    inner = 10 if device.type == "cuda" else 3
    torch.mm(a, b)
    _sync(device)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            torch.mm(a, b)
        _sync(device)
        best = min(best, (time.perf_counter() - t0) / inner)
    return 2 * n**3 / best


def step_flops(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    """FLOPs of one training step's forward and backward (cross-entropy loss) on this batch."""
    m = copy.deepcopy(model).cpu().train()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # mkldnn.flags warns about a TF32 setting we do not touch
        with torch.backends.mkldnn.flags(enabled=False), FlopCounterMode(display=False) as counter:
            loss = torch.nn.functional.cross_entropy(m(x.cpu().float()), y.cpu())
            loss.backward()
    return counter.get_total_flops()


def lstm_step_flops_by_hand(batch: int, steps: int, inputs: int, hidden: int, classes: int) -> int:
    """The same count written out for a one-layer LSTM read row by row with a linear head. Each
    step multiplies x_t by W_ih (4 gates) and h_{t-1} by W_hh; a matmul's backward is one product
    for the weight gradient and one for the input gradient, but autograd skips the input gradient
    where nothing needs it: for the images x, and for the zero initial state h_0."""
    gx = 2 * batch * 4 * hidden * inputs  # x_t W_ih^T
    gh = 2 * batch * 4 * hidden * hidden  # h_{t-1} W_hh^T
    head = 2 * batch * hidden * classes
    forward = steps * (gx + gh) + head
    backward = steps * gx + (2 * steps - 1) * gh + 2 * head
    return forward + backward


def share_of_peak(model_name: str, images, *, device="cpu", precision="fp32", batches: int = 6, rounds: int = 3,
                  log=print) -> dict:
    """Train `batches` batches of the real trial (our data path, Adam, no remedy) `rounds` times;
    achieved FLOP/s = counted FLOPs per batch x batches / time, against matmul FLOP/s now."""
    from benchmarks.throughput import OursTrial

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    trial = OursTrial({"model": model_name, "precision": precision,
                       **({"device": "cuda"} if torch.device(device).type == "cuda" else {})}, images, device)
    bs = trial.cfg["batch_size"]
    x = trial.dd.normalise(trial.dd.pixels(trial.dd.train_x[:bs]))
    flops = step_flops(trial.model, x, trial.dd.train_y[:bs])
    trial.run(2)  # warm-up
    rates = []
    for _ in range(rounds):
        samples, seconds = trial.run(batches)
        rates.append(flops * samples / bs / seconds)
    achieved = statistics.median(rates)
    peak = matmul_flops_per_s(device, dtype)
    row = {"model": model_name, "precision": precision, "flops_per_batch": flops, "batch_size": bs,
           "achieved_flops_per_s": achieved, "peak_matmul_flops_per_s": peak, "share": achieved / peak}
    log(f"  {model_name} {precision}: {achieved / 1e9:.1f} GFLOP/s achieved, matmul {peak / 1e9:.1f} GFLOP/s: "
        f"{100 * achieved / peak:.1f}% of peak")
    return row
