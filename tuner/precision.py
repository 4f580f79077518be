"""Mixed precision of a trial: `precision=fp32|bf16|fp16`."""
from __future__ import annotations

import functools

from tuner.errors import ConfigError
from tuner.lazy import lazy
from tuner.settings import BF16_ON_CPU, FP16_ON_CPU

torch = lazy("torch", globals())  # imported on first use (tuner.lazy): the driver's checks need no torch


@functools.cache
def cpu_has_bf16() -> bool:
    """Whether this CPU runs bf16 autocast on real bf16 kernels. oneDNN has them on CPUs with
    AVX-512 BF16 or AMX; on others (an AVX2 VM) it refuses the LSTM in bf16 ("could not create a
    primitive descriptor") and runs convolutions emulated, about 8x slower than fp32
    (docs/performance.md). Asked of a tiny LSTM, once per process."""
    lstm = torch.nn.LSTM(2, 2, batch_first=True)
    try:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            lstm(torch.zeros(1, 1, 2))
    except RuntimeError:
        return False
    return True


def check_device(name: str, device_type: str) -> None:
    """One line, before any training, for a precision this kind of device cannot run."""
    if name == "fp16" and device_type != "cuda":
        raise ConfigError(FP16_ON_CPU)
    if name == "bf16" and device_type == "cpu" and not cpu_has_bf16():
        raise ConfigError(BF16_ON_CPU)


class Precision:
    """`precision=fp32|bf16|fp16`: forward passes (model and loss) under torch.autocast in that dtype,
    weights and optimizer state in fp32. fp16's narrow range needs loss scaling (GradScaler); bf16
    has fp32's range and needs none. fp32 runs with autocast disabled: the same numbers as without it."""

    DTYPES = {"fp32": None, "bf16": "bfloat16", "fp16": "float16"}  # torch's dtypes, by name

    def __init__(self, name: str, device: torch.device):
        dtype = self.DTYPES[name]
        self.name, self.device_type, self.dtype = name, device.type, dtype and getattr(torch, dtype)
        self.scaler = torch.amp.GradScaler(device.type, enabled=name == "fp16")

    def autocast(self):
        return torch.autocast(self.device_type, dtype=self.dtype, enabled=self.dtype is not None)

    def step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        self.scaler.scale(loss).backward()  # unscaled when disabled
        self.scaler.step(optimizer)  # skips the step if fp16 gradients overflowed
        self.scaler.update()
