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
    return nn.Identity() if spec is None else spec.fill(**provided)


def activation_layer(name: str) -> nn.Module:
    return ACTIVATIONS[name]()
