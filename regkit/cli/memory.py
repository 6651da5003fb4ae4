"""Will the model's training state fit? A lower bound checked before the run: the weights, their
gradients and the optimizer's per-weight state (Adam: two moments, SGD with momentum: one, plain
SGD: none; counted by stepping the optimizer class once on one weight) against the memory free on
the device the run trains on. Activations and data are not counted, so a refusal is certain: the
run would run out of memory at its first step, after the run folder and loggers started."""
from __future__ import annotations

import inspect
import resource
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from regkit.errors import BadInput

GIB = 1024**3


def _proc_bytes(path: str, name: str) -> Optional[int]:
    """The ``name:  N kB`` line of a /proc file, in bytes (None where there is no such file or line)."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _cgroup_free() -> Optional[int]:
    """cgroup v2: ``memory.max`` less ``memory.current`` of this process's group, if limited."""
    try:
        group = Path("/proc/self/cgroup").read_text().strip().split("::", 1)[-1]
        folder = Path("/sys/fs/cgroup") / group.lstrip("/")
        limit = (folder / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return int(limit) - int((folder / "memory.current").read_text())
    except (OSError, ValueError):
        return None


def free_cpu_memory() -> tuple[Optional[int], str]:
    """Bytes this process can still allocate, and what bounds it: the machine's ``MemAvailable``,
    a cgroup's ``memory.max``, or the address-space limit (``ulimit -v``), whichever is least."""
    found: list[tuple[int, str]] = []
    available = _proc_bytes("/proc/meminfo", "MemAvailable")
    if available is not None:
        found.append((available, "MemAvailable in /proc/meminfo"))
    cgroup = _cgroup_free()
    if cgroup is not None:
        found.append((cgroup, "the cgroup's memory.max"))
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    size = _proc_bytes("/proc/self/status", "VmSize")
    if soft != resource.RLIM_INFINITY and size is not None:
        found.append((soft - size, "the address-space limit (ulimit -v)"))
    return min(found) if found else (None, "")


def states_per_weight(optimizer: torch.optim.Optimizer) -> int:
    """Tensors the size of a weight that ``optimizer``'s class keeps per weight, found by one step
    of the same class and settings on a weight of 16 numbers."""
    weight = nn.Parameter(torch.zeros(16))
    weight.grad = torch.ones(16)
    cls = type(optimizer)
    try:
        accepted = inspect.signature(cls).parameters
        probe = cls([weight], **{k: v for k, v in optimizer.defaults.items() if k in accepted})
        probe.step()
    except Exception:
        return 2  # as Adam
    return sum(1 for v in probe.state[weight].values() if isinstance(v, torch.Tensor) and v.numel() == 16)


def optimizers_of(model: Any) -> list[torch.optim.Optimizer]:
    """The optimizers ``model.configure_optimizers()`` makes (no state is allocated before a step)."""
    try:
        made = model.configure_optimizers()
    except Exception:
        return []
    items = made if isinstance(made, (list, tuple)) else [made]
    found = []
    for item in items:
        item = item.get("optimizer") if isinstance(item, dict) else item
        if isinstance(item, torch.optim.Optimizer):
            found.append(item)
    return found


def training_bytes(model: nn.Module) -> tuple[int, int]:
    """(bytes of the weights, a lower bound of the bytes training needs: weights + gradients +
    optimizer states)."""
    weights: dict[int, int] = {}
    for p in model.parameters():
        weights[id(p)] = p.numel() * p.element_size()
    trainable = {id(p): weights[id(p)] for p in model.parameters() if p.requires_grad}
    total = sum(weights.values()) + sum(trainable.values())
    for optimizer in optimizers_of(model):
        states = states_per_weight(optimizer)
        total += states * sum(weights.get(id(p), 0) for group in optimizer.param_groups for p in group["params"])
    return sum(weights.values()), total


def check_training_memory(model: nn.Module, device: torch.device, processes: int = 1, free: Optional[int] = None,
                          source: str = "") -> None:
    """Refuse a model whose training state cannot fit in the memory free on ``device`` (``free``
    bytes from ``source``; measured when not given), each of ``processes`` processes on this machine
    holding its own copy when training on the CPU.

    Raises:
        BadInput: keyed ``model``, with the estimate and the memory free.
    """
    weights, needed = training_bytes(model)
    if device.type == "cpu":
        needed *= processes
        if free is None:
            free, source = free_cpu_memory()
        if free is None:
            return
        free += weights  # the weights are built already: they are in memory
    elif device.type == "cuda" and free is None:
        free, source = torch.cuda.mem_get_info(device)[0], f"free memory of {device}"
    if free is None or needed <= free:
        return
    copies = f"{processes} processes x " if processes > 1 and device.type == "cpu" else ""
    raise BadInput(f"needs at least {copies}{(needed / processes if copies else needed) / GIB:.2f} GiB to train (weights {weights / GIB:.2f} GiB, with their "
                   f"gradients and optimizer states; activations not counted) but {max(free, 0) / GIB:.2f} GiB is available "
                   f"on {device.type} ({source}); make the network smaller", "model")

