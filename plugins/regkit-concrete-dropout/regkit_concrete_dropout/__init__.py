"""Concrete Dropout for regkit: dropout whose rate is a trained parameter (Gal, Hron & Kendall, 2017).

Two registry components:

* ``regularizer`` ``concrete_dropout``: the layer. Its mask is a relaxed (Concrete) Bernoulli
  sample, so the loss is differentiable in the drop rate ``p`` and ``p`` is learned with the
  weights.
* ``penalty`` ``concrete_dropout``: the paper's regularization term, summed over every
  ConcreteDropout layer of the model. Without it the learned rates collapse to 0 (dropout only
  hurts the training loss), so a recipe that uses the layer lists the penalty too.
"""
from __future__ import annotations

import math
from typing import Any, Optional

import torch
from torch import nn

from regkit import Penalty, StochasticRegularizer, register

__version__ = "0.1.0"
__all__ = ["ConcreteDropout", "ConcreteDropoutPenalty", "concrete_dropout", "concrete_dropout_regularizer"]


def concrete_dropout(x: torch.Tensor, p_logit: torch.Tensor, temperature: float = 0.1, eps: float = 1e-7) -> torch.Tensor:
    """Multiply ``x`` by a relaxed Bernoulli keep-mask with drop rate ``sigmoid(p_logit)``, scaled by
    ``1/(1-p)`` so the expected output is about ``x``.

    ``drop = sigmoid((logit(p) + log u - log(1-u)) / temperature)``, ``u ~ U(0, 1)`` per element:
    ``drop > 0.5`` with probability exactly ``p``, and the smaller the temperature the closer the
    mask is to 0/1. The mask is computed in float32 so it stays exact under bf16/fp16 autocast.
    """
    p_logit = p_logit.float()
    p = torch.sigmoid(p_logit)
    u = torch.rand(x.shape, device=x.device, dtype=torch.float32)
    noise = torch.log(u + eps) - torch.log1p(eps - u)
    drop = torch.sigmoid((p_logit + noise) / temperature)
    return x * ((1.0 - drop) / (1.0 - p)).to(x.dtype)


def _logit(p: float) -> float:
    return math.log(p) - math.log1p(-p)


@register("regularizer", "concrete_dropout")
class ConcreteDropout(StochasticRegularizer, nn.Module):
    """Dropout whose rate p is learned through a relaxed Bernoulli mask (Gal, Hron & Kendall, 2017).

    The mask is a Concrete (relaxed Bernoulli) sample, so the loss is differentiable in the drop
    probability p, which is trained with the weights ("Concrete Dropout", NeurIPS 2017).

    Pair it with the ``concrete_dropout`` penalty, which adds the rate's regularization term;
    without it p shrinks towards 0. Like ``nn.Dropout`` it is the identity in eval mode.

    Args:
        p: initial drop probability, 0 < p < 1 (the paper starts at 0.1); learned from then on.
        temperature: temperature of the Concrete relaxation (0.1 in the paper): smaller is closer
            to a hard 0/1 mask, with noisier gradients.
        num_features: size K of one input sample in the regularization term
            ``K * (p log p + (1-p) log(1-p))``; filled by the network slot. If null, the number
            of elements of one sample of the last input is used.

    Shape:
        Input: ``(N, *)``, each element dropped independently. Output: same as input.
    """

    def __init__(self, p: float = 0.1, temperature: float = 0.1, num_features: Optional[int] = None) -> None:
        super().__init__()
        if not 0.0 < p < 1.0:
            raise ValueError(f"p must be in (0, 1), got {p!r}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        self.p_logit = nn.Parameter(torch.tensor(_logit(p)))
        self.temperature = float(temperature)
        self.num_features = num_features
        self._seen_features: Optional[int] = None

    @property
    def p(self) -> torch.Tensor:
        """The current (learned) drop probability."""
        return torch.sigmoid(self.p_logit)

    @property
    def input_features(self) -> int:
        """K of the regularization term."""
        if self.num_features is not None:
            return self.num_features
        if self._seen_features is None:
            raise RuntimeError("ConcreteDropout: num_features is not set and the layer has not seen an input yet")
        return self._seen_features

    def extra_repr(self) -> str:
        return f"p={self.p.item():.4f}, temperature={self.temperature}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.num_features is None:
            self._seen_features = x[0].numel()
        if not self.training:
            return x
        return concrete_dropout(x, self.p_logit, self.temperature)


def _following_weight(modules: list[nn.Module], start: int) -> Optional[torch.Tensor]:
    """Weight of the first Linear/Conv-like layer after ``modules[start]`` in module order: in a
    Sequential that is the layer the dropout's output feeds."""
    for m in modules[start + 1 :]:
        weight = getattr(m, "weight", None)
        if isinstance(weight, torch.Tensor) and weight.dim() >= 2 and not list(m.children()):
            return weight
    return None


def concrete_dropout_regularizer(
    layer: ConcreteDropout, weight: Optional[torch.Tensor], weight_regularizer: float, dropout_regularizer: float
) -> torch.Tensor:
    """One layer's term: ``weight_regularizer * ||W||^2 / (1 - p) + dropout_regularizer * K *
    (p log p + (1 - p) log(1 - p))`` (the second part is minus K times the entropy of p)."""
    p = torch.sigmoid(layer.p_logit.float())
    # p log p + (1-p) log(1-p), written with logsigmoid for accuracy near 0 and 1
    neg_entropy = p * nn.functional.logsigmoid(layer.p_logit.float()) + (1 - p) * nn.functional.logsigmoid(-layer.p_logit.float())
    term = dropout_regularizer * layer.input_features * neg_entropy
    if weight is not None and weight_regularizer:
        term = term + weight_regularizer * weight.float().pow(2).sum() / (1.0 - p)
    return term


@register("penalty", "concrete_dropout")
class ConcreteDropoutPenalty(Penalty):
    """Concrete Dropout's rate and weight regularizer, summed over all its layers (Gal et al., 2017).

    For each layer with rate p, whose output feeds weight matrix W (the next Linear/Conv layer in
    module order) and whose input has K features, the term is
    ``weight_regularizer * ||W||^2 / (1 - p) + dropout_regularizer * K * (p log p + (1-p) log(1-p))``.
    The paper sets ``weight_regularizer = l^2 / (tau N)`` and ``dropout_regularizer = 2 / (tau N)``
    for N training examples, prior length-scale l and model precision tau; the entropy part pulls
    p up, the data term pulls it down.

    Args:
        strength: multiplier of the whole sum.
        weight_regularizer: coefficient of ``||W||^2 / (1 - p)``.
        dropout_regularizer: coefficient of ``K * (p log p + (1-p) log(1-p))``.
    """

    def __init__(self, strength: float = 1.0, weight_regularizer: float = 1e-6, dropout_regularizer: float = 1e-5) -> None:
        super().__init__(strength)
        self.weight_regularizer = float(weight_regularizer)
        self.dropout_regularizer = float(dropout_regularizer)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, weight_regularizer={self.weight_regularizer}, dropout_regularizer={self.dropout_regularizer}"

    def forward(self, module: nn.Module, **context: Any) -> torch.Tensor:
        modules = list(module.modules())
        terms = [
            concrete_dropout_regularizer(m, _following_weight(modules, i), self.weight_regularizer, self.dropout_regularizer)
            for i, m in enumerate(modules)
            if isinstance(m, ConcreteDropout)
        ]
        if not terms:
            raise ValueError(
                "the concrete_dropout penalty found no ConcreteDropout layer in the model; "
                "put {name: concrete_dropout} in a dropout slot of the network"
            )
        return self.strength * torch.stack(terms).sum()


def __getattr__(name: str):
    # The Lightning callback lives in its own module, imported on first use, so that listing or
    # building the layers does not import Lightning.
    if name == "LogDropoutRates":
        from regkit_concrete_dropout.callbacks import LogDropoutRates

        return LogDropoutRates
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
