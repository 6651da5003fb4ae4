"""Standard (inverted) dropout."""
from __future__ import annotations

import torch
from torch import nn

from regkit.registry import register


def check_rate(p: float, name: str = "p") -> float:
    """Validate a drop probability: 0 <= p < 1 (p = 1 would drop everything and divide by zero)."""
    if not isinstance(p, (int, float)) or isinstance(p, bool) or not 0.0 <= float(p) < 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1), got {p!r}")
    return float(p)


@register("regularizer", "dropout")
class Dropout(nn.Dropout):
    """Zero each element with probability p and scale the rest by 1/(1-p) (Srivastava et al., 2014).

    Args:
        p: drop probability, 0 <= p < 1.
        inplace: overwrite the input instead of allocating the output.

    Shape:
        Input: any. Output: same as input. Identity in eval mode.
    """

    def __init__(self, p: float = 0.5, inplace: bool = False) -> None:
        super().__init__(check_rate(p), inplace)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        return super().forward(x)
