"""Penalties on a recurrent network's activations (AWD-LSTM's AR and TAR; Merity et al., 2017).

Unlike weight penalties these need the activations of the current batch, which the task passes
as context: :class:`regkit.tasks.LanguageModel` calls
``self.penalty_loss(outputs=..., dropped_outputs=...)`` with the last RNN layer's outputs before
and after output dropout, batch-first ``(N, T, H)``.
"""
from __future__ import annotations

from typing import Any, Optional

import torch
from torch import nn

from regkit.components.penalties import Penalty
from regkit.registry import register


def _context(name: str, key: str, context: dict[str, Any]) -> torch.Tensor:
    value = context.get(key)
    if value is None:
        raise ValueError(
            f"penalty {name!r} needs the activations as context ({key}=...); use it with a task that "
            f"passes them, e.g. regkit.tasks.LanguageModel (got context keys: {sorted(context) or 'none'})"
        )
    return value


@register("penalty", "ar")
class ActivationRegularization(Penalty):
    """AR: strength * mean squared activation of the RNN's dropped outputs (Merity et al., 2017).

    Keeps hidden activations small. AWD-LSTM uses strength 2 on the last layer's outputs after
    output dropout, so dropped units do not count.

    Args:
        strength: multiplier (AWD-LSTM's alpha).
        key: context entry holding the activations.

    Shape:
        Context ``dropped_outputs``: ``(N, T, H)`` (any shape works: the mean is over all elements).
    """

    def __init__(self, strength: float = 2.0, key: str = "dropped_outputs") -> None:
        super().__init__(strength)
        self.key = key

    def forward(self, module: Optional[nn.Module] = None, **context: Any) -> torch.Tensor:
        h = _context("ar", self.key, context)
        return self.strength * h.pow(2).mean()


@register("penalty", "tar")
class TemporalActivationRegularization(Penalty):
    """TAR: strength * mean squared change of the raw RNN outputs between time steps (Merity et al., 2017).

    Penalises hidden states that jump from one step to the next. AWD-LSTM uses strength 1 on the
    last layer's outputs before dropout.

    Args:
        strength: multiplier (AWD-LSTM's beta).
        key: context entry holding the activations.
        time_dim: the time dimension of those activations (1 for regkit's batch-first layout,
            0 for ``(T, N, H)``); a ``time_dim`` entry in the context takes precedence.

    Shape:
        Context ``outputs``: ``(N, T, H)`` (or ``(T, N, H)`` with ``time_dim=0``).
    """

    def __init__(self, strength: float = 1.0, key: str = "outputs", time_dim: int = 1) -> None:
        super().__init__(strength)
        self.key = key
        self.time_dim = time_dim

    def forward(self, module: Optional[nn.Module] = None, **context: Any) -> torch.Tensor:
        h = _context("tar", self.key, context)
        dim = context.get("time_dim", self.time_dim)
        steps = h.size(dim)
        if steps < 2:
            return h.new_zeros(())
        diff = h.narrow(dim, 1, steps - 1) - h.narrow(dim, 0, steps - 1)
        return self.strength * diff.pow(2).mean()
