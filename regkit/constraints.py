"""Constraints (kind ``constraint``): restrictions on weights. Most are projections applied after
each optimizer step (``apply``); some are reparametrizations registered once (``setup``), which the
task calls before the optimizer is created."""
from __future__ import annotations

import fnmatch

import torch
from torch import nn
from torch.nn.utils import parametrize

from regkit.penalties import select_parameters
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


@register("constraint", "max_norm")
class MaxNorm(Constraint):
    """Rescale each unit's incoming weight vector to L2 norm <= max_norm (Srivastava et al., 2014).

    A unit is a row of a Linear weight (out, in) or an output channel of a conv kernel (out, in, ...).

    Args:
        max_norm: the bound c (the dropout paper used 3 to 4).
        include: shell pattern on parameter names.
        exclude: shell pattern of names to leave out.
    """

    def __init__(self, max_norm: float = 3.0, include: str = "*weight", exclude: str = "") -> None:
        if max_norm <= 0:
            raise ValueError(f"max_norm must be > 0, got {max_norm}")
        self.max_norm, self.include, self.exclude = float(max_norm), include, exclude

    def apply(self, module: nn.Module) -> None:
        for _, param in select_parameters(module, self.include, self.exclude, min_dim=2):
            param.copy_(torch.renorm(param, p=2, dim=0, maxnorm=self.max_norm))

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


def _has_spectral_norm(layer: nn.Module) -> bool:
    if not parametrize.is_parametrized(layer, "weight"):
        return False
    return any(type(p).__name__ == "_SpectralNorm" for p in layer.parametrizations["weight"])
