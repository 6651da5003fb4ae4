"""Monte Carlo dropout: keep every stochastic regularizer sampling at predict time while everything
else (batch norm above all) stays in eval mode, and average T stochastic forward passes into a
predictive distribution (Gal & Ghahramani, 2016, "Dropout as a Bayesian Approximation").

Which modules count as stochastic is decided by one rule,
:func:`regkit.components.regularizers.base.is_stochastic`: modules that inherit ``regkit.StochasticRegularizer``
(every regkit dropout-like layer and attention-dropout block; plugins inherit it too), and torch's
own ``nn.Dropout`` family.

Example::

    with mc_dropout(model):          # dropout on, batch norm in eval
        y1, y2 = model(x), model(x)  # two different samples
    pred = mc_predict(model, x, samples=30)
    pred.mean, pred.variance, pred.entropy, pred.mutual_information
"""
from __future__ import annotations

import contextlib
import warnings
from typing import Any, Callable, Iterator, NamedTuple, Optional

import torch
from torch import nn

from regkit.components.norm import BatchNorm
from regkit.components.regularizers.base import is_stochastic

__all__ = ["MCPrediction", "enable_mc_dropout", "logits_of", "mc_dropout", "mc_predict", "stochastic_modules"]


def stochastic_modules(model: nn.Module) -> list[nn.Module]:
    """The modules of ``model`` that MC dropout keeps in training mode."""
    return [m for m in model.modules() if is_stochastic(m)]


# Norms that behave differently in training (torch's public classes and regkit's batch norms).
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.InstanceNorm1d, nn.InstanceNorm2d,
          nn.InstanceNorm3d, nn.GroupNorm, nn.LayerNorm, BatchNorm)


def _is_norm(module: nn.Module) -> bool:
    return isinstance(module, _NORMS)


def enable_mc_dropout(model: nn.Module) -> list[nn.Module]:
    """Put ``model`` in eval mode except its stochastic regularizers (and their submodules, e.g. a
    weight-drop parametrization), which sample as in training; norms inside them stay in eval.
    Returns the stochastic modules (empty, with a warning, if there are none)."""
    model.eval()
    found = stochastic_modules(model)
    for module in found:
        module.train()
        for sub in module.modules():
            if _is_norm(sub):
                sub.eval()
    if not found:
        warnings.warn(f"MC dropout: {type(model).__name__} has no stochastic regularizer; every sample will be the same",
                      stacklevel=2)
    return found


@contextlib.contextmanager
def mc_dropout(model: nn.Module) -> Iterator[nn.Module]:
    """Context manager: :func:`enable_mc_dropout` inside, every module's previous mode restored after."""
    modes = {m: m.training for m in model.modules()}
    try:
        enable_mc_dropout(model)
        yield model
    finally:
        for module, training in modes.items():
            module.training = training


class MCPrediction(NamedTuple):
    """Predictive distribution from T stochastic forward passes (all over the class axis, last).

    mean: (N, C) mean of the T softmax outputs, the predictive probabilities.
    variance: (N, C) variance of the T probabilities per class.
    entropy: (N,) entropy of ``mean`` in nats (total predictive uncertainty).
    mutual_information: (N,) entropy minus the mean entropy of the samples (BALD; the part of the
        uncertainty that comes from the weights, i.e. what more data would reduce).
    samples: (T, N, C) the probabilities of every pass, when asked for; else None.
    """

    mean: torch.Tensor
    variance: torch.Tensor
    entropy: torch.Tensor
    mutual_information: torch.Tensor
    samples: Optional[torch.Tensor] = None


def logits_of(output: Any) -> torch.Tensor:
    """The logits of a network's output: the tensor itself, or the ``logits`` of a Hugging Face
    model output (or of a mapping), or the first element of a tuple."""
    if isinstance(output, torch.Tensor):
        return output
    logits = output.get("logits") if isinstance(output, dict) else getattr(output, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(f"the network returned a {type(output).__name__}; logits are a tensor, or an output with .logits")


def _entropy(probs: torch.Tensor) -> torch.Tensor:
    return -(probs * probs.clamp_min(1e-12).log()).sum(-1)


@torch.no_grad()
def mc_predict(
    model: nn.Module | Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    samples: int = 30,
    to_probs: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
    keep_samples: bool = False,
    module: Optional[nn.Module] = None,
) -> MCPrediction:
    """Run ``model(x)`` ``samples`` times with MC dropout on and summarize the predictive distribution.

    Args:
        model: returns logits (N, C), or an output holding them (a Hugging Face model's ``.logits``;
            see :func:`logits_of`), or probabilities with ``to_probs=lambda p: p``.
        x: the input batch.
        samples: T, the number of stochastic passes (>= 1).
        to_probs: turns one output into probabilities; softmax over the last axis by default.
        keep_samples: also return the (T, N, C) probabilities.
        module: the module whose regularizers to switch on when ``model`` is a plain function
            (default: ``model`` itself).
    """
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    owner = module if module is not None else model
    if not isinstance(owner, nn.Module):
        raise TypeError("mc_predict: pass the nn.Module whose regularizers to switch on as module=")
    to_probs = to_probs or (lambda output: logits_of(output).float().softmax(-1))
    with mc_dropout(owner):
        probs = torch.stack([to_probs(model(x)) for _ in range(samples)])
    mean = probs.mean(0)
    variance = probs.var(0, correction=0)
    entropy = _entropy(mean)
    mutual_information = (entropy - _entropy(probs).mean(0)).clamp_min(0.0)
    return MCPrediction(mean, variance, entropy, mutual_information, probs if keep_samples else None)
