"""Normalization layers (kind ``norm``)."""
from __future__ import annotations

import torch
from torch import nn

from regkit.registry import register


@register("norm", "batch_norm")
class BatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch normalization over the channel axis of (N, C), (N, C, L), (N, C, H, W) or (N, C, D, H, W)
    inputs; the 1d/2d/3d variant is picked from the input (Ioffe & Szegedy, 2015).

    Args:
        num_features: C, filled in by the network slot.
        eps: added to the variance for stability.
        momentum: running-statistics update rate.
        affine: learn a per-channel scale and shift.
        track_running_stats: keep running mean/variance for eval mode.
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
    ) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats)

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"batch_norm expects (N, C, *) input, got shape {tuple(x.shape)}")
