"""Penalties (kind ``penalty``): terms added to the training loss."""
from __future__ import annotations

import fnmatch
import re
from typing import Any, Iterator

import torch
from torch import nn

from regkit.registry import register


def shell_pattern(pattern: str) -> re.Pattern[str]:
    """``pattern`` (shell style, as :func:`fnmatch.fnmatch`) compiled once: a penalty matches
    parameter names with it in its forward pass, where torch.compile traces ``re`` matching but
    not ``fnmatch``'s pattern cache."""
    return re.compile(fnmatch.translate(pattern))


def select_parameters(
    module: nn.Module, include: str | re.Pattern[str] = "*", exclude: str | re.Pattern[str] | None = "", min_dim: int = 2
) -> Iterator[tuple[str, nn.Parameter]]:
    """Parameters whose name matches ``include`` (and not ``exclude``; empty: none excluded), with at
    least ``min_dim`` dimensions: the default picks weight matrices and kernels, not biases or norm
    scales. The patterns are shell-style strings or :func:`shell_pattern` results."""
    keep = shell_pattern(include) if isinstance(include, str) else include
    drop = (shell_pattern(exclude) if exclude else None) if isinstance(exclude, str) else exclude
    for name, param in module.named_parameters():
        if param.dim() < min_dim or not keep.match(name):
            continue
        if drop is not None and drop.match(name):
            continue
        yield name, param


class Penalty(nn.Module):
    """A loss term. ``forward(module, **context)`` returns a scalar already multiplied by its
    strength; context carries what some penalties need (e.g. activations)."""

    def __init__(self, strength: float) -> None:
        super().__init__()
        if strength < 0:
            raise ValueError(f"strength must be >= 0, got {strength}")
        self.strength = float(strength)

    def extra_repr(self) -> str:
        return f"strength={self.strength}"

    def forward(self, module: nn.Module, **context: Any) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError


class ParameterNormPenalty(Penalty):
    """Shared selection logic for penalties on parameter norms."""

    def __init__(self, strength: float, include: str = "*", exclude: str = "", min_dim: int = 2) -> None:
        super().__init__(strength)
        self.include, self.exclude, self.min_dim = include, exclude, min_dim
        self._include, self._exclude = shell_pattern(include), shell_pattern(exclude) if exclude else None

    def norm(self, param: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def forward(self, module: nn.Module, **context: Any) -> torch.Tensor:
        terms = [self.norm(p) for _, p in select_parameters(module, self._include, self._exclude, self.min_dim)]
        if not terms:
            raise ValueError(f"{type(self).__name__}: no parameter matches include={self.include!r}")
        return self.strength * torch.stack(terms).sum()


@register("penalty", "l2")
class L2(ParameterNormPenalty):
    """strength * sum of squared weights (weight decay as a loss term; Krogh & Hertz, 1992).

    Args:
        strength: multiplier of the sum.
        include: shell pattern on parameter names, e.g. ``"*weight"``.
        exclude: shell pattern of names to leave out.
        min_dim: skip parameters with fewer dimensions (2 leaves out biases and norm scales).
    """

    def __init__(self, strength: float = 1e-4, include: str = "*", exclude: str = "", min_dim: int = 2) -> None:
        super().__init__(strength, include, exclude, min_dim)

    def norm(self, param: torch.Tensor) -> torch.Tensor:
        return param.pow(2).sum()


@register("penalty", "l1")
class L1(ParameterNormPenalty):
    """strength * sum of absolute weights, which favours sparse weights (Tibshirani, 1996).

    Args:
        strength: multiplier of the sum.
        include: shell pattern on parameter names.
        exclude: shell pattern of names to leave out.
        min_dim: skip parameters with fewer dimensions.
    """

    def __init__(self, strength: float = 1e-5, include: str = "*", exclude: str = "", min_dim: int = 2) -> None:
        super().__init__(strength, include, exclude, min_dim)

    def norm(self, param: torch.Tensor) -> torch.Tensor:
        return param.abs().sum()
