"""Discriminator gradient penalties (kind ``penalty``), called by the GAN task as
``penalty(discriminator, real=..., fake=...)``.

Both run the discriminator outside autocast, in float32: the penalty differentiates D's output with
respect to its input and backpropagates through that gradient (double backward), which is where
float16 under- and overflows. With ``interval: k`` the task applies the penalty every k-th D step,
multiplied by k so its average strength is unchanged (lazy regularization, Karras et al., 2020).
"""
from __future__ import annotations

from typing import Any, Optional

import torch
from torch import nn

from regkit.components.penalties import Penalty
from regkit.registry import register


def _logits_fp32(discriminator: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.autocast(device_type=x.device.type, enabled=False):
        return discriminator(x.float())


def input_gradient(discriminator: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """d(sum of D(x))/dx, with the graph kept so a penalty on it trains D."""
    x = x.detach().float().requires_grad_(True)
    logits = _logits_fp32(discriminator, x)
    (grad,) = torch.autograd.grad(logits.sum(), x, create_graph=True)
    return grad


class GradientPenalty(Penalty):
    """Shared part: strength and the lazy-regularization interval."""

    def __init__(self, strength: float, interval: int = 1) -> None:
        super().__init__(strength)
        if interval < 1:
            raise ValueError(f"interval must be >= 1, got {interval}")
        self.interval = int(interval)

    def extra_repr(self) -> str:
        return f"strength={self.strength}, interval={self.interval}"


@register("penalty", "r1")
class R1(GradientPenalty):
    """R1 penalty strength/2 * E||grad_x D(x)||^2 on real data (Mescheder et al., 2018).

    Penalizes D's input gradient on real data only.

    Args:
        strength: gamma of the paper (10 for MNIST-sized data with the non-saturating loss).
        interval: apply every ``interval`` D steps, scaled by ``interval`` (lazy regularization).

    Shape:
        Context ``real`` (N, C, H, W). Output: scalar.
    """

    def __init__(self, strength: float = 10.0, interval: int = 1) -> None:
        super().__init__(strength, interval)

    def forward(self, module: nn.Module, real: Optional[torch.Tensor] = None, **context: Any) -> torch.Tensor:
        if real is None:
            raise ValueError("r1 needs the real batch: penalty(discriminator, real=...)")
        grad = input_gradient(module, real)
        return 0.5 * self.strength * grad.pow(2).flatten(1).sum(1).mean()


@register("penalty", "gradient_penalty")
class WGANGradientPenalty(GradientPenalty):
    """WGAN-GP penalty strength * E(||grad D(x_hat)||_2 - 1)^2 (Gulrajani et al., 2017).

    Taken at random points ``x_hat = e * real + (1 - e) * fake``, ``e ~ U[0, 1]`` per sample.

    Args:
        strength: lambda of the paper (10).
        interval: apply every ``interval`` D steps, scaled by ``interval`` (lazy regularization).
        target: the gradient norm aimed at (1 for a 1-Lipschitz critic).

    Shape:
        Context ``real``, ``fake`` (N, C, H, W). Output: scalar.
    """

    def __init__(self, strength: float = 10.0, interval: int = 1, target: float = 1.0) -> None:
        super().__init__(strength, interval)
        self.target = float(target)

    def forward(
        self,
        module: nn.Module,
        real: Optional[torch.Tensor] = None,
        fake: Optional[torch.Tensor] = None,
        **context: Any,
    ) -> torch.Tensor:
        if real is None or fake is None:
            raise ValueError("gradient_penalty needs both batches: penalty(discriminator, real=..., fake=...)")
        real, fake = real.detach().float(), fake.detach().float()
        e = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), device=real.device)
        grad = input_gradient(module, e * real + (1 - e) * fake)
        norm = grad.flatten(1).norm(2, dim=1)
        return self.strength * (norm - self.target).pow(2).mean()
