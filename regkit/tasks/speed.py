"""Speed switches of the tasks (issue #27, docs/speed.md), each off by default: ``compile``
(``torch.compile`` of the task's networks, as ``nn.Module.compile`` so parameter names and
checkpoints stay the same) and ``channels_last`` (convolutional networks and their image inputs in
``torch.channels_last`` memory format). Fused / foreach optimizers are the optimizer's own
``init_args`` (``fused: true``), checked when the recipe is parsed like every optimizer argument.
Where a switch does not always pay (compile on a CPU), :func:`cpu_compile_note` is the line the run
prints at its start.
"""
from __future__ import annotations

from typing import Any, Mapping, Union, cast

import torch
from torch import nn

from regkit.errors import BadInput
from regkit.registry import did_you_mean

# What a ``compile:`` section may hold: torch.compile's arguments, and their allowed values.
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
COMPILE_KEYS = ("mode", "fullgraph", "dynamic", "backend")

CompileSwitch = Union[bool, dict[str, Any]]
"""The type of a task's ``compile`` argument: true / false, or a section of torch.compile's arguments."""


def compile_options(value: Any, key: str = "compile") -> dict[str, Any] | None:
    """The ``torch.compile`` keyword arguments a recipe's ``compile`` value asks for (None: off).

    ``true`` is ``{}`` (torch's defaults: inductor, ``fullgraph: false``); a mapping may set
    ``mode`` (one of :data:`COMPILE_MODES`), ``fullgraph`` (a graph break is an error),
    ``dynamic`` (true / false / null: torch decides) and ``backend`` (e.g. ``eager`` to check for
    graph breaks without code generation). Raises :class:`BadInput` naming the key otherwise."""
    if value is None or value is False:
        return None
    if value is True:
        return {}
    if not isinstance(value, Mapping):
        raise BadInput(f"must be true, false or a mapping of {', '.join(COMPILE_KEYS)}; got {value!r}", key)
    options = dict(value)
    for name in options:
        if name not in COMPILE_KEYS:
            hint = did_you_mean(str(name), COMPILE_KEYS) or f"; it takes {', '.join(COMPILE_KEYS)}"
            raise BadInput(f"unknown compile option {name!r}{hint}", f"{key}.{name}")
    mode = options.get("mode")
    if mode is not None and mode not in COMPILE_MODES:
        hint = did_you_mean(str(mode), COMPILE_MODES) or f"; one of {', '.join(COMPILE_MODES)}"
        raise BadInput(f"unknown compile mode {mode!r}{hint}", f"{key}.mode")
    for flag in ("fullgraph", "dynamic"):
        if flag in options and not (isinstance(options[flag], bool) or (flag == "dynamic" and options[flag] is None)):
            raise BadInput(f"must be true or false{' (or null)' if flag == 'dynamic' else ''}, got {options[flag]!r}",
                           f"{key}.{flag}")
    backend = options.get("backend")
    if backend is not None:
        if not isinstance(backend, str) or backend not in torch.compiler.list_backends(exclude_tags=()):
            names = torch.compiler.list_backends(exclude_tags=())
            hint = did_you_mean(str(backend), names) or f"; one of {', '.join(names)}"
            raise BadInput(f"unknown compile backend {backend!r}{hint}", f"{key}.backend")
    return options


def has_fused_rnn(module: nn.Module) -> bool:
    """Whether ``module`` holds torch's fused ``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN``, which dynamo does
    not trace (it runs them eagerly between two graphs, a graph break)."""
    return any(isinstance(m, nn.RNNBase) for m in module.modules())


def compile_networks(networks: Mapping[str, nn.Module], options: dict[str, Any] | None, key: str = "compile") -> None:
    """Compile each of ``networks`` in place (``nn.Module.compile``: its ``state_dict`` keys do not
    change, so checkpoints of compiled and eager runs are interchangeable). Nothing when ``options``
    is None. ``fullgraph`` with a fused RNN inside is refused here, naming the key, not at the first step."""
    if options is None:
        return
    for name, network in networks.items():
        if options.get("fullgraph") and has_fused_rnn(network):
            raise BadInput(f"the {name} holds a fused nn.LSTM/GRU/RNN, which torch.compile does not trace as one "
                           f"graph; give the network mode: cell_loop, or leave fullgraph off", f"{key}.fullgraph")
    for network in networks.values():
        network.compile(**options)


CONV_2D = (nn.Conv2d, nn.ConvTranspose2d)


def use_channels_last(networks: Mapping[str, nn.Module], on: bool, key: str = "channels_last") -> None:
    """Put the 4-D weights of those ``networks`` that hold a 2-D convolution in ``torch.channels_last``
    memory format (the logical ``(N, C, H, W)`` order is unchanged, only strides); refused, naming
    the key, when none does, where it would change nothing."""
    if not on:
        return
    convolutional = [n for n in networks.values() if any(isinstance(m, CONV_2D) for m in n.modules())]
    if not convolutional:
        raise BadInput(f"the {' and the '.join(networks)} have no 2-D convolution, so channels_last would change "
                       f"nothing; it is for convolutional networks (small_cnn, dcgan_*)", key)
    for network in convolutional:
        # nn.Module.to takes memory_format (torch's docs); its type stubs do not list it.
        cast(Any, network).to(memory_format=torch.channels_last)


def channels_last_input(x: Any, on: bool) -> Any:
    """``x`` in channels-last memory format when ``on`` and it is a 4-D image batch, else ``x``."""
    if on and isinstance(x, torch.Tensor) and x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x


def describe_switches(compile: dict[str, Any] | None, channels_last: bool) -> list[str]:
    """The switches that are on, as the run summary prints them."""
    shown = []
    if compile is not None:
        args = ", ".join(f"{k}={v}" for k, v in sorted(compile.items()))
        shown.append(f"compile ({args or 'torch defaults'})")
    if channels_last:
        shown.append("channels_last")
    return shown


def optimizer_switches(optimizers: Any) -> list[str]:
    """``fused`` / ``foreach`` optimizers among ``optimizers`` (the trainer's), as the summary prints them."""
    shown = []
    for optimizer in optimizers:
        for flag in ("fused", "foreach"):
            if optimizer.defaults.get(flag):
                shown.append(f"{flag} {type(optimizer).__name__}")
    return shown


def apply_switches(networks: Mapping[str, nn.Module], compile: Any, channels_last: bool) -> tuple[dict[str, Any] | None, bool]:
    """Turn on a task's speed switches for its ``networks``; returns the compile options (None: off)
    and whether channels-last is on, which the task keeps as ``compile_options`` and
    ``channels_last`` (its forward and the run summary read them)."""
    options = compile_options(compile)
    use_channels_last(networks, bool(channels_last))
    compile_networks(networks, options)
    return options, bool(channels_last)


CPU_COMPILE_NOTE = ("regkit fit: compile is on for a CPU run: on a CPU, inductor's code was measured slower than eager "
                    "for regkit's MLP and DCGAN and faster for its attention classifier and LSTM language model "
                    "(docs/speed.md, \"The fast path on a CPU\"); for the MLP and the DCGAN the measured fast path "
                    "is eager with a fused optimizer. Compiling as asked.")


def cpu_compile_note(task: nn.Module, device_type: str) -> str | None:
    """The line a run prints at its start when it compiles with inductor on a CPU, where the compiled
    program is slower than eager for some of regkit's networks (benchmarks/RESULTS.md, ``compile``);
    None otherwise (a GPU, or another backend, e.g. ``eager`` for graph-break checks). The run still
    compiles: the user asked for it."""
    options = getattr(task, "compile_options", None)
    if options is None or device_type != "cpu" or options.get("backend", "inductor") != "inductor":
        return None
    return CPU_COMPILE_NOTE
