"""Exponential moving average of a model's weights, the usual way to sample from a GAN generator
(Yazici et al., 2019; Karras et al., 2018)."""
from __future__ import annotations

import copy

import torch
from torch import nn
from torch.optim.swa_utils import get_ema_multi_avg_fn


def _forget_count(module: EMA, incompatible_keys: object) -> None:
    module._count = None


class EMA(nn.Module):
    """A frozen copy of ``model`` whose parameters follow ``decay * ema + (1 - decay) * model`` after
    every ``update``; buffers (batch-norm running statistics) are copied as they are.

    With ``warmup`` the decay of update ``t`` is ``min(decay, (1 + t) / (10 + t))`` (as in
    TensorFlow's ExponentialMovingAverage with ``num_updates``), so the average does not stay
    anchored to the random initial weights for the first thousands of steps.

    Args:
        model: the module to average (not modified).
        decay: weight of the old average per update (0.999 = about the last 1000 steps).
        warmup: use the smaller decay early in training.

    Shape:
        Same as ``model``.
    """

    num_updates: torch.Tensor  # a buffer (nn.Module.__getattr__ alone would type it Tensor | Module)

    def __init__(self, model: nn.Module, decay: float = 0.999, warmup: bool = True) -> None:
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.decay, self.warmup = float(decay), warmup
        self.module = copy.deepcopy(model).requires_grad_(False)
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))
        # A host-side copy of num_updates, so an update never reads a GPU tensor (a sync); read
        # from the buffer only once after a checkpoint load.
        self._count: int | None = 0
        self.register_load_state_dict_post_hook(_forget_count)

    def extra_repr(self) -> str:
        return f"decay={self.decay}, warmup={self.warmup}"

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        ema_params = list(self.module.parameters())
        params = [p.detach() for p in model.parameters()]
        if self._count is None:
            self._count = int(self.num_updates)
        t = self._count
        decay = min(self.decay, (1 + t) / (10 + t)) if self.warmup else self.decay
        if ema_params:  # torch's EMA update: one fused lerp over all parameters
            get_ema_multi_avg_fn(decay)(ema_params, params, None)
        self._count += 1
        self.num_updates.fill_(self._count)
        for ema_buf, buf in zip(self.module.buffers(), model.buffers()):
            ema_buf.copy_(buf)

    def forward(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        # The average is only ever evaluated. Its mode flag follows the task's (a module left in eval
        # mode makes Lightning warn at the start of training), so switch to eval mode per call.
        was_training = self.module.training
        self.module.eval()
        try:
            return self.module(*args, **kwargs)
        finally:
            self.module.train(was_training)
