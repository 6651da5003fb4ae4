"""Constraints (kind ``constraint``): restrictions on weights. Most are projections applied after
each optimizer step (``apply``); some are reparametrizations registered once (``setup``), which the
task calls before the optimizer is created."""
from __future__ import annotations

import fnmatch
import functools
from typing import Callable, Iterator

import torch
from torch import nn
from torch.nn.utils import parametrize

from regkit.registry import register


class Constraint:
    """Keeps some of a module's weights in an allowed set.

    ``setup(module)`` runs once, before the optimizer exists (a parametrization is registered
    there); ``apply(module)`` runs under ``no_grad`` after every optimizer step (a projection).
    Both do nothing by default.
    """

    def setup(self, module: nn.Module) -> None:
        pass

    def apply(self, module: nn.Module) -> None:
        pass

    def __call__(self, module: nn.Module) -> None:
        with torch.no_grad():
            self.apply(module)


# Layers whose weights hold one output unit's incoming weights per slice of dim 0 (a Linear row, a
# conv output channel, an RNN gate row of weight_ih_l* / weight_hh_l*, an embedding vector).
_UNITS_ON_DIM_0 = (
    nn.Linear, nn.Bilinear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.RNNBase, nn.RNNCellBase, nn.Embedding,
    nn.MultiheadAttention,
)
_TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def _as_units(layer: nn.Module, name: str, weight: torch.Tensor) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
    """``weight`` as a (units, fan_in) matrix, one output unit's incoming weights per row, and the
    map back to the weight's own shape. A transposed conv stores (in, out / groups, *k): its output
    unit (group g, channel o) gathers ``weight[g * in/g : (g + 1) * in/g, o]``."""
    if isinstance(layer, _TRANSPOSED):
        g = layer.groups
        grouped = weight.unflatten(0, (g, weight.shape[0] // g)).movedim(2, 1)  # (g, out/g, in/g, *k)
        units = grouped.reshape(g * grouped.shape[1], -1)
        return units, lambda u: u.reshape(grouped.shape).movedim(1, 2).reshape(weight.shape)
    if isinstance(layer, _UNITS_ON_DIM_0):
        return weight.reshape(weight.shape[0], -1), lambda u: u.reshape(weight.shape)
    raise ValueError(
        f"max_norm does not know which axis of {name!r} ({type(layer).__name__}) holds a unit's incoming "
        f"weights; leave it out with exclude (it handles Linear, Conv*, ConvTranspose*, RNN/LSTM/GRU, Embedding)"
    )


def _weights(module: nn.Module) -> Iterator[tuple[str, nn.Module, torch.Tensor]]:
    """``(name, layer, stored tensor)`` of every weight with 2+ dimensions. A parametrized weight
    (spectral norm, weight drop) is named as the layer sees it (``layers.0.weight``) and yields the
    stored ``parametrizations.weight.original``, the tensor the optimizer updates."""
    for prefix, layer in module.named_modules():
        if isinstance(layer, parametrize.ParametrizationList):
            continue  # reached through the layer that owns it
        dot = f"{prefix}." if prefix else ""
        for name, param in layer.named_parameters(recurse=False):
            if param.dim() >= 2:
                yield dot + name, layer, param
        if parametrize.is_parametrized(layer):
            for name, plist in layer.parametrizations.items():
                original = getattr(plist, "original", None)
                if original is None or original.shape != getattr(layer, name).shape:
                    raise ValueError(
                        f"max_norm cannot cap {dot + name!r} ({type(layer).__name__}): its parametrization "
                        f"stores a tensor of another shape; leave it out with exclude"
                    )
                if original.dim() >= 2:
                    yield dot + name, layer, original


@register("constraint", "max_norm")
class MaxNorm(Constraint):
    """Rescale each unit's incoming weight vector to L2 norm <= max_norm (Srivastava et al., 2014).

    A unit's incoming weights are a row of a Linear weight (out, in), an output channel of a conv
    kernel (out, in, *k) or of a transposed conv kernel (in, out, *k: dim 1, per group), a row
    (one gate unit) of an RNN / LSTM / GRU ``weight_ih_l*`` / ``weight_hh_l*``, and an embedding
    vector (as ``nn.Embedding(max_norm=...)``). A parametrized weight (e.g. with ``spectral_norm``
    or ``weight_drop``) is capped in its stored tensor ``parametrizations.<name>.original`` and
    matched by the name the layer sees (``layers.0.weight``). Any other matching weight of 2+
    dimensions is refused by name (leave it out with ``exclude``); 1-D ones (biases, norm
    scales) are skipped.

    Args:
        max_norm: the bound c (the dropout paper used 3 to 4).
        include: shell pattern on weight names.
        exclude: shell pattern of names to leave out.
    """

    def __init__(self, max_norm: float = 3.0, include: str = "*weight*", exclude: str = "") -> None:
        if max_norm <= 0:
            raise ValueError(f"max_norm must be > 0, got {max_norm}")
        self.max_norm, self.include, self.exclude = float(max_norm), include, exclude

    def selected(self, module: nn.Module) -> list[tuple[str, nn.Module, torch.Tensor]]:
        """The ``(name, layer, stored tensor)`` triples this constraint caps."""
        return [
            (name, layer, tensor)
            for name, layer, tensor in _weights(module)
            if fnmatch.fnmatch(name, self.include) and not (self.exclude and fnmatch.fnmatch(name, self.exclude))
        ]

    def setup(self, module: nn.Module) -> None:
        for name, layer, tensor in self.selected(module):  # refuse an unknown layer before training
            _as_units(layer, name, tensor)

    def apply(self, module: nn.Module) -> None:
        for name, layer, tensor in self.selected(module):
            units, back = _as_units(layer, name, tensor)
            tensor.copy_(back(torch.renorm(units, p=2, dim=0, maxnorm=self.max_norm)))

    def __repr__(self) -> str:
        return f"MaxNorm(max_norm={self.max_norm}, include={self.include!r})"


DEFAULT_SPECTRAL_TYPES = ["Linear", "Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d"]


@register("constraint", "spectral_norm")
class SpectralNorm(Constraint):
    """Divide chosen layers' weights by their largest singular value (Miyato et al., 2018).

    The singular value is estimated by power iteration, so each layer is about 1-Lipschitz
    ("Spectral Normalization for Generative Adversarial Networks").

    Registered once, at setup, as a ``torch.nn.utils.parametrizations.spectral_norm`` parametrization
    (the trained tensor becomes ``<layer>.parametrizations.weight.original``; the power-iteration
    vectors are buffers saved with checkpoints and advance only in training mode).

    Args:
        include: shell pattern on module names (as in ``named_modules()``, e.g. ``"layers.*"``).
        exclude: shell pattern of module names to leave out (e.g. the output layer).
        types: class names of the layers to normalize (their subclasses count too).
        n_power_iterations: power-iteration steps per training forward pass.
        eps: added to norms in the power iteration.
    """

    def __init__(
        self,
        include: str = "*",
        exclude: str = "",
        types: list[str] = DEFAULT_SPECTRAL_TYPES,
        n_power_iterations: int = 1,
        eps: float = 1e-12,
    ) -> None:
        if n_power_iterations < 1:
            raise ValueError(f"n_power_iterations must be >= 1, got {n_power_iterations}")
        self.include, self.exclude, self.types = include, exclude, list(types)
        self.n_power_iterations, self.eps = n_power_iterations, eps

    def layers(self, module: nn.Module) -> list[tuple[str, nn.Module]]:
        """The ``(name, layer)`` pairs this constraint acts on."""
        return [
            (name, m)
            for name, m in module.named_modules()
            if any(cls.__name__ in self.types for cls in type(m).__mro__)  # subclasses, parametrized too
            and fnmatch.fnmatch(name, self.include)
            and not (self.exclude and fnmatch.fnmatch(name, self.exclude))
        ]

    def setup(self, module: nn.Module) -> None:
        layers = self.layers(module)
        if not layers:
            raise ValueError(f"spectral_norm: no {'/'.join(self.types)} layer matches include={self.include!r}")
        for _, layer in layers:
            if not _has_spectral_norm(layer):
                nn.utils.parametrizations.spectral_norm(layer, "weight", self.n_power_iterations, self.eps)

    def __repr__(self) -> str:
        return f"SpectralNorm(include={self.include!r}, exclude={self.exclude!r}, types={self.types})"


@functools.cache
def _spectral_norm_type() -> type:
    """The parametrization class torch's public ``spectral_norm`` registers, found by using it."""
    probe = nn.utils.parametrizations.spectral_norm(nn.Linear(1, 1))
    return type(parametrize_list(probe)[0])


def _has_spectral_norm(layer: nn.Module) -> bool:
    if not parametrize.is_parametrized(layer, "weight"):
        return False
    return any(isinstance(p, _spectral_norm_type()) for p in parametrize_list(layer))


def parametrize_list(layer: nn.Module) -> nn.ModuleList:
    """The parametrizations registered on ``layer.weight`` (torch's public ``parametrizations``)."""
    return getattr(layer.parametrizations, "weight")
