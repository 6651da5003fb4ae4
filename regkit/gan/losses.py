"""Adversarial losses (kind ``gan_loss``): each gives ``d_loss(real_logits, fake_logits)`` for the
discriminator and ``g_loss(fake_logits)`` for the generator. Logits are raw discriminator outputs;
losses are computed in float32 whatever the autocast precision."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from regkit.registry import register


class GanLoss(nn.Module):
    """Base class: a pair of losses, one minimized by D and one by G."""

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def g_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError


@register("gan_loss", "non_saturating")
class NonSaturating(GanLoss):
    """BCE on logits for D, non-saturating -log D(G(z)) for G (Goodfellow et al., 2014).

    Optional one-sided label smoothing (Salimans et al., 2016).

    ``d_loss = BCE(real, real_label) + BCE(fake, 0)``, ``g_loss = BCE(fake, 1) = softplus(-fake)``.

    Args:
        real_label: target for real samples in D's loss (1.0; 0.9 is one-sided label smoothing).

    Shape:
        Logits (N,). Outputs are scalars (means over the batch).
    """

    def __init__(self, real_label: float = 1.0) -> None:
        super().__init__()
        if not 0.0 < real_label <= 1.0:
            raise ValueError(f"real_label must be in (0, 1], got {real_label}")
        self.real_label = float(real_label)

    def extra_repr(self) -> str:
        return f"real_label={self.real_label}"

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        real_logits, fake_logits = real_logits.float(), fake_logits.float()
        real = F.binary_cross_entropy_with_logits(real_logits, torch.full_like(real_logits, self.real_label))
        fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
        return real + fake

    def g_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        return F.softplus(-fake_logits.float()).mean()


@register("gan_loss", "hinge")
class Hinge(GanLoss):
    """Hinge loss for D, -D(G(z)) for G (Lim & Ye, 2017; Miyato et al., 2018).

    ``d_loss = mean(relu(1 - real)) + mean(relu(1 + fake))``, ``g_loss = -mean(fake)``.

    Shape:
        Logits (N,). Outputs are scalars.
    """

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        return F.relu(1.0 - real_logits.float()).mean() + F.relu(1.0 + fake_logits.float()).mean()

    def g_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        return -fake_logits.float().mean()


@register("gan_loss", "wasserstein")
class Wasserstein(GanLoss):
    """Wasserstein critic loss: D minimizes D(fake) - D(real), G maximizes D(fake) (Arjovsky et al., 2017).

    ``d_loss = mean(fake) - mean(real)``, ``g_loss = -mean(fake)``. Needs a Lipschitz critic: pair it with the ``gradient_penalty``
    penalty (Gulrajani et al., 2017) or spectral norm, and usually ``n_critic: 5``.

    Shape:
        Logits (N,). Outputs are scalars.
    """

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        return fake_logits.float().mean() - real_logits.float().mean()

    def g_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        return -fake_logits.float().mean()
