"""What every layer regularizer shares: the drop-rate check, the ``StochasticRegularizer`` marker that
MC dropout looks for, the ``ScheduledRate`` mixin (a settable rate that torch.compile reads from a
tensor buffer) and a small ``_DropoutNd``-style base class (rate validation, ``extra_repr``,
identity in eval mode or at rate 0).

Arguments are validated the way every regkit constructor does it, with :func:`regkit.errors.check`
(``BadInput`` naming the argument); :func:`check_rate` is that check for a single rate."""
from __future__ import annotations

import torch
from torch import nn

from regkit.errors import BadInput, check


def check_rate(p: float, name: str = "p") -> float:
    """``check(..., rate=name)`` for one value, e.g. in a setter: a drop probability 0 <= p < 1 (p = 1
    would drop everything and divide by zero); returns it as a float.

    Raises:
        BadInput: naming ``name``, for anything else (None and booleans included).
    """
    if p is None or isinstance(p, bool):  # check() lets these pass (an optional argument, a flag)
        raise BadInput(f"must be in [0, 1), got {p!r}", name)
    check({name: p}, rate=name)
    return float(p)


class StochasticRegularizer:
    """Marker mixin: the module is random in training mode and deterministic in eval mode.

    The one rule MC dropout (:mod:`regkit.components.mc_dropout`) follows: it switches exactly the modules
    that inherit this mixin (and torch's own ``nn.Dropout`` family, which cannot) back to training
    mode at predict time. A plugin's stochastic layer inherits it (or :class:`DropoutBase`, which
    does); a deterministic one (an input augmentation, a gate) does not.
    """


# torch's dropout layers (public classes), stochastic by the same rule.
TORCH_DROPOUTS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)


# Stochastic layers of other libraries, by qualified class name (checked without importing them):
# MC dropout samples them in a model rules did not touch too (timm's drop-path and DropBlock).
OTHER_STOCHASTIC = ("timm.layers.drop.DropPath", "timm.layers.drop.DropBlock2d")


def is_stochastic(module: nn.Module) -> bool:
    """Whether MC dropout keeps ``module`` in training mode: a :class:`StochasticRegularizer`, one
    of torch's dropout layers (Hugging Face models use those), or one of :data:`OTHER_STOCHASTIC`."""
    if isinstance(module, (StochasticRegularizer, *TORCH_DROPOUTS)):
        return True
    return any(f"{cls.__module__}.{cls.__qualname__}" in OTHER_STOCHASTIC for cls in type(module).__mro__)


def is_zero(p: float | torch.Tensor) -> bool:
    """Whether a rate is the Python float 0 (a tensor rate, under torch.compile, is never tested:
    reading its value would break the graph; dropping at rate 0 is the identity anyway)."""
    return isinstance(p, float) and p == 0.0


class ScheduledRate(nn.Module):
    """Mixin of a module with a drop rate ``p`` that a schedule may set at every batch without
    recompiling it under torch.compile (docs/speed.md, "Scheduled rates").

    torch.compile treats a Python float it reads as a constant of the compiled program, so every
    new value of a float ``p`` would recompile (and after torch's recompile limit, run eagerly). So
    setting ``p`` (validated by :func:`check_rate`) also writes it into the buffer ``rate``, a 0-dim
    tensor that is not saved in ``state_dict`` (a device write, no host sync), and
    :meth:`drop_rate` gives the float in eager mode and that buffer while torch.compile traces the
    module: compute the drop with tensor ops from what it returns. Set ``self.p`` in ``__init__``
    after ``nn.Module.__init__`` (the first set registers the buffer).
    """

    rate: torch.Tensor

    @property
    def p(self) -> float:
        return self._p

    @p.setter
    def p(self, value: float) -> None:
        self._p = check_rate(value)
        if not hasattr(self, "rate"):  # the first set, from __init__
            self.register_buffer("rate", torch.zeros(()), persistent=False)
        with torch.no_grad():
            self.rate.fill_(self._p)

    def drop_rate(self) -> float | torch.Tensor:
        """The rate a drop uses: ``p`` (a Python float) in eager mode, the ``rate`` buffer (the same
        value, as a tensor) while torch.compile traces the module."""
        return self.rate if torch.compiler.is_compiling() else self._p

    def rate_is_zero(self) -> bool:
        """Whether to skip the drop: ``p == 0`` in eager mode; never while torch.compile traces (the
        rate is the buffer then, and dropping at rate 0 is the identity anyway)."""
        return not torch.compiler.is_compiling() and self._p == 0.0


class DropoutBase(StochasticRegularizer, ScheduledRate):
    """Base of regkit's dropout-like layers, like torch's ``_DropoutNd``: holds the validated rate
    ``p`` (settable, e.g. by a schedule, without recompiling a compiled network: a
    :class:`ScheduledRate`), shows it in ``print(model)``, and returns the input itself in eval mode
    or at ``p == 0``. Subclasses implement :meth:`drop` (training, ``p > 0``) with the rate
    :meth:`drop_rate` gives (a float in eager mode, a 0-dim tensor under torch.compile).
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        self.p = p

    def extra_repr(self) -> str:
        return f"p={self.p}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.rate_is_zero():
            return x
        return self.drop(x)

    def drop(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError
