"""What every layer regularizer shares: the drop-rate check, the ``StochasticRegularizer`` marker that
MC dropout looks for, and a small ``_DropoutNd``-style base class (rate validation, ``extra_repr``,
identity in eval mode or at rate 0)."""
from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from regkit import registry


def check_rate(p: float, name: str = "p") -> float:
    """Validate a drop probability: 0 <= p < 1 (p = 1 would drop everything and divide by zero)."""
    if not isinstance(p, (int, float)) or isinstance(p, bool) or not 0.0 <= float(p) < 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1), got {p!r}")
    return float(p)


class StochasticRegularizer:
    """Marker mixin: the module is random in training mode and deterministic in eval mode.

    MC dropout (:mod:`regkit.mc_dropout`) switches exactly these modules (and torch's own
    ``nn.Dropout`` family) back to training mode at predict time. A third-party module can inherit
    this mixin, or set a class attribute ``stochastic_regularizer = True`` without inheriting it
    (``False`` opts a registered regularizer out, e.g. one that is deterministic).
    """

    stochastic_regularizer: ClassVar[bool] = True


def is_stochastic(module: nn.Module, registered: set[type] | None = None) -> bool:
    """Whether MC dropout should keep ``module`` in training mode.

    True for modules marked with :class:`StochasticRegularizer` (or the ``stochastic_regularizer``
    attribute), for torch's ``_DropoutNd`` family (Dropout, Dropout1d/2d/3d, AlphaDropout,
    FeatureAlphaDropout), and for any module whose class is registered as a ``regularizer``
    (so plugins are covered without knowing about this marker). ``registered`` caches that set
    when many modules are checked.
    """
    flag = getattr(type(module), "stochastic_regularizer", None)
    if flag is not None:
        return bool(flag)
    if isinstance(module, nn.modules.dropout._DropoutNd):
        return True
    classes = registered_regularizer_classes() if registered is None else registered
    return type(module) in classes


def registered_regularizer_classes() -> set[type]:
    return {e.obj for e in registry.entries("regularizer") if isinstance(e.obj, type)}


class DropoutBase(StochasticRegularizer, nn.Module):
    """Base of regkit's dropout-like layers, like torch's ``_DropoutNd``: holds the validated rate
    ``p`` (settable, e.g. by a schedule), shows it in ``print(model)``, and returns the input itself
    in eval mode or at ``p == 0``. Subclasses implement :meth:`drop` (training, ``p > 0``)."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        self.p = p

    @property
    def p(self) -> float:
        return self._p

    @p.setter
    def p(self, value: float) -> None:
        self._p = check_rate(value)

    def extra_repr(self) -> str:
        return f"p={self.p}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        return self.drop(x)

    def drop(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError
