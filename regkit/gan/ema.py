"""Exponential moving average of a model's weights, the usual way to sample from a GAN generator
(Yazici et al., 2019; Karras et al., 2018)."""
from __future__ import annotations

import copy

import torch
from torch import nn


class EMA(nn.Module):
    """A frozen copy of ``model`` whose parameters follow ``decay * ema + (1 - decay) * model`` after
    every ``update``; buffers (batch-norm running statistics) are copied as they are.

    Args:
        model: the module to average (not modified).
        decay: weight of the old average per update (0.999 = about the last 1000 steps).

    Shape:
        Same as ``model``.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999) -> None:
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.decay = float(decay)
        self.module = copy.deepcopy(model).eval().requires_grad_(False)

    def extra_repr(self) -> str:
        return f"decay={self.decay}"

    def train(self, mode: bool = True) -> "EMA":
        return super().train(False)  # the average is only ever evaluated

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        ema_params = list(self.module.parameters())
        params = [p.detach() for p in model.parameters()]
        torch._foreach_lerp_(ema_params, params, 1.0 - self.decay)
        for ema_buf, buf in zip(self.module.buffers(), model.buffers()):
            ema_buf.copy_(buf)

    def forward(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return self.module(*args, **kwargs)
