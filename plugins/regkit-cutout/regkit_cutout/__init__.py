"""Cutout for regkit: zero a random square patch of every training image (DeVries & Taylor, 2017)."""
from __future__ import annotations

import math
from typing import ClassVar, Optional

import torch
from torch import nn

from regkit import register
from regkit.components import FEATURES, MAPS, Layouts

__version__ = "0.1.0"
__all__ = ["Cutout", "cutout"]


def cutout(images: torch.Tensor, size: int, p: float = 1.0, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Zero a ``size`` x ``size`` square of each image, the same square in every channel.

    The square's centre is uniform over the image, so near the border part of the square falls
    outside and less is cut, as in the paper. Each image is cut with probability ``p``.
    ``images`` is ``(N, C, H, W)`` or ``(N, H, W)``.
    """
    if images.dim() not in (3, 4):
        raise ValueError(f"cutout expects (N, C, H, W) or (N, H, W) images, got shape {tuple(images.shape)}")
    n, h, w = images.shape[0], images.shape[-2], images.shape[-1]
    device = images.device
    cy = torch.randint(h, (n, 1, 1), device=device, generator=generator)
    cx = torch.randint(w, (n, 1, 1), device=device, generator=generator)
    top, left = cy - size // 2, cx - size // 2  # the square is [top, top + size) x [left, left + size)
    ys = torch.arange(h, device=device).view(1, h, 1)
    xs = torch.arange(w, device=device).view(1, 1, w)
    inside = (ys >= top) & (ys < top + size) & (xs >= left) & (xs < left + size)
    if p < 1.0:
        inside &= (torch.rand(n, 1, 1, device=device, generator=generator) < p)
    keep = (~inside).to(images.dtype)
    return images * (keep.unsqueeze(1) if images.dim() == 4 else keep)


@register("regularizer", "cutout")
class Cutout(nn.Module):
    """Zero a random size x size square of each training image (DeVries & Taylor, 2017, "Cutout").

    The centre of the square is uniform over the image (the square may be partly outside it) and
    the cut is shared by all channels; nothing is rescaled. Identity in eval mode. In a network's
    input slot it regularizes like data augmentation; on feature maps it acts like a single-block
    DropBlock.

    Args:
        size: side of the square in pixels (the paper: 16 on CIFAR-10, 8 on CIFAR-100; 8 suits 28x28 MNIST).
        p: probability that an image is cut at all.
        image_shape: ``[C, H, W]`` or ``[H, W]`` to view flattened ``(N, F)`` inputs (e.g. the
            input slot of an MLP) as images; null views a square ``F`` as ``1 x sqrt(F) x sqrt(F)``.

    Shape:
        Input: ``(N, C, H, W)``, ``(N, H, W)`` or flattened ``(N, F)``. Output: same as input.
    """

    # Not a regkit.StochasticRegularizer: an input augmentation, which MC dropout leaves off at
    # predict time.
    layouts: ClassVar[Layouts] = {MAPS: {}, FEATURES: {}}  # images, or flattened images (an MLP's input slot)
    mask_shared_over = ("channel",)  # the same square in every channel

    def __init__(self, size: int = 8, p: float = 1.0, image_shape: Optional[list[int]] = None) -> None:
        super().__init__()
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {p}")
        if image_shape is not None and len(image_shape) not in (2, 3):
            raise ValueError(f"image_shape is [C, H, W] or [H, W], got {image_shape}")
        self.size, self.p = int(size), float(p)
        self.image_shape = list(image_shape) if image_shape is not None else None

    def extra_repr(self) -> str:
        return f"size={self.size}, p={self.p}" + (f", image_shape={self.image_shape}" if self.image_shape else "")

    def _as_images(self, x: torch.Tensor) -> torch.Tensor:
        if self.image_shape is not None:
            return x.reshape(x.shape[0], *self.image_shape)
        side = math.isqrt(x.shape[1])
        if side * side != x.shape[1]:
            raise ValueError(
                f"cutout got flattened inputs of {x.shape[1]} features, not a square image; set image_shape"
            )
        return x.reshape(x.shape[0], side, side)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if x.dim() == 2:
            return cutout(self._as_images(x), self.size, self.p).reshape(x.shape)
        return cutout(x, self.size, self.p)
