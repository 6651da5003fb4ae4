"""bf16 autocast on CPUs without oneDNN's bf16 recurrent kernels.

Under ``bf16-mixed`` on a CPU, torch runs ``nn.LSTM`` through a oneDNN bf16 primitive. CPUs
without bf16 support in oneDNN (AVX2-only, e.g. many AMD EPYC; reproduce with
``ONEDNN_MAX_CPU_ISA=AVX2``) cannot create it and fail with "could not create a primitive
descriptor for the LSTM forward propagation primitive". :func:`run_fused_rnn` asks once per layer
type whether this CPU can run it in bf16 (a tiny forward and backward under autocast) and, where it
cannot, runs that layer in float32 inside the autocast region, saying so once. Everything else stays
in bf16.
"""
from __future__ import annotations

import functools
import warnings
from typing import Any, Optional

import torch
from torch import nn


# Probed once per layer type. A dict rather than functools.cache: torch types nn.Module's __hash__
# as an instance method, so a class object does not pass as Hashable.
_BF16_SUPPORTED: dict[type[nn.Module], bool] = {}


def cpu_bf16_supported(layer_type: type[nn.Module]) -> bool:
    """Whether this CPU runs ``layer_type`` (``nn.LSTM``, ``nn.GRU``, ``nn.RNN``) forward and
    backward under CPU bf16 autocast. Probed once per type with a 2-unit layer.

    The answer is kept, so the probe must not depend on where it is first asked: its first call
    often comes under ``no_grad`` / ``inference_mode`` (the sanity-check validation), where a
    backward cannot run, so it turns gradients on for itself; and it draws its layer's initial
    weights from a forked RNG, so asking (a resumed run asks at another step) changes no stream."""
    if layer_type not in _BF16_SUPPORTED:
        _BF16_SUPPORTED[layer_type] = _probe_bf16(layer_type)
    return _BF16_SUPPORTED[layer_type]


def _probe_bf16(layer_type: type[nn.Module]) -> bool:
    with torch.inference_mode(False), torch.enable_grad(), torch.random.fork_rng(devices=[]):
        layer = layer_type(2, 2, batch_first=True)
        x = torch.zeros(1, 2, 2)
        try:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = layer(x)[0]
            out.float().sum().backward()
        except RuntimeError:  # oneDNN has no bf16 primitive for this layer on this CPU
            return False
    return True


def _to_float(state: Any) -> Any:
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(s.float() for s in state)
    return state.float()


def run_fused_rnn(rnn: nn.Module, x: torch.Tensor, state: Optional[Any] = None) -> tuple[torch.Tensor, Any]:
    """``rnn(x, state)``, in float32 when CPU bf16 autocast is on and this CPU lacks the layer's bf16 kernel."""
    if (
        x.device.type == "cpu"
        and torch.is_autocast_enabled("cpu")
        and torch.get_autocast_dtype("cpu") == torch.bfloat16
        and not cpu_bf16_supported(base := _base_type(rnn))
    ):
        _warn_once(base.__name__)
        with torch.autocast("cpu", enabled=False):
            return rnn(x.float(), _to_float(state))
    return rnn(x, state)


def _base_type(rnn: nn.Module) -> type[nn.Module]:
    """``nn.LSTM`` for an ``nn.LSTM`` or a parametrized one (weight-drop makes a subclass)."""
    for base in (nn.LSTM, nn.GRU, nn.RNN):
        if isinstance(rnn, base):
            return base
    return type(rnn)


@functools.cache
def _warn_once(name: str) -> None:
    warnings.warn(
        f"this CPU has no oneDNN bf16 kernel for nn.{name}: regkit runs the {name} layers in float32 "
        "inside bf16-mixed autocast (the rest of the model stays in bf16)",
        RuntimeWarning,
        stacklevel=3,
    )
