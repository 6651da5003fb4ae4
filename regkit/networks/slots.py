"""Filling a network's component slots from specs."""
from __future__ import annotations

from typing import Any, Literal

from torch import nn

from regkit.spec import Spec

ACTIVATIONS = {
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.2),
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "selu": nn.SELU,
    "silu": nn.SiLU,
    "elu": nn.ELU,
}
Activation = Literal["relu", "leaky_relu", "gelu", "tanh", "selu", "silu", "elu"]


def fill(spec: Spec | None, **provided: Any) -> nn.Module:
    """Build ``spec`` with what the slot knows (e.g. ``num_features``), or Identity for an empty slot."""
    if spec is None:
        return nn.Identity()
    return spec.build(**{k: v for k, v in provided.items() if k in _accepted(spec)})


def _accepted(spec: Spec) -> set[str]:
    entry = spec.entry
    names = {p.name for p in entry.parameters}
    return names | ({"*"} if entry.accepts_any_kwargs else set())


def activation_layer(name: str) -> nn.Module:
    return ACTIVATIONS[name]()
