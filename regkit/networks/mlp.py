"""Multilayer perceptron with dropout and norm slots (the network of the dropout paper)."""
from __future__ import annotations

import math
from typing import Literal, Optional

import torch
from torch import nn

from regkit.components.layouts import FEATURES
from regkit.networks.slots import Activation, activation_layer, fill
from regkit.registry import register
from regkit.registry import NormSpec, RegularizerSpec
from regkit.errors import check

BlockPart = Literal["norm", "act", "dropout"]


@register("network", "mlp")
class MLP(nn.Module):
    """Fully connected net: input dropout, then per hidden layer Linear followed by norm / activation /
    dropout in the order given by ``order`` (Srivastava et al., 2014; Ioffe & Szegedy, 2015).

    Args:
        in_features: flattened input size (784 for 28x28 images).
        hidden: width of each hidden layer.
        out_features: number of outputs (classes).
        activation: nonlinearity name.
        dropout: regularizer after each hidden layer (registry spec), or null.
        input_dropout: regularizer on the input, or null.
        norm: norm after each hidden Linear (gets ``num_features``), or null.
        order: order of norm, activation and dropout after each Linear (S3 compares orders).

    Shape:
        Input (N, *) flattened to (N, in_features). Output (N, out_features).
    """

    def __init__(
        self,
        in_features: int = 784,
        hidden: list[int] = [1024, 1024],
        out_features: int = 10,
        activation: Activation = "relu",
        dropout: Optional[RegularizerSpec] = None,
        input_dropout: Optional[RegularizerSpec] = None,
        norm: Optional[NormSpec] = None,
        order: list[BlockPart] = ["norm", "act", "dropout"],
    ) -> None:
        super().__init__()
        check(locals(), positive="in_features hidden out_features")
        if sorted(order) != sorted(set(order)):
            raise ValueError(f"order lists a part twice: {order}")
        layers: list[nn.Module] = [
            nn.Flatten(), fill(input_dropout, FEATURES, "input_dropout", num_features=in_features)
        ]
        width = in_features
        for size in hidden:
            layers.append(nn.Linear(width, size, bias=norm is None))
            parts = {
                "norm": lambda: fill(norm, num_features=size),
                "act": lambda: activation_layer(activation),
                "dropout": lambda: fill(dropout, FEATURES, "dropout", num_features=size),
            }
            layers.extend(parts[part]() for part in order)
            width = size
        layers.append(nn.Linear(width, out_features))
        self.layers = nn.Sequential(*(m for m in layers if not isinstance(m, nn.Identity)))
        self.in_features = in_features

    def input_mismatch(self, shape: tuple[int, ...]) -> Optional[tuple[str, int, int]]:
        """``(argument, its value, the value that fits)`` when examples of ``shape`` (one example,
        no batch axis) cannot go through, else None: they are flattened to ``in_features``."""
        size = math.prod(shape)
        return ("in_features", self.in_features, size) if size != self.in_features else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)
