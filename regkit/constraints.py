"""Constraints (kind ``constraint``): projections applied to weights after each optimizer step."""
from __future__ import annotations

import torch
from torch import nn

from regkit.penalties import select_parameters
from regkit.registry import register


class Constraint:
    """Projects some of a module's weights back into an allowed set; ``apply`` runs after a step."""

    def apply(self, module: nn.Module) -> None:  # pragma: no cover
        raise NotImplementedError

    def __call__(self, module: nn.Module) -> None:
        with torch.no_grad():
            self.apply(module)


@register("constraint", "max_norm")
class MaxNorm(Constraint):
    """Rescale each unit's incoming weight vector to L2 norm <= max_norm (Srivastava et al., 2014).

    A unit is a row of a Linear weight (out, in) or an output channel of a conv kernel (out, in, ...).

    Args:
        max_norm: the bound c (the dropout paper used 3 to 4).
        include: shell pattern on parameter names.
        exclude: shell pattern of names to leave out.
    """

    def __init__(self, max_norm: float = 3.0, include: str = "*weight", exclude: str = "") -> None:
        if max_norm <= 0:
            raise ValueError(f"max_norm must be > 0, got {max_norm}")
        self.max_norm, self.include, self.exclude = float(max_norm), include, exclude

    def apply(self, module: nn.Module) -> None:
        for _, param in select_parameters(module, self.include, self.exclude, min_dim=2):
            param.copy_(torch.renorm(param, p=2, dim=0, maxnorm=self.max_norm))

    def __repr__(self) -> str:
        return f"MaxNorm(max_norm={self.max_norm}, include={self.include!r})"
