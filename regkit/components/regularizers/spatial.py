"""Dropout for feature maps, whose neighbouring elements are strongly correlated so that dropping
single elements barely regularizes: whole channels (spatial dropout) or contiguous blocks (DropBlock).

Layout: regkit, like torch, is channel-first: ``(N, C, L)``, ``(N, C, H, W)``, ``(N, C, D, H, W)``.
Keras' ``SpatialDropout1D`` takes ``(N, T, C)`` (channel-last); pass ``channels_last=True`` for that
layout. Torch's ``memory_format=torch.channels_last`` only changes strides, not the logical
``(N, C, H, W)`` order, so it needs no switch.
"""
from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from regkit.components.layouts import FEATURES, MAPS, SEQUENCE, Layouts
from regkit.registry import register
from regkit.components.regularizers.base import DropoutBase, is_zero
from regkit.errors import check

__all__ = ["DropBlock", "SpatialDropout", "drop_block", "spatial_dropout"]


def spatial_dropout(x: torch.Tensor, p: float | torch.Tensor, training: bool = True, channels_last: bool = False) -> torch.Tensor:
    """Zero whole channels of ``x`` with probability ``p`` (one draw per sample and channel, shared
    over every spatial/temporal position) and scale the kept ones by 1/(1-p)."""
    if not training or is_zero(p):
        return x
    if x.dim() < 2:
        raise ValueError(f"spatial_dropout expects (N, C, *) or (N, *, C) input, got shape {tuple(x.shape)}")
    if channels_last:
        shape = (x.shape[0],) + (1,) * (x.dim() - 2) + (x.shape[-1],)
    else:
        shape = x.shape[:2] + (1,) * (x.dim() - 2)
    mask = x.new_empty(shape).bernoulli_(1.0 - p).div_(1.0 - p)
    return x * mask


@register("regularizer", "spatial_dropout")
class SpatialDropout(DropoutBase):
    """Drop whole channels of 1d/2d/3d feature maps (Tompson et al., 2015, SpatialDropout).

    One draw per sample and channel, constant over the spatial or temporal axes ("Efficient Object
    Localization Using Convolutional Networks"); kept channels are scaled by 1/(1-p).

    Args:
        p: probability of dropping a channel, 0 <= p < 1.
        channels_last: the input is ``(N, *, C)`` (Keras layout, e.g. ``(N, T, C)`` sequences)
            instead of ``(N, C, *)``.

    Shape:
        Input ``(N, C, L)``, ``(N, C, H, W)`` or ``(N, C, D, H, W)``; with ``channels_last``
        ``(N, L, C)``, ``(N, H, W, C)``, ``(N, D, H, W, C)``. A 2-D ``(N, C)`` input has no spatial
        axis and gets plain dropout. Output: same as input. Identity in eval mode. A sequence slot
        ``(N, T, C)`` sets ``channels_last`` (Keras' SpatialDropout1D: one mask per channel over T).
    """

    layouts: ClassVar[Layouts] = {FEATURES: {}, MAPS: {}, SEQUENCE: {"channels_last": True}}
    mask_shared_over = ("position",)

    def __init__(self, p: float = 0.5, channels_last: bool = False) -> None:
        super().__init__(p)
        self.channels_last = channels_last

    def extra_repr(self) -> str:
        return f"p={self.p}, channels_last=True" if self.channels_last else f"p={self.p}"

    def drop(self, x: torch.Tensor) -> torch.Tensor:
        return spatial_dropout(x, self.drop_rate(), True, self.channels_last)


def drop_block(
    x: torch.Tensor,
    p: float | torch.Tensor,
    block_size: int,
    training: bool = True,
    share_channels: bool = False,
) -> torch.Tensor:
    """Zero contiguous ``block_size``-wide blocks of the feature maps of ``x`` (N, C, *spatial) so
    that about a fraction ``p`` of each map is dropped, then rescale by total/kept units of the mask
    (Ghiasi et al., 2018), so the mean activation is kept.

    Block seeds (top-left corners, so even sizes need no special case) are drawn only where the
    whole block fits, as in the paper; blocks larger than a map are clipped to it. ``p`` may be a
    tensor (e.g. a scheduled rate in a buffer), so changing it does not retrigger torch.compile.
    """
    if not training or (isinstance(p, float) and p == 0.0):
        return x
    spatial = x.shape[2:]
    if not 1 <= len(spatial) <= 3:
        raise ValueError(f"drop_block expects (N, C, L), (N, C, H, W) or (N, C, D, H, W), got {tuple(x.shape)}")
    block = [min(block_size, s) for s in spatial]
    valid = [s - b + 1 for s, b in zip(spatial, block)]
    area, block_area, valid_area = 1, 1, 1
    for s, b, v in zip(spatial, block, valid):
        area, block_area, valid_area = area * s, block_area * b, valid_area * v
    # The paper's seed rate p * area / (block_area * valid_area) ignores overlapping blocks and drops
    # 5-10 % fewer units than asked. Treat each unit as covered by the mean number of seed positions
    # k = block_area * valid_area / area and solve 1 - (1 - gamma)^k = p instead: exact for
    # block_size 1 and for a block as large as the map, within a few % of p otherwise.
    gamma = 1.0 - (1.0 - p) ** (area / (block_area * valid_area))
    seeds_shape = (x.shape[0], 1 if share_channels else x.shape[1], *valid)
    seeds = (torch.rand(seeds_shape, device=x.device, dtype=torch.float32) < gamma).to(torch.float32)
    # A seed at i drops [i, i + b): pad b - 1 on both sides and max-pool with a b-wide window.
    pad = [b - 1 for b in reversed(block) for _ in (0, 1)]
    pool = (F.max_pool1d, F.max_pool2d, F.max_pool3d)[len(spatial) - 1]
    dropped = pool(F.pad(seeds, pad), kernel_size=block, stride=1)
    keep = 1.0 - dropped
    scale = keep.numel() / keep.sum().clamp_min(1.0)
    return x * (keep * scale).to(x.dtype)


@register("regularizer", "drop_block")
class DropBlock(DropoutBase):
    """Drop contiguous square blocks of convolutional feature maps (Ghiasi et al., 2018, DropBlock).

    Kept units are rescaled by (total / kept) units of the mask, as in the paper.

    The rate can follow a schedule: ``warmup_steps > 0`` raises it linearly from 0 to ``p`` over
    that many training forward passes (the paper's linear schedule; the step counter is a buffer,
    so it is saved in checkpoints and does not advance under ``torch.no_grad``), and ``p`` can be
    set at any time (``module.p = 0.05``, e.g. from a callback).

    Args:
        p: target fraction of each feature map to drop, 0 <= p < 1 (the paper's 1 - keep_prob;
            0.1 with block_size 7 on ResNet-50).
        block_size: side of a dropped block, odd or even; clipped to maps smaller than it.
            ``block_size=1`` is plain dropout with count-based rescaling.
        warmup_steps: training steps over which the rate ramps from 0 to ``p`` (0: always ``p``).
        share_channels: one block mask for all channels of a sample instead of one per channel.

    Shape:
        Input ``(N, C, H, W)`` (also ``(N, C, L)`` and ``(N, C, D, H, W)``; H != W is fine).
        Output: same as input. Identity in eval mode. Fits feature-map slots only; a slot of
        other layout refuses it when the network is built.
    """

    layouts: ClassVar[Layouts] = {MAPS: {}}
    step: torch.Tensor  # a buffer (nn.Module.__getattr__ alone would type it Tensor | Module)

    def __init__(self, p: float = 0.1, block_size: int = 7, warmup_steps: int = 0, share_channels: bool = False) -> None:
        super().__init__(p)
        check(locals(), positive="block_size", non_negative="warmup_steps")
        self.block_size, self.warmup_steps, self.share_channels = block_size, warmup_steps, share_channels
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    @property
    def mask_shared_over(self) -> tuple[str, ...]:
        return ("channel",) if self.share_channels else ()

    def current_rate(self) -> torch.Tensor | float:
        """The rate used by the next training forward pass."""
        if self.warmup_steps == 0:
            return self.drop_rate()
        return self.drop_rate() * (self.step.float() / self.warmup_steps).clamp(max=1.0)

    def extra_repr(self) -> str:
        extra = f", warmup_steps={self.warmup_steps}" if self.warmup_steps else ""
        extra += ", share_channels=True" if self.share_channels else ""
        return f"p={self.p}, block_size={self.block_size}{extra}"

    def drop(self, x: torch.Tensor) -> torch.Tensor:
        rate = self.current_rate()
        if self.warmup_steps and torch.is_grad_enabled():
            self.step.add_(1)
        return drop_block(x, rate, self.block_size, True, self.share_channels)
