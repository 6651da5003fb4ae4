"""What every layer regularizer shares: the drop-rate check, the ``StochasticRegularizer`` marker that
MC dropout looks for, the ``ScheduledRate`` mixin (a settable rate that torch.compile reads from a
tensor buffer) and a small ``_DropoutNd``-style base class (rate validation, ``extra_repr``,
identity in eval mode or at rate 0).

Arguments are validated the way every regkit constructor does it, with :func:`regkit.errors.check`
(``BadInput`` naming the argument); :func:`check_rate` is that check for a single rate."""
from __future__ import annotations

import inspect
from typing import Callable

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


def _cpu_keep_mask(shape: list[int], keep: torch.Tensor) -> torch.Tensor:
    """Float32 0/1 mask of ``shape`` on the CPU, 1 with probability ``keep``: uniform draws compared
    with ``keep``. Registered as one opaque operator, ``regkit::cpu_keep_mask``
    (``torch.library.custom_op``, tagged ``nondeterministic_seeded`` so that it is neither merged with
    another call nor recomputed in the backward pass): under torch.compile it runs ATen's
    ``uniform_`` from torch's CPU generator, as in eager mode, instead of inductor's generated random
    numbers, which are slower on a CPU; so a compiled network draws the eager network's masks. The
    dtype and device are explicit: Lightning's ``bf16-true`` sets a bfloat16 default dtype, whose
    coarse uniforms would bias the rate."""
    return torch.rand(shape, dtype=torch.float32, device="cpu").lt_(keep)


# torch.library.custom_op takes ``tags`` from torch 2.5 on; without the tag, an opaque random operator
# could be merged or recomputed, so older torch compiles torch.rand itself (inductor's numbers).
cpu_keep_mask: Callable[[list[int], torch.Tensor], torch.Tensor] | None = None
if "tags" in inspect.signature(torch.library.custom_op).parameters:
    cpu_keep_mask = torch.library.custom_op("regkit::cpu_keep_mask", _cpu_keep_mask, mutates_args=(),
                                            tags=(torch.Tag.nondeterministic_seeded,))
    cpu_keep_mask.register_fake(  # type: ignore[attr-defined]
        lambda shape, keep: torch.empty(shape, dtype=torch.float32, device="cpu"))


def keep_mask(like: torch.Tensor, shape: torch.Size | tuple[int, ...] | list[int], keep: float | torch.Tensor,
              scale: bool = True) -> torch.Tensor:
    """A dropout mask of ``shape``, on ``like``'s device and in its dtype: each element is kept (1, or
    ``1 / keep`` when ``scale``, the inverted-dropout scaling) with probability ``keep``, else 0.

    On the CPU the mask compares float32 uniform draws with ``keep`` (the operator ``regkit::cpu_keep_mask``
    under torch.compile): ATen's CPU ``bernoulli_``, which ``F.dropout`` uses there, is slower (dropout's
    forward + backward takes 1.9-3.2x less time this way; benchmarks/RESULTS.md, section ``masks``).
    Elsewhere it is ``bernoulli_`` (one fused kernel on CUDA, and inductor's own on a compiled GPU
    graph). Float32 draws, whatever the default dtype, keep the rate exact to 2^-24 for a bfloat16 or
    float16 ``like`` too; the 0/1 mask is cast to ``like``'s dtype before it is scaled, so a float64
    ``like`` gets an exact 1 / keep. A mask of ``like``'s own shape also takes its memory format
    (channels-last stays channels-last). It is for masks as large as the tensor they drop (dropout,
    DropConnect, weight drop; alpha dropout under torch.compile); masks shared over axes (drop path,
    spatial, locked and embedding dropout) are small and drawn with ``bernoulli_``, as the reference
    implementations do (bit-identical to timm's drop path and Merity's embedding dropout)."""
    if like.device.type != "cpu":
        mask = like.new_empty(shape, dtype=torch.float32).bernoulli_(keep)
    elif torch.compiler.is_compiling() and cpu_keep_mask is not None:
        rate = keep.float() if isinstance(keep, torch.Tensor) else torch.tensor(keep, dtype=torch.float32, device="cpu")
        mask = cpu_keep_mask(list(shape), rate)
    elif tuple(shape) == tuple(like.shape):
        mask = torch.rand_like(like, dtype=torch.float32).lt_(keep)  # 1.0 where kept, 0.0 where dropped
    else:
        mask = torch.rand(shape, dtype=torch.float32, device="cpu").lt_(keep)
    if like.dtype != torch.float32:
        mask = mask.to(like.dtype)
    return mask.div_(keep) if scale else mask


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
