"""A small convolutional classifier with norm, spatial-dropout and dropout slots."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from regkit.components.layouts import FEATURES, MAPS
from regkit.networks.slots import Activation, activation_layer, fill
from regkit.registry import register
from regkit.registry import NormSpec, RegularizerSpec
from regkit.errors import check


@register("network", "small_cnn")
class SmallCNN(nn.Module):
    """Conv stages (3x3 conv, norm, activation, feature-map regularizer, 2x2 max-pool), then a
    dropout-regularized fully connected head.

    Args:
        in_channels: image channels.
        channels: output channels of each conv stage.
        image_size: input height = width, used to size the head.
        hidden: width of the fully connected layer.
        out_features: number of classes.
        activation: nonlinearity name.
        norm: norm after each conv (gets ``num_features``), or null.
        feature_dropout: regularizer on conv feature maps (e.g. spatial dropout), or null.
        dropout: regularizer before each Linear of the head, or null.

    Shape:
        Input (N, in_channels, image_size, image_size). Output (N, out_features).
    """

    def __init__(
        self,
        in_channels: int = 1,
        channels: list[int] = [32, 64],
        image_size: int = 28,
        hidden: int = 128,
        out_features: int = 10,
        activation: Activation = "relu",
        norm: Optional[NormSpec] = None,
        feature_dropout: Optional[RegularizerSpec] = None,
        dropout: Optional[RegularizerSpec] = None,
    ) -> None:
        super().__init__()
        check(locals(), positive="in_channels channels image_size hidden out_features")
        layers: list[nn.Module] = []
        width, size = in_channels, image_size
        for ch in channels:
            layers += [
                nn.Conv2d(width, ch, 3, padding=1, bias=norm is None),
                fill(norm, num_features=ch),
                activation_layer(activation),
                fill(feature_dropout, MAPS, "feature_dropout", num_features=ch),
                nn.MaxPool2d(2),
            ]
            width, size = ch, size // 2
        layers += [
            nn.Flatten(),
            fill(dropout, FEATURES, "dropout", num_features=width * size * size),
            nn.Linear(width * size * size, hidden),
            activation_layer(activation),
            fill(dropout, FEATURES, "dropout", num_features=hidden),
            nn.Linear(hidden, out_features),
        ]
        self.layers = nn.Sequential(*(m for m in layers if not isinstance(m, nn.Identity)))
        self.in_channels, self.image_size, self.stages = in_channels, image_size, len(channels)

    def input_mismatch(self, shape: tuple[int, ...]) -> Optional[tuple[str, int, object]]:
        """``(argument, its value, the value that fits)`` when images of ``shape`` (C, H, W) cannot
        go through, else None (:func:`conv_stack_mismatch`; 29x29 fits as well as 28x28)."""
        return conv_stack_mismatch(shape, "in_channels", self.in_channels, self.image_size, self.stages)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def conv_stack_mismatch(shape: tuple[int, ...], channels_argument: str, channels: int, image_size: int,
                        stages: int) -> Optional[tuple[str, int, object]]:
    """Whether (C, H, W) images go through ``stages`` stride-2 convolutions whose head was sized for
    ``image_size``: ``(argument, its value, the value that fits)`` when not, else None. Exact: each
    stage halves H and W (rounding down), so images that end at the head's size fit."""
    if len(shape) != 3:
        return None  # not images: the dry forward reports it
    got_channels, height, width = shape
    if got_channels != channels:
        return channels_argument, channels, got_channels
    end = image_size // 2**stages
    if (height // 2**stages, width // 2**stages) != (end, end):
        return "image_size", image_size, height if height == width else f"none ({height}x{width} is not square)"
    return None
