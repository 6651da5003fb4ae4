"""Generators (kind ``generator``): map a latent vector z ~ N(0, I) to an image in [-1, 1]."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from regkit.networks.slots import Activation, activation_layer, fill
from regkit.registry import register
from regkit.registry import NormSpec
from regkit.errors import check


def upsampling_plan(image_size: int, min_size: int = 4) -> tuple[int, int]:
    """``(start_size, stages)``: halve ``image_size`` while it stays even and >= ``min_size``.

    28 -> (7, 2), 32 -> (4, 3), 64 -> (4, 4). Discriminators use the same plan downwards.
    """
    if image_size < min_size:
        raise ValueError(f"image_size must be >= {min_size}, got {image_size}")
    size, stages = image_size, 0
    while size % 2 == 0 and size // 2 >= min_size:
        size, stages = size // 2, stages + 1
    if stages == 0:
        raise ValueError(f"image_size {image_size} cannot be halved; use a size like 28, 32 or 64")
    return size, stages


def image_mismatch(channels: int, image_size: int, shape: tuple[int, ...]) -> Optional[tuple[str, int, object]]:
    """``(argument, its value, the value that fits)`` when ``shape`` (C, H, W) is not
    ``(channels, image_size, image_size)``, else None."""
    if len(shape) != 3 or tuple(shape) == (channels, image_size, image_size):
        return None
    if shape[0] != channels:
        return "channels", channels, shape[0]
    return "image_size", image_size, shape[1] if shape[1] == shape[2] else f"none ({shape[1]}x{shape[2]} is not square)"


class _Generator(nn.Module):
    latent_dim: int
    image_shape: tuple[int, int, int]

    def output_mismatch(self, shape: tuple[int, ...]) -> Optional[tuple[str, int, object]]:
        """``(argument, its value, the value that fits)`` when this G's images are not of ``shape``
        (C, H, W, the real images), else None."""
        return image_mismatch(self.image_shape[0], self.image_shape[1], shape)

    def sample_latent(self, n: int, device: torch.device | str | None = None,
                      generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` latent vectors from N(0, I)."""
        return torch.randn(n, self.latent_dim, device=device, generator=generator)


@register("generator", "dcgan_generator")
class DCGANGenerator(_Generator):
    """DCGAN generator: projection, stride-2 transposed convs with norm + activation, tanh (Radford et al., 2016).

    A Linear projection to a small feature map, then stride-2 transposed convolutions, each
    followed by the norm slot and the activation, and a tanh output.

    Args:
        latent_dim: size of z.
        image_size: output height = width (28 for MNIST; 32, 64 also work).
        channels: output image channels.
        width: channels of the last hidden feature map; each earlier stage doubles it.
        norm: norm after the projection and each hidden transposed conv (gets ``num_features``;
            batch norm as in DCGAN), or null.
        activation: nonlinearity after each norm (``relu`` in DCGAN, ``leaky_relu`` in the seed).

    Shape:
        Input (N, latent_dim). Output (N, channels, image_size, image_size), values in [-1, 1].
    """

    def __init__(
        self,
        latent_dim: int = 64,
        image_size: int = 28,
        channels: int = 1,
        width: int = 32,
        norm: Optional[NormSpec] = NormSpec("batch_norm"),
        activation: Activation = "relu",
    ) -> None:
        super().__init__()
        check(locals(), positive="latent_dim image_size channels width")
        self.latent_dim = latent_dim
        self.image_shape = (channels, image_size, image_size)
        start, stages = upsampling_plan(image_size)
        ch = width * 2 ** (stages - 1)
        self.start = (ch, start)
        bias = norm is None  # a norm's shift makes the bias redundant
        self.project = nn.Linear(latent_dim, ch * start * start, bias=bias)
        layers: list[nn.Module] = [fill(norm, num_features=ch), activation_layer(activation)]
        for _ in range(stages - 1):
            layers += [
                nn.ConvTranspose2d(ch, ch // 2, 4, stride=2, padding=1, bias=bias),
                fill(norm, num_features=ch // 2),
                activation_layer(activation),
            ]
            ch //= 2
        layers += [nn.ConvTranspose2d(ch, channels, 4, stride=2, padding=1), nn.Tanh()]
        self.layers = nn.Sequential(*(m for m in layers if not isinstance(m, nn.Identity)))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        ch, size = self.start
        return self.layers(self.project(z).view(-1, ch, size, size))


@register("generator", "mlp_generator")
class MLPGenerator(_Generator):
    """MLP generator: Linear + norm + activation layers, tanh image output (Goodfellow et al., 2014).

    Batch norm + LeakyReLU after each hidden Linear by default, as in the seed.

    Args:
        latent_dim: size of z.
        image_size: output height = width.
        channels: output image channels.
        hidden: width of each hidden layer.
        norm: norm after each hidden Linear (gets ``num_features``), or null.
        activation: nonlinearity after each norm.

    Shape:
        Input (N, latent_dim). Output (N, channels, image_size, image_size), values in [-1, 1].
    """

    def __init__(
        self,
        latent_dim: int = 64,
        image_size: int = 28,
        channels: int = 1,
        hidden: list[int] = [256, 512, 1024],
        norm: Optional[NormSpec] = NormSpec("batch_norm", momentum=0.2),
        activation: Activation = "leaky_relu",
    ) -> None:
        super().__init__()
        check(locals(), positive="latent_dim image_size channels hidden")
        self.latent_dim = latent_dim
        self.image_shape = (channels, image_size, image_size)
        layers: list[nn.Module] = []
        width = latent_dim
        for size in hidden:
            layers += [nn.Linear(width, size, bias=norm is None), fill(norm, num_features=size), activation_layer(activation)]
            width = size
        layers += [nn.Linear(width, channels * image_size * image_size), nn.Tanh()]
        self.layers = nn.Sequential(*(m for m in layers if not isinstance(m, nn.Identity)))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.layers(z).view(-1, *self.image_shape)
