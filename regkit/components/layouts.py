"""Slot layouts: what the axes of the tensor in a network's regularizer slot mean.

A regularizer's mask is shaped by the meaning of the axes it acts on (variational dropout shares
its mask over time, spatial dropout over positions, drop path over everything but the sample), and
the same ``(N, L, E)`` tensor is time-first to one convention and batch-first to another. So every
network that owns a slot tells the component the layout of that slot (``fill(spec, SEQUENCE,
...)`` in :mod:`regkit.networks.slots`), and every component says which layouts it works in:

* ``layouts``: class attribute mapping each :class:`Layout` the component supports to the
  constructor arguments that adapt it to that layout (e.g. variational dropout in a sequence slot
  gets ``batch_first=True``). A component without it is taken to be element-wise and works in the
  activation layouts (features, maps, sequence) unchanged. A slot refuses a component whose
  ``layouts`` lack its layout, when the network is built, naming both.
* ``mask_shared_over``: the logical axes (``"batch"``, ``"channel"``, ``"position"``, ...) along
  which the component's mask is constant; default ``()``, element-wise. The slot contract test
  (tests/test_slots.py) checks this promise in every slot of every registered network.

This module imports nothing from regkit, so every component can use it.
"""
from __future__ import annotations

from typing import Any, Mapping, NamedTuple


class Layout(NamedTuple):
    """A slot layout: its name, the logical axis of each dimension (``position`` repeats for any
    number of trailing spatial axes in ``maps``) and the shape as written in docstrings."""

    name: str
    axes: tuple[str, ...]
    shape: str

    def axis_names(self, ndim: int) -> tuple[str, ...]:
        """The logical axis of each of the ``ndim`` dimensions of a tensor in this layout."""
        if self.name == "maps":
            return self.axes[:2] + ("position",) * (ndim - 2)
        if ndim != len(self.axes):
            raise ValueError(f"a {self.name} slot holds {self.shape} tensors, got {ndim} dimensions")
        return self.axes

    def __str__(self) -> str:
        return f"{self.name} {self.shape}"


FEATURES = Layout("features", ("batch", "feature"), "(N, C)")
"""Flat feature vectors, e.g. after a Linear layer (or a flattened image in an MLP's input slot)."""
MAPS = Layout("maps", ("batch", "channel", "position"), "(N, C, *spatial)")
"""Channel-first feature maps (torch's convention): ``(N, C, L)``, ``(N, C, H, W)``, ``(N, C, D, H, W)``."""
SEQUENCE = Layout("sequence", ("batch", "position", "channel"), "(N, T, C)")
"""Batch-first sequences of feature vectors: RNN inputs and outputs, transformer activations."""
EMBEDDING = Layout("embedding", ("row", "channel"), "(num_embeddings, C)")
"""An embedding weight; a row is one word type (the ``embedding_dropout`` slot)."""
RECURRENT = Layout("recurrent", (), "(the RNN layers)")
"""The RNN layers themselves: the component re-parametrizes their weights (``weight_drop``)."""

Layouts = Mapping[Layout, Mapping[str, Any]]
"""The type of a component's ``layouts`` attribute."""

ACTIVATIONS: Layouts = {FEATURES: {}, MAPS: {}, SEQUENCE: {}}
"""What a component without a ``layouts`` attribute supports: element-wise on any activation."""


def layouts_of(component: Any) -> Layouts:
    """The layouts a component class (or factory function) supports, with their arguments."""
    return getattr(component, "layouts", ACTIVATIONS)


def layout_arguments(spec: Any, layout: Layout, slot: str = "") -> dict[str, Any]:
    """The constructor arguments that adapt a spec's component (``regkit.registry.spec.Spec``) to
    ``layout``; ValueError naming it and the slot if it does not work there, or if the recipe sets
    one of those arguments against the layout."""
    supported = layouts_of(spec.entry.obj)
    where = f"the {slot!r} slot" if slot else "a slot"
    if layout not in supported:
        works = ", ".join(str(lay) for lay in supported) or "no network slot (build it directly)"
        raise ValueError(
            f"{spec.kind} {spec.name!r} cannot fill {where}, which holds {layout}; {spec.name} works on: {works}"
        )
    fixed = dict(supported[layout])
    for key, value in fixed.items():
        if key in spec.kwargs and spec.kwargs[key] != value:
            raise ValueError(
                f"{spec.kind} {spec.name!r} in {where}: {key}={spec.kwargs[key]!r} contradicts the slot's "
                f"layout {layout}, which needs {key}={value!r}; leave {key} out"
            )
    return fixed
