"""Slot contract: every registered regularizer (plugins included) in every regularizer slot of every
registered network, discriminator and attention block either is refused when the network is built,
with a message naming it and the slot, or regularizes the tensor it gets with the mask structure it
promises (``mask_shared_over``: shared over time, per channel, per sample, ...) in that slot's true
layout.

The true layouts below are written from what each slot's tensor is, independently of what the
network tells the component; the mask is read as the component's linear response
``f(x + 1) - f(x)`` under one seed (the noise multiplying each element: 0 or 1/(1-p) for dropout,
N(1, σ²) for Gaussian dropout, the affine gain for alpha dropout, ...).
"""
from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn

import regkit
from regkit import registry
from regkit.components.layouts import EMBEDDING, FEATURES, MAPS, SEQUENCE, Layout
from regkit.registry import RegularizerSpec

# (kind, name) -> (small constructor arguments, input maker, {slot: {tensor ndim: true layout}})
NETWORKS: dict[tuple[str, str], tuple[dict, callable, dict[str, dict[int, Layout]]]] = {
    ("network", "mlp"): (
        {"in_features": 64, "hidden": [64, 64], "out_features": 3},
        lambda: torch.randn(16, 64),
        {"input_dropout": {2: FEATURES}, "dropout": {2: FEATURES}},
    ),
    ("network", "small_cnn"): (
        {"in_channels": 2, "channels": [4, 4], "image_size": 16, "hidden": 16, "out_features": 3},
        lambda: torch.randn(8, 2, 16, 16),
        {"feature_dropout": {4: MAPS}, "dropout": {2: FEATURES}},
    ),
    ("network", "rnn_lm"): (
        {"vocab_size": 20, "embedding_dim": 16, "hidden_size": 16, "num_layers": 2},
        lambda: torch.randint(20, (8, 7)),
        {"embedding_dropout": {2: EMBEDDING}, "input_dropout": {3: SEQUENCE}, "layer_dropout": {3: SEQUENCE},
         "output_dropout": {3: SEQUENCE}, "weight_drop": {}},
    ),
    ("network", "rnn_classifier"): (
        {"vocab_size": 20, "num_classes": 3, "embedding_dim": 16, "hidden_size": 16, "num_layers": 2},
        lambda: torch.randint(20, (8, 7)),
        {"embedding_dropout": {2: EMBEDDING}, "input_dropout": {3: SEQUENCE}, "layer_dropout": {3: SEQUENCE},
         "output_dropout": {3: SEQUENCE}, "weight_drop": {}},
    ),
    ("network", "attention_classifier"): (
        {"in_features": 8, "max_len": 6, "d_model": 16, "num_heads": 2, "num_layers": 1, "ff_dim": 16,
         "out_features": 3, "attn_dropout": 0.0},
        lambda: torch.randn(8, 6, 8),
        {"dropout": {3: SEQUENCE, 2: FEATURES}},  # (N, L, E) activations; the pooled (N, E) vector
    ),
    ("discriminator", "dcgan_discriminator"): (
        {"image_size": 16, "channels": 2, "width": 4},
        lambda: torch.randn(8, 2, 16, 16),
        {"dropout": {4: MAPS}},
    ),
    ("discriminator", "mlp_discriminator"): (
        {"image_size": 8, "channels": 1, "hidden": [16, 16]},
        lambda: torch.randn(8, 1, 8, 8),
        {"dropout": {2: FEATURES}},
    ),
    ("attention", "multi_head_self_attention"): (
        {"embed_dim": 16, "num_heads": 2, "attn_dropout": 0.0},
        lambda: torch.randn(8, 6, 16),
        {"dropout": {3: SEQUENCE}},
    ),
}
OWNER_KINDS = ("network", "generator", "discriminator", "attention")

# Arguments that make each component's structure visible in small tensors.
EXTRA = {"drop_block": {"block_size": 3}, "cutout": {"size": 4}}


def _loads(kind: str, name: str) -> bool:
    try:
        registry.get(kind, name)
        return True
    except registry.RegistryError:  # a broken plugin is reported by the registry's own tests
        return False


REGULARIZERS = [n for n in registry.available("regularizer") if _loads("regularizer", n)]


def regularizer_slots(kind: str, name: str) -> list[str]:
    entry = registry.get(kind, name)
    return [p.name for p in entry.parameters if "RegularizerSpec" in str(p.annotation)]


def test_every_slot_of_every_builtin_owner_has_a_true_layout():
    """A new network (or slot) must be added above, so the contract covers it."""
    for kind in OWNER_KINDS:
        for entry in registry.entries(kind):
            slots = regularizer_slots(kind, entry.name)
            if not entry.module.startswith("regkit."):
                continue  # a plugin's network: its own package tests its slots
            if slots:
                assert (kind, entry.name) in NETWORKS, f"{kind} {entry.name} has slots {slots} but no true layout here"
                assert sorted(NETWORKS[kind, entry.name][2]) == sorted(slots), entry.name


def spec_for(name: str) -> RegularizerSpec:
    entry = registry.get("regularizer", name)
    args = dict(EXTRA.get(name, {}))
    if "p" in {p.name for p in entry.parameters}:
        args.setdefault("p", 0.5)
    return RegularizerSpec.parse({"name": name, **args})


def mask_of(module: nn.Module, x: torch.Tensor, seed: int) -> torch.Tensor:
    """The noise multiplying each element: f(x + 1) - f(x) with the same random draws."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        base = module(x)
        torch.manual_seed(seed)
        shifted = module(x + 1)
    return (shifted - base).double()


def check_structure(mask: torch.Tensor, axes: tuple[str, ...], shared: tuple[str, ...], what: str) -> None:
    scale = mask.abs().max().clamp_min(1e-12)
    for dim, axis in enumerate(axes):
        if mask.shape[dim] == 1:
            continue
        spread = (mask.amax(dim) - mask.amin(dim)) / scale
        if axis in shared:
            assert spread.max() < 1e-4, f"{what}: mask should be shared over {axis} (dim {dim})"
        else:
            assert spread.max() > 1e-3, f"{what}: mask should vary over {axis} (dim {dim}), one draw for all"


CASES = [
    (kind, net, slot, reg)
    for (kind, net), (_, _, slots) in NETWORKS.items()
    for slot in slots
    for reg in REGULARIZERS
]


@pytest.mark.parametrize("kind,net,slot,reg", CASES, ids=[f"{n}.{s}-{r}" for _, n, s, r in CASES])
def test_regularizer_in_slot_is_refused_or_keeps_its_mask_promise(kind, net, slot, reg):
    args, make_input, slots = NETWORKS[kind, net]
    torch.manual_seed(0)
    try:
        model = regkit.build(kind, net, **args, **{slot: spec_for(reg)})
    except ValueError as err:
        assert reg in str(err) and slot in str(err), f"refusal must name the component and the slot: {err}"
        return
    component = type(spec_for(reg).build(**_required(reg)))
    found = [m for m in model.modules() if type(m) is component]
    assert found, f"{reg} accepted in {net}.{slot} but not in the model"
    if slot == "weight_drop":
        return  # re-parametrizes the RNN's weights; its once-per-forward mask is tested in test_recurrent
    seen: list[tuple[nn.Module, torch.Tensor]] = []
    hooks = [m.register_forward_hook(lambda m, args, out: seen.append((m, args[0].detach()))) for m in found]
    model.train()
    with torch.no_grad():
        model(make_input())
    for h in hooks:
        h.remove()
    assert seen, f"{reg} in {net}.{slot} never ran"
    for i, (module, x) in enumerate(seen):
        layout = slots[slot].get(x.dim())
        assert layout is not None, f"{net}.{slot} passed a {x.dim()}-D tensor, not in its true layouts"
        shared = tuple(getattr(module, "mask_shared_over", ()))
        with torch.no_grad():
            mask = mask_of(module, x + 3.0, seed=i)  # + 3: no exact zeros before the response is read
        check_structure(mask, layout.axis_names(x.dim()), shared, f"{reg} in {net}.{slot} {tuple(x.shape)}")


def _required(name: str) -> dict:
    """Stand-ins for arguments a slot fills, to learn the component's class."""
    entry = registry.get("regularizer", name)
    return {p.name: 4 for p in entry.parameters if p.default is inspect.Parameter.empty}


def test_the_contract_accepts_what_each_layout_is_for():
    """Guard against a contract passed by refusing everything."""
    def accepted(kind, net, slot, reg):
        args = NETWORKS[kind, net][0]
        try:
            regkit.build(kind, net, **args, **{slot: spec_for(reg)})
            return True
        except ValueError:
            return False

    for (kind, net), (_, _, slots) in NETWORKS.items():
        for slot in slots:
            assert accepted(kind, net, slot, "dropout") == (slot != "weight_drop"), f"{net}.{slot}"
            assert accepted(kind, net, slot, "weight_drop") == (slot == "weight_drop"), f"{net}.{slot}"
    A = ("network", "attention_classifier")
    assert accepted(*A, "dropout", "variational_dropout") and accepted(*A, "dropout", "spatial_dropout")
    assert not accepted(*A, "dropout", "drop_block")
    assert accepted("network", "rnn_lm", "embedding_dropout", "embedding_dropout")
    assert not accepted("network", "rnn_lm", "input_dropout", "embedding_dropout")
    assert accepted("network", "small_cnn", "feature_dropout", "drop_block")
    assert not accepted("network", "mlp", "dropout", "drop_block")


def test_layout_arguments_set_by_the_slot_cannot_be_contradicted():
    bad = RegularizerSpec.parse({"name": "variational_dropout", "batch_first": False})
    with pytest.raises(ValueError, match="batch_first=False contradicts.*sequence"):
        regkit.build("network", "rnn_lm", vocab_size=20, embedding_dim=8, hidden_size=8, input_dropout=bad)
    same = RegularizerSpec.parse({"name": "variational_dropout", "batch_first": True})
    regkit.build("network", "rnn_lm", vocab_size=20, embedding_dim=8, hidden_size=8, input_dropout=same)
