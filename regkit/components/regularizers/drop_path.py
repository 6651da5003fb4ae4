"""Drop path / stochastic depth: drop a residual branch for whole samples, plus the linear per-layer
rate rule of Huang et al. (2016)."""
from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from regkit.components.layouts import ACTIVATIONS, Layouts
from regkit.registry import register
from regkit.components.regularizers.base import DropoutBase, is_zero
from regkit.errors import check

__all__ = ["DropPath", "drop_path", "drop_path_rates", "set_drop_path_rates"]


def drop_path(x: torch.Tensor, p: float | torch.Tensor, training: bool = True, scale_by_keep: bool = True) -> torch.Tensor:
    """Zero whole samples of ``x`` (the first axis) with probability ``p``; kept samples are scaled
    by 1/(1-p) when ``scale_by_keep`` (else left as they are, the original stochastic-depth form,
    which then needs test-time scaling by 1-p)."""
    if not training or is_zero(p):
        return x
    mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(1.0 - p)
    if scale_by_keep:
        mask.div_(1.0 - p)
    return x * mask


@register("regularizer", "drop_path")
class DropPath(DropoutBase):
    """Drop path / stochastic depth: zero a whole sample with probability p (Huang et al., 2016).

    Put on a residual branch (``x + drop_path(f(x))``) it skips that block for the sample ("Deep
    Networks with Stochastic Depth"; Larsson et al., 2017, FractalNet's drop-path).

    Args:
        p: probability of dropping a sample's path, 0 <= p < 1.
        scale_by_keep: scale kept samples by 1/(1-p) so eval mode needs no rescaling.

    Shape:
        Input ``(N, *)``, one draw per sample shared over all other axes. Output: same as input.
        Identity in eval mode. Use :func:`set_drop_path_rates` to give a stack of blocks the
        linear per-layer rates of the paper.
    """

    layouts: ClassVar[Layouts] = ACTIVATIONS
    mask_shared_over = ("feature", "channel", "position")

    def __init__(self, p: float = 0.1, scale_by_keep: bool = True) -> None:
        super().__init__(p)
        self.scale_by_keep = scale_by_keep

    def extra_repr(self) -> str:
        return f"p={self.p}" + ("" if self.scale_by_keep else ", scale_by_keep=False")

    def drop(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.drop_rate(), True, self.scale_by_keep)


def drop_path_rates(max_rate: float, depth: int, min_rate: float = 0.0) -> list[float]:
    """Linear decay rule of stochastic depth: block l of L (1-based) drops with rate
    ``min_rate + (max_rate - min_rate) * l / L``, so the last block drops with ``max_rate``."""
    check(locals(), rate="max_rate min_rate", positive="depth")
    return [min_rate + (max_rate - min_rate) * (i + 1) / depth for i in range(depth)]


def set_drop_path_rates(model: nn.Module, max_rate: float, min_rate: float = 0.0) -> list[float]:
    """Give the :class:`DropPath` modules of ``model``, in registration (forward) order, the linear
    per-layer rates of :func:`drop_path_rates`; returns the rates set."""
    layers = [m for m in model.modules() if isinstance(m, DropPath)]
    if not layers:
        raise ValueError("set_drop_path_rates: the model has no DropPath module")
    rates = drop_path_rates(max_rate, len(layers), min_rate)
    for layer, rate in zip(layers, rates):
        layer.p = rate
    return rates
