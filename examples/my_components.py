"""The smallest complete regkit plugin: a regularizer and a penalty, registered by name, written
only against regkit's public API (``regkit.register`` and the base classes ``regkit`` exports).

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
class MyNoise(regkit.StochasticRegularizer, nn.Module):
    """Add zero-mean Gaussian noise to activations in training (Bishop, 1995: equivalent to Tikhonov regularization).

    ``regkit.StochasticRegularizer`` marks it random in training, so MC dropout samples it at
    predict time too.

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


@regkit.register("penalty")  # "my_weight_decay"
class MyWeightDecay(regkit.Penalty):
    """Half the squared L2 norm of every weight matrix, times ``strength`` (Krogh & Hertz, 1992).

    Args:
        strength: the multiplier (``regkit.Penalty`` checks it is >= 0).
    """

    def forward(self, module: nn.Module, **context: object) -> torch.Tensor:
        weights = [p for p in module.parameters() if p.dim() >= 2]
        return self.strength * 0.5 * sum(w.pow(2).sum() for w in weights)
