"""The smallest complete regkit plugin: one regularizer, registered by name.

Use it for one run without installing anything:

    regkit --plugins examples/my_components.py fit --config examples/my_recipe.yaml
    regkit --plugins examples/my_components.py list regularizer my_noise

To ship it as a package instead, see docs/plugins.md (a pyproject.toml with an entry point in the
group ``regkit.plugins``).
"""
from __future__ import annotations

import torch
from torch import nn

import regkit


@regkit.register("regularizer")  # the name defaults to snake_case of the class: "my_noise"
class MyNoise(nn.Module):
    """Add zero-mean Gaussian noise to activations in training (Bishop, 1995: equivalent to Tikhonov regularization).

    Args:
        sigma: standard deviation of the noise.

    Shape:
        Input: any. Output: same as input. Identity in eval mode.
    """

    def __init__(self, sigma: float = 0.1) -> None:
        super().__init__()
        if sigma < 0:
            raise ValueError(f"sigma must be >= 0, got {sigma}")
        self.sigma = sigma

    def extra_repr(self) -> str:
        return f"sigma={self.sigma}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.sigma == 0:
            return x
        return x + self.sigma * torch.randn_like(x)
