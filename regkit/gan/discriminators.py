"""Discriminators (kind ``discriminator``): map an image to one real/fake logit per sample."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from regkit.gan.generators import image_mismatch, upsampling_plan
from regkit.components.layouts import FEATURES, MAPS
from regkit.networks.slots import Activation, activation_layer, fill
from regkit.networks.cnn import conv_stack_mismatch
from regkit.registry import register
from regkit.registry import NormSpec, RegularizerSpec
from regkit.errors import check


def _maybe_sn(layer: nn.Module, enabled: bool) -> nn.Module:
    """Spectral normalization (Miyato et al., 2018) as a parametrization, so the weight stays a
    plain parameter for optimizers, checkpoints and DDP."""
    return _spectral_norm(layer) if enabled else layer


@register("discriminator", "dcgan_discriminator")
class DCGANDiscriminator(nn.Module):
    """DCGAN discriminator: stride-2 convs + LeakyReLU + dropout slot, one logit (Radford et al., 2016).

    Stride-2 4x4 convolutions with LeakyReLU(0.2) and a dropout slot after each, then a Linear
    layer to one logit; optional spectral norm on every layer (Miyato et al., 2018).

    Args:
        image_size: input height = width (28, 32, 64, ...).
        channels: input image channels.
        width: channels of the first conv; each later stage doubles it.
        dropout: regularizer after each conv stage (e.g. ``{name: dropout, p: 0.3}``), or null.
        norm: norm after every conv but the first (gets ``num_features``), or null. Leave it null
            with gradient penalties (R1, WGAN-GP), which assume per-sample outputs.
        spectral_norm: wrap every conv and the final Linear in spectral normalization.
        activation: nonlinearity after each conv.

    Shape:
        Input (N, channels, image_size, image_size). Output (N,) logits.
    """

    def __init__(
        self,
        image_size: int = 28,
        channels: int = 1,
        width: int = 32,
        dropout: Optional[RegularizerSpec] = None,
        norm: Optional[NormSpec] = None,
        spectral_norm: bool = False,
        activation: Activation = "leaky_relu",
    ) -> None:
        super().__init__()
        check(locals(), positive="image_size channels width")
        final, stages = upsampling_plan(image_size)
        layers: list[nn.Module] = []
        ch_in, ch = channels, width
        for stage in range(stages):
            layers += [
                _maybe_sn(nn.Conv2d(ch_in, ch, 4, stride=2, padding=1), spectral_norm),
                fill(norm, num_features=ch) if stage > 0 else nn.Identity(),
                activation_layer(activation),
                fill(dropout, MAPS, "dropout", num_features=ch),
            ]
            ch_in, ch = ch, ch * 2
        layers += [nn.Flatten(), _maybe_sn(nn.Linear(ch_in * final * final, 1), spectral_norm)]
        self.layers = nn.Sequential(*(m for m in layers if not isinstance(m, nn.Identity)))
        self.image_size, self.channels, self.stages = image_size, channels, stages

    def input_mismatch(self, shape: tuple[int, ...]) -> Optional[tuple[str, int, object]]:
        """``(argument, its value, the value that fits)`` when images of ``shape`` (C, H, W) cannot
        go through, else None (:func:`regkit.networks.cnn.conv_stack_mismatch`: each stride-2 conv
        halves H and W, the last Linear was sized for ``image_size``)."""
        return conv_stack_mismatch(shape, "channels", self.channels, self.image_size, self.stages)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x).squeeze(-1)


@register("discriminator", "mlp_discriminator")
class MLPDiscriminator(nn.Module):
    """MLP discriminator: Linear + LeakyReLU + dropout slot layers, one logit (Goodfellow et al., 2014).

    Optional spectral norm on every Linear (Miyato et al., 2018).

    Args:
        image_size: input height = width.
        channels: input image channels.
        hidden: width of each hidden layer.
        dropout: regularizer after each hidden layer (the seed's dropout in D), or null.
        norm: norm after each hidden Linear (gets ``num_features``), or null.
        spectral_norm: wrap every Linear in spectral normalization.
        activation: nonlinearity after each hidden Linear.

    Shape:
        Input (N, channels, image_size, image_size). Output (N,) logits.
    """

    def __init__(
        self,
        image_size: int = 28,
        channels: int = 1,
        hidden: list[int] = [512, 256],
        dropout: Optional[RegularizerSpec] = None,
        norm: Optional[NormSpec] = None,
        spectral_norm: bool = False,
        activation: Activation = "leaky_relu",
    ) -> None:
        super().__init__()
        check(locals(), positive="image_size channels hidden")
        layers: list[nn.Module] = [nn.Flatten()]
        width = channels * image_size * image_size
        for size in hidden:
            layers += [
                _maybe_sn(nn.Linear(width, size), spectral_norm),
                fill(norm, num_features=size),
                activation_layer(activation),
                fill(dropout, FEATURES, "dropout", num_features=size),
            ]
            width = size
        layers.append(_maybe_sn(nn.Linear(width, 1), spectral_norm))
        self.layers = nn.Sequential(*(m for m in layers if not isinstance(m, nn.Identity)))
        self.image_size, self.channels = image_size, channels

    def input_mismatch(self, shape: tuple[int, ...]) -> Optional[tuple[str, int, object]]:
        """``(argument, its value, the value that fits)`` when images of ``shape`` (C, H, W) are not
        the ``channels`` x ``image_size`` x ``image_size`` this D was built for, else None."""
        return image_mismatch(self.channels, self.image_size, shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x).squeeze(-1)
