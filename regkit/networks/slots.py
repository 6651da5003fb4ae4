"""Filling a network's component slots from specs."""
from __future__ import annotations

from typing import Any, Callable, Literal

from torch import nn

from regkit.components.layouts import Layout, layout_arguments
from regkit.registry.spec import Spec

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.2),
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "selu": nn.SELU,
    "silu": nn.SiLU,
    "elu": nn.ELU,
}
Activation = Literal["relu", "leaky_relu", "gelu", "tanh", "selu", "silu", "elu"]


def fill(spec: Spec | None, layout: Layout | None = None, slot: str = "", **provided: Any) -> nn.Module:
    """Build ``spec`` with what the slot knows (e.g. ``num_features``), or Identity for an empty slot.

    A regularizer slot names its ``layout`` (:mod:`regkit.components.layouts`): the component gets the
    arguments its ``layouts`` table gives for it (e.g. ``batch_first=True`` in a sequence slot), or
    is refused, naming it and the ``slot``, if it does not work in that layout.
    """
    if spec is None:
        return nn.Identity()
    if layout is not None:
        provided = {**provided, **layout_arguments(spec, layout, slot)}
    return spec.fill(**provided)


def activation_layer(name: str) -> nn.Module:
    return ACTIVATIONS[name]()
