"""Normalization layers (kind ``norm``): batch norm, ghost batch norm and layer norm. All take
channel-first ``(N, C, *)`` input and ``num_features = C`` from the network slot, so any of them
can fill any norm slot."""
from __future__ import annotations

from typing import Literal, Optional

import torch
import torch.nn.functional as F
from torch import nn

from regkit.registry import register


# Every batch-norm class torch has, for code that asks whether a model has one (regkit's are
# BatchNorm1d subclasses). The lazy ones become BatchNorm1d/2d/3d at their first forward.
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm,
               nn.LazyBatchNorm1d, nn.LazyBatchNorm2d, nn.LazyBatchNorm3d)


def check_channel_first(x: torch.Tensor) -> None:
    if x.dim() < 2:
        raise ValueError(f"batch_norm expects (N, C, *) input, got shape {tuple(x.shape)}")


@register("norm", "batch_norm")
class BatchNorm(nn.BatchNorm1d):
    """Batch normalization over the channel axis of (N, C), (N, C, L), (N, C, H, W) or (N, C, D, H, W)
    inputs; one layer for every rank (Ioffe & Szegedy, 2015).

    A subclass of torch's ``BatchNorm1d`` (same parameters, buffers and state-dict keys), so that
    what recognizes torch's batch norms recognizes it too (``--trainer.sync_batchnorm`` turns it
    into ``SyncBatchNorm``). Its ``forward`` is torch's batch norm over ``F.batch_norm`` with a rank
    check of its own, since ``BatchNorm1d``'s takes 2D and 3D input only.

    Args:
        num_features: C, filled in by the network slot.
        eps: added to the variance for stability.
        momentum: running-statistics update rate.
        affine: learn a per-channel scale and shift.
        track_running_stats: keep running mean/variance for eval mode.

    Shape:
        Input ``(N, C, *)``. Output: same.

    Examples:
        >>> bn = BatchNorm(16)
        >>> bn(torch.randn(8, 16, 5, 5)).shape
        torch.Size([8, 16, 5, 5])
        >>> list(bn.state_dict())  # torch's batch-norm state: checkpoints load either way
        ['weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked']
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_channel_first(x)
        # As torch's batch norm: momentum None is a cumulative average over the batches tracked;
        # batch statistics in training, and in eval mode too when no running statistics are kept.
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:
                factor = 1.0 / float(self.num_batches_tracked)
        use_batch_stats = self.training or (self.running_mean is None and self.running_var is None)
        keep = not self.training or self.track_running_stats  # buffers are updated (or used) only then
        return F.batch_norm(
            x, self.running_mean if keep else None, self.running_var if keep else None, self.weight, self.bias,
            use_batch_stats, factor, self.eps,
        )


@register("norm", "ghost_batch_norm")
class GhostBatchNorm(BatchNorm):
    """Batch norm with statistics of small "ghost" batches within the batch (Hoffer et al., 2017).

    Keeps the regularizing noise of small batches when training with large ones ("Train longer,
    generalize better"), ``virtual_batch_size`` samples per ghost batch.

    In training each ghost batch is normalized with its own mean and variance (all ghost batches at
    once when the batch splits evenly); the running statistics are updated once per step with the
    mean of the ghost batches' statistics. Eval mode is plain batch norm with the running statistics.

    Args:
        num_features: C, filled in by the network slot.
        virtual_batch_size: samples per ghost batch (the paper used 128 with batches of 4096).
        eps: added to the variance for stability.
        momentum: running-statistics update rate (None: cumulative average).
        affine: learn a per-channel scale and shift.
        track_running_stats: keep running mean/variance for eval mode.

    Shape:
        Input ``(N, C)``, ``(N, C, L)``, ``(N, C, H, W)`` or ``(N, C, D, H, W)``. Output: same.
        A batch of at most ``virtual_batch_size`` samples is ordinary batch norm.
    """

    def __init__(
        self,
        num_features: int,
        virtual_batch_size: int = 32,
        eps: float = 1e-5,
        momentum: Optional[float] = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
    ) -> None:
        if virtual_batch_size < 1:
            raise ValueError(f"virtual_batch_size must be >= 1, got {virtual_batch_size}")
        super().__init__(num_features, eps, momentum, affine, track_running_stats)  # type: ignore[arg-type]
        self.virtual_batch_size = virtual_batch_size

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, virtual_batch_size={self.virtual_batch_size}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_channel_first(x)
        n = x.shape[0]
        ghosts = -(-n // self.virtual_batch_size)
        if not self.training or ghosts == 1:
            return super().forward(x)
        if n % ghosts:  # uneven split: normalize chunk by chunk
            chunks = torch.tensor_split(x, ghosts)
            means, vars_, outs = [], [], []
            for chunk in chunks:
                out, mean, var = self._normalize(chunk.unsqueeze(0))
                outs.append(out.squeeze(0))
                means.append(mean.squeeze(0))
                vars_.append(var.squeeze(0))
            out = torch.cat(outs)
            mean, var = torch.stack(means), torch.stack(vars_)
            count = min(c.shape[0] for c in chunks) * x[0, 0].numel()
        else:
            out, mean, var = self._normalize(x.reshape(ghosts, n // ghosts, *x.shape[1:]))
            out = out.reshape(x.shape)
            count = (n // ghosts) * x[0, 0].numel()
        if self.track_running_stats:
            self._update_running_stats(mean.mean(0), var.mean(0), count)
        return out

    def _normalize(self, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Normalize ``g`` (G, n, C, *) per ghost batch and channel; returns out and the (G, C)
        batch mean and biased variance. Statistics in float32 so bf16 inputs stay accurate."""
        dims = [1] + list(range(3, g.dim()))
        gf = g.float()
        var, mean = torch.var_mean(gf, dim=dims, keepdim=True, correction=0)
        shape = (1, 1, -1) + (1,) * (g.dim() - 3)
        out = (gf - mean) * torch.rsqrt(var + self.eps)
        if self.affine:
            out = out * self.weight.float().view(shape) + self.bias.float().view(shape)
        return out.to(g.dtype), mean.flatten(1), var.flatten(1)

    @torch.no_grad()
    def _update_running_stats(self, mean: torch.Tensor, var: torch.Tensor, count: int) -> None:
        tracked, running_mean, running_var = self.num_batches_tracked, self.running_mean, self.running_var
        if tracked is None or running_mean is None or running_var is None:  # track_running_stats=False
            return
        tracked.add_(1)
        momentum = 1.0 / float(tracked) if self.momentum is None else self.momentum
        unbiased = var * (count / max(count - 1, 1))
        running_mean.lerp_(mean.to(running_mean.dtype), momentum)
        running_var.lerp_(unbiased.to(running_var.dtype), momentum)


LayerNormOver = Literal["channels", "last", "all"]


@register("norm", "layer_norm")
class LayerNorm(nn.Module):
    """Normalize each sample by its own mean and variance, not the batch's (Ba et al., 2016).

    "Layer Normalization"; the same in training and eval mode.

    ``over`` picks the axes; the default makes it a drop-in replacement for ``batch_norm`` in any
    slot, since slots are channel-first like batch norm:

    - ``channels``: over C of ``(N, C, *)`` at every position (ConvNeXt's LayerNorm2d; for ``(N, C)``
      the same as ``last``).
    - ``last``: over the last axis, which must be C: ``(N, *, C)`` (transformers, ``(N, T, C)``).
    - ``all``: over all of ``(C, *)`` per sample, with a per-channel affine (the paper's form for
      conv nets; GroupNorm with one group).

    Args:
        num_features: C, filled in by the network slot.
        eps: added to the variance for stability.
        affine: learn a per-channel scale and shift.
        over: which axes to normalize over (see above).

    Shape:
        Input ``(N, C, *)`` (``over`` channels or all) or ``(N, *, C)`` (``over`` last). Output: same.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, affine: bool = True, over: LayerNormOver = "channels") -> None:
        super().__init__()
        if over not in ("channels", "last", "all"):
            raise ValueError(f"over must be 'channels', 'last' or 'all', got {over!r}")
        self.num_features, self.eps, self.affine, self.over = num_features, eps, affine, over
        if affine:
            self.weight = nn.Parameter(torch.ones(num_features))
            self.bias = nn.Parameter(torch.zeros(num_features))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, affine={self.affine}, over={self.over!r}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.over == "all":
            return F.group_norm(x, 1, self.weight, self.bias, self.eps)
        if self.over == "last" or x.dim() == 2:
            return F.layer_norm(x, (self.num_features,), self.weight, self.bias, self.eps)
        # channels of (N, C, *): move C last for the fused kernel and back (views, no copy)
        out = F.layer_norm(x.movedim(1, -1), (self.num_features,), self.weight, self.bias, self.eps)
        return out.movedim(-1, 1)
