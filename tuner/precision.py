"""Mixed precision of a trial: `precision=fp32|bf16|fp16`."""
from __future__ import annotations

import torch


class Precision:
    """`precision=fp32|bf16|fp16`: forward passes (model and loss) under torch.autocast in that dtype,
    weights and optimizer state in fp32. fp16's narrow range needs loss scaling (GradScaler); bf16
    has fp32's range and needs none. fp32 runs with autocast disabled: the same numbers as without it."""

    DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}

    def __init__(self, name: str, device: torch.device):
        self.name, self.device_type, self.dtype = name, device.type, self.DTYPES[name]
        self.scaler = torch.amp.GradScaler(device.type, enabled=name == "fp16")

    def autocast(self):
        return torch.autocast(self.device_type, dtype=self.dtype, enabled=self.dtype is not None)

    def step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        self.scaler.scale(loss).backward()  # unscaled when disabled
        self.scaler.step(optimizer)  # skips the step if fp16 gradients overflowed
        self.scaler.update()
