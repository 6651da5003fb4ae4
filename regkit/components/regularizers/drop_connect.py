"""DropConnect: dropout on weights instead of activations (Wan et al., 2013).

Two forms: ``drop_connect`` in the registry is a ``Linear`` whose weight is masked in its forward
pass (the weight stays a plain ``weight`` parameter, so optimizers, ``state_dict``, ``max_norm``
and ``torch.func.functional_call`` see it unchanged); :class:`DropConnect` is the same mask as a
``torch.nn.utils.parametrize`` parametrization for any existing layer (:func:`apply_drop_connect`).
"""
from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from regkit.components.layouts import Layouts
from regkit.registry import register
from regkit.components.regularizers.base import DropoutBase, ScheduledRate, StochasticRegularizer
from regkit.components.regularizers.dropout import dropout

__all__ = ["DropConnect", "DropConnectLinear", "apply_drop_connect"]


@register("regularizer", "drop_connect")
class DropConnectLinear(StochasticRegularizer, ScheduledRate, nn.Linear):
    """A Linear layer whose weights are dropped with probability p in training (Wan et al., 2013).

    DropConnect ("Regularization of Neural Networks using DropConnect") with inverted scaling.

    One weight mask is drawn per forward pass and shared by the batch (the paper draws one per
    sample, which costs a (N, out, in) tensor); the bias is not dropped.

    Args:
        in_features: size of each input sample, filled by the owner of the slot.
        out_features: size of each output sample, filled by the owner of the slot.
        p: probability of dropping each weight, 0 <= p < 1.
        bias: learn an additive bias.

    Shape:
        Input ``(*, in_features)``. Output ``(*, out_features)``. A plain Linear in eval mode.
        A layer, not an activation regularizer: build it where a Linear goes; the dropout slots of
        regkit's networks refuse it.
    """

    layouts: ClassVar[Layouts] = {}

    def __init__(self, in_features: int, out_features: int, p: float = 0.5, bias: bool = True) -> None:
        super().__init__(in_features, out_features, bias)
        self.p = p  # a ScheduledRate: a schedule may set it without recompiling a compiled network

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, p={self.p}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight if not self.training or self.rate_is_zero() else dropout(self.weight, self.drop_rate())
        return F.linear(x, weight, self.bias)


class DropConnect(DropoutBase):
    """DropConnect as a parametrization: ``forward(weight)`` returns the weight with elements dropped
    with probability p and the rest scaled by 1/(1-p) in training mode, the weight itself in eval mode.

    Args:
        p: probability of dropping each weight, 0 <= p < 1.
    """

    def drop(self, weight: torch.Tensor) -> torch.Tensor:
        return dropout(weight, self.drop_rate())


def apply_drop_connect(module: nn.Module, p: float = 0.5, names: tuple[str, ...] = ("weight",)) -> nn.Module:
    """Register :class:`DropConnect` on the parameters ``names`` of ``module`` with
    ``torch.nn.utils.parametrize`` (the original stays trainable as ``parametrizations.<name>.original``);
    returns ``module``. It follows ``module.train()`` / ``.eval()`` and MC dropout finds it."""
    for name in names:
        parametrize.register_parametrization(module, name, DropConnect(p))
    return module
