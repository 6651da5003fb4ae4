"""Compile contract (issue #27): every registered component (regularizers, norms, attention blocks,
the penalties that are modules, the constraints' parametrizations), every built-in network,
generator and discriminator, and the plugins' components trace through ``torch.compile`` as one
graph (``fullgraph=True``: a graph break is an error), in training and in eval mode.

The ``eager`` backend runs dynamo, which is where graph breaks come from (Python-side randomness,
data-dependent control flow, ``.item()``), and then runs the captured graph eagerly, without
inductor's code generation, so these tests stay fast. A new registered component fails
``test_every_component_has_a_compile_case`` until it gets a case below, so the contract covers it.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import pytest
import torch
from torch import nn

import regkit
from regkit import registry
from regkit.registry import NormSpec, RegularizerSpec

from conftest import require_package, require_plugin

# Plugin components, by the plugin package that registers them (require_plugin fails if missing).
PLUGINS = {("regularizer", "concrete_dropout"): "regkit-concrete-dropout",
           ("penalty", "concrete_dropout"): "regkit-concrete-dropout",
           ("regularizer", "cutout"): "regkit-cutout"}

Case = tuple[Callable[[], nn.Module], Callable[[], tuple], Callable[[nn.Module], Callable[..., Any]]]


def build(kind: str, name: str, **kwargs: Any) -> Callable[[], nn.Module]:
    """A builder of ``(kind, name)``; a dict argument is a component spec (``norm``: a norm, else a regularizer)."""
    def spec(key: str, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        return (NormSpec if key == "norm" else RegularizerSpec).parse(value)

    return lambda: regkit.build(kind, name, **{k: spec(k, v) for k, v in kwargs.items()})


def call(module: nn.Module) -> Callable[..., Any]:
    return module


def maps() -> tuple:
    return (torch.randn(4, 3, 8, 8),)


def features() -> tuple:
    return (torch.randn(4, 16),)


def sequence() -> tuple:
    return (torch.randn(4, 5, 16),)


def tokens() -> tuple:
    return (torch.randint(20, (4, 7)),)


class CellLoop(nn.Module):
    """An LSTM cell with weight drop on its recurrent weight, run over the time steps (one mask per
    call of the cell). Dynamo does not trace torch's fused ``nn.LSTM``/``nn.GRU``/``nn.RNN``, so a
    compiled recurrent network runs ``mode: cell_loop`` (docs/speed.md)."""

    def __init__(self) -> None:
        super().__init__()
        self.cell = regkit.build("regularizer", "weight_drop", p=0.5).apply_to(nn.LSTMCell(16, 16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = c = x.new_zeros(x.shape[0], 16)
        outputs = []
        for step in x.unbind(1):
            h, c = self.cell(step, (h, c))
            outputs.append(h)
        return torch.stack(outputs, 1)


class Parametrized(nn.Module):
    """A Linear layer whose weight a constraint's parametrization (set up once) rewrites."""

    def __init__(self, constraint: Any) -> None:
        super().__init__()
        self.layer = nn.Linear(16, 8)
        constraint.setup(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class Penalized(nn.Module):
    """A small model and a penalty on it: forward returns the penalty term (what the task adds to the loss)."""

    def __init__(self, penalty: nn.Module, model: nn.Module | None = None) -> None:
        super().__init__()
        self.penalty = penalty
        self.model = model if model is not None else nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.penalty(self.model, outputs=x, dropped_outputs=x)


def penalized(name: str, model: Callable[[], nn.Module] | None = None, **kwargs: Any) -> Callable[[], nn.Module]:
    return lambda: Penalized(regkit.build("penalty", name, **kwargs), model() if model else None)


def embedding_weight() -> tuple:
    return (torch.randn(20, 16),)


CASES: dict[tuple[str, str], Case] = {
    # regularizers, each in a layout it supports
    ("regularizer", "dropout"): (build("regularizer", "dropout", p=0.3), features, call),
    ("regularizer", "gaussian_dropout"): (build("regularizer", "gaussian_dropout", p=0.3), features, call),
    ("regularizer", "alpha_dropout"): (build("regularizer", "alpha_dropout", p=0.3, feature=True), maps, call),
    ("regularizer", "spatial_dropout"): (build("regularizer", "spatial_dropout", p=0.3), maps, call),
    ("regularizer", "drop_block"): (build("regularizer", "drop_block", p=0.2, block_size=3, warmup_steps=4), maps, call),
    ("regularizer", "drop_path"): (build("regularizer", "drop_path", p=0.3), sequence, call),
    ("regularizer", "drop_connect"): (build("regularizer", "drop_connect", in_features=16, out_features=8, p=0.3),
                                      features, call),
    ("regularizer", "variational_dropout"): (build("regularizer", "variational_dropout", p=0.3, batch_first=True),
                                             sequence, call),
    ("regularizer", "embedding_dropout"): (build("regularizer", "embedding_dropout", p=0.3), embedding_weight, call),
    ("regularizer", "weight_drop"): (CellLoop, sequence, call),
    ("regularizer", "concrete_dropout"): (build("regularizer", "concrete_dropout", p=0.2), features, call),
    ("regularizer", "cutout"): (build("regularizer", "cutout", size=3, p=0.5), maps, call),
    # norms
    ("norm", "batch_norm"): (build("norm", "batch_norm", num_features=3), maps, call),
    ("norm", "ghost_batch_norm"): (build("norm", "ghost_batch_norm", num_features=3, virtual_batch_size=2), maps, call),
    ("norm", "layer_norm"): (build("norm", "layer_norm", num_features=3), maps, call),
    # attention
    ("attention", "multi_head_self_attention"): (build("attention", "multi_head_self_attention", embed_dim=16,
                                                       num_heads=2, attn_dropout=0.2), sequence, call),
    ("attention", "dot_product_attention"): (build("attention", "dot_product_attention", query_dim=16,
                                                   attn_dropout=0.2), lambda: sequence() * 3, call),
    ("attention", "additive_attention"): (build("attention", "additive_attention", query_dim=16, attn_dropout=0.2),
                                          lambda: sequence() * 3, call),
    ("attention", "attention_pooling"): (build("attention", "attention_pooling", embed_dim=16, num_heads=2,
                                               attn_dropout=0.2), sequence, call),
    ("attention", "squeeze_excitation"): (build("attention", "squeeze_excitation", num_features=8, reduction=2),
                                          lambda: (torch.randn(4, 8, 5, 5),), call),
    # penalties (modules whose forward is the loss term)
    ("penalty", "l1"): (penalized("l1"), sequence, call),
    ("penalty", "l2"): (penalized("l2"), sequence, call),
    ("penalty", "ar"): (penalized("ar"), sequence, call),
    ("penalty", "tar"): (penalized("tar"), sequence, call),
    ("penalty", "concrete_dropout"): (penalized("concrete_dropout", lambda: regkit.build(
        "network", "mlp", in_features=16, hidden=[16], out_features=4,
        dropout=RegularizerSpec.parse({"name": "concrete_dropout"}))),
        sequence, call),
    # constraints: the parametrization one is part of the forward pass; max_norm is a projection
    # after the optimizer step, outside the compiled step (nothing to compile)
    ("constraint", "spectral_norm"): (lambda: Parametrized(regkit.build("constraint", "spectral_norm")), features, call),
    # networks, generators, discriminators, each with a regularizer in every slot
    ("network", "mlp"): (build("network", "mlp", in_features=16, hidden=[16, 16], out_features=3,
                               dropout={"name": "dropout", "p": 0.3}, input_dropout={"name": "gaussian_dropout", "p": 0.2},
                               norm={"name": "batch_norm"}), features, call),
    ("network", "small_cnn"): (build("network", "small_cnn", in_channels=3, channels=[4, 4], image_size=8, hidden=8,
                                     out_features=3, norm={"name": "batch_norm"},
                                     feature_dropout={"name": "drop_block", "p": 0.2, "block_size": 3},
                                     dropout={"name": "dropout", "p": 0.3}), maps, call),
    ("network", "rnn_lm"): (build("network", "rnn_lm", mode="cell_loop", recurrent_dropout=0.2, vocab_size=20, embedding_dim=16, hidden_size=16, num_layers=2,
                                  embedding_dropout={"name": "embedding_dropout", "p": 0.1},
                                  input_dropout={"name": "variational_dropout", "p": 0.3},
                                  layer_dropout={"name": "variational_dropout", "p": 0.3},
                                  output_dropout={"name": "variational_dropout", "p": 0.3},
                                  weight_drop={"name": "weight_drop", "p": 0.3}), tokens, call),
    ("network", "rnn_classifier"): (build("network", "rnn_classifier", mode="cell_loop", vocab_size=20, num_classes=3, embedding_dim=16,
                                          hidden_size=16, embedding_dropout={"name": "embedding_dropout", "p": 0.1},
                                          input_dropout={"name": "spatial_dropout", "p": 0.3},
                                          output_dropout={"name": "dropout", "p": 0.3}), tokens, call),
    ("network", "attention_classifier"): (build("network", "attention_classifier", in_features=8, max_len=6,
                                                d_model=16, num_heads=2, num_layers=1, ff_dim=16, out_features=3,
                                                attn_dropout=0.2, pool_dropout=0.2,
                                                dropout={"name": "drop_path", "p": 0.2}),
                                          lambda: (torch.randn(4, 6, 8),), call),
    ("generator", "dcgan_generator"): (build("generator", "dcgan_generator", latent_dim=8, image_size=16, channels=1,
                                             width=4), lambda: (torch.randn(4, 8),), call),
    ("generator", "mlp_generator"): (build("generator", "mlp_generator", latent_dim=8, image_size=8, channels=1,
                                           hidden=[16, 16]), lambda: (torch.randn(4, 8),), call),
    ("discriminator", "dcgan_discriminator"): (build("discriminator", "dcgan_discriminator", image_size=16, channels=1,
                                                     width=4, dropout={"name": "spatial_dropout", "p": 0.3},
                                                     spectral_norm=True), lambda: (torch.randn(4, 1, 16, 16),), call),
    ("discriminator", "mlp_discriminator"): (build("discriminator", "mlp_discriminator", image_size=8, channels=1,
                                                   hidden=[16, 16], dropout={"name": "dropout", "p": 0.3}),
                                             lambda: (torch.randn(4, 1, 8, 8),), call),
}

# Components with nothing to compile, and why.
NOT_COMPILED = {
    ("constraint", "max_norm"): "a projection of the weights after the optimizer step, outside the forward pass",
    ("penalty", "r1"): "takes torch.autograd.grad of the discriminator (double backward), which dynamo does not trace",
    ("penalty", "gradient_penalty"): "takes torch.autograd.grad of the discriminator (double backward), which dynamo "
                                     "does not trace",
}
KINDS = ("regularizer", "norm", "attention", "penalty", "constraint", "network", "generator", "discriminator")


def test_every_component_has_a_compile_case() -> None:
    """A newly registered component (plugins included) must get a case here, so the contract covers it."""
    for plugin in set(PLUGINS.values()):
        require_plugin(plugin)
    missing = [(kind, e.name) for kind in KINDS for e in registry.entries(kind)
               if (kind, e.name) not in CASES and (kind, e.name) not in NOT_COMPILED]
    assert not missing, f"add a compile case to tests/test_compile.py for {missing}"


def regularized_vit() -> nn.Module:
    """A third-party model regularized by rules (docs/surgery.md): a small Hugging Face ViT built
    from its config, its dropouts set, drop path on every MLP branch, variational dropout inside."""
    require_package("transformers")
    from transformers import ViTConfig, ViTForImageClassification

    from regkit.rules import regularize

    config = ViTConfig(image_size=28, patch_size=7, num_channels=1, hidden_size=16, num_hidden_layers=2,
                       num_attention_heads=2, intermediate_size=32, num_labels=10)
    model = ViTForImageClassification(config)
    regularize(model, [
        {"type": "torch.nn.Dropout", "set": {"p": 0.2}},
        {"path": "vit.*.mlp", "insert": {"name": "drop_path", "p": 0.3}, "depth": "linear"},
        {"path": "vit.*.mlp.fc1", "insert": {"name": "variational_dropout", "p": 0.1}, "layout": "sequence"},
    ])
    return model


THIRD_PARTY: dict[str, Case] = {"hf_vit": (regularized_vit, lambda: (torch.randn(4, 1, 28, 28),), call)}


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("name", list(THIRD_PARTY))
def test_regularized_third_party_model_compiles_without_graph_breaks(name: str, mode: str) -> None:
    make, inputs, method = THIRD_PARTY[name]
    check_compiles(make, inputs, method, mode)


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("key", list(CASES), ids=[f"{k}-{n}" for k, n in CASES])
def test_component_compiles_without_graph_breaks(key: tuple[str, str], mode: str) -> None:
    if key in PLUGINS:
        require_plugin(PLUGINS[key])
    check_compiles(*CASES[key], mode)


def check_compiles(make: Callable[[], nn.Module], inputs: Callable[[], tuple],
                   method: Callable[[nn.Module], Callable[..., Any]], mode: str) -> None:
    """Compile ``method(make())`` with fullgraph in ``mode``; in eval mode it must compute what eager does."""
    torch.manual_seed(0)
    module = make().train(mode == "train")
    torch.compiler.reset()
    compiled = torch.compile(method(module), fullgraph=True, backend="eager")
    args = inputs()
    out = compiled(*args)
    out = out[0] if isinstance(out, tuple) else out
    out = getattr(out, "logits", out)
    assert torch.isfinite(out).all()
    if mode == "eval":  # deterministic: the compiled program computes what eager does
        expected = method(module)(*args)
        expected = expected[0] if isinstance(expected, tuple) else expected
        torch.testing.assert_close(out, getattr(expected, "logits", expected))

# Regularizers whose scheduled rate (``module.p = value`` at every batch) must not recompile: they
# are ScheduledRate modules (every DropoutBase, the drop_connect layer), which read their rate from
# a tensor buffer under torch.compile (alpha dropout's affine map included).
SCHEDULED = {
    "dropout": features, "gaussian_dropout": features, "variational_dropout": sequence,
    "spatial_dropout": maps, "drop_path": sequence, "drop_block": maps, "embedding_dropout": embedding_weight,
    "alpha_dropout": features, "drop_connect": features,
}
SCHEDULED_ARGS = {"drop_block": {"block_size": 3}, "drop_connect": {"in_features": 16, "out_features": 8}}


@pytest.mark.parametrize("name", list(SCHEDULED))
def test_a_scheduled_rate_does_not_recompile(name: str) -> None:
    graphs = []

    def counting(gm: torch.fx.GraphModule, example_inputs: list) -> Callable[..., Any]:
        graphs.append(gm)
        return gm.forward

    module = regkit.build("regularizer", name, **SCHEDULED_ARGS.get(name, {})).train()
    torch.compiler.reset()
    compiled = torch.compile(module, fullgraph=True, backend=counting)
    x = torch.ones(64, 16) if name == "dropout" else SCHEDULED[name]()[0]
    dropped = []
    for step in range(10):
        module.p = 0.05 * step  # as a schedule sets it, 0 included
        dropped.append(float((compiled(x) == 0).float().mean()))
    assert len(graphs) == 1, f"{name}: {len(graphs)} compilations for 10 rates"
    if name == "dropout":  # the compiled program follows the rate it is given
        assert dropped[0] == 0.0 and abs(dropped[-1] - 0.45) < 0.08, dropped


def test_a_plugin_layer_on_scheduled_rate_does_not_recompile() -> None:
    """A plugin's own layer that is not a DropoutBase (here a noisy Linear) gets the same means from
    the public ``regkit.ScheduledRate`` mixin (docs/plugins.md): ``p`` set at every batch, one graph."""
    class NoisyLinear(regkit.StochasticRegularizer, regkit.ScheduledRate, nn.Linear):
        def __init__(self, p: float) -> None:
            super().__init__(16, 8)
            self.p = p

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if not self.training or self.rate_is_zero():
                return super().forward(x)
            rate = self.drop_rate()  # a float in eager mode, the 0-dim buffer under compile
            return super().forward(x) * (1.0 + rate * torch.randn(8))

    graphs = []

    def counting(gm: torch.fx.GraphModule, example_inputs: list) -> Callable[..., Any]:
        graphs.append(gm)
        return gm.forward

    layer = NoisyLinear(0.1).train()
    assert "rate" not in layer.state_dict()
    torch.compiler.reset()
    compiled = torch.compile(layer, fullgraph=True, backend=counting)
    for step in range(6):
        layer.p = 0.1 * step
        compiled(torch.ones(4, 16))
    assert len(graphs) == 1, f"{len(graphs)} compilations for 6 rates"


@pytest.mark.parametrize("feature", [False, True], ids=["elements", "channels"])
def test_compiled_alpha_dropout_has_eager_statistics(feature: bool) -> None:
    """Under compile alpha dropout is computed from the tensor rate (not torch's F.alpha_dropout):
    the same two output values on a constant input (a alpha' + b dropped, a + b kept), the same
    drop rate, a mask shared over positions with ``feature``, and zero mean and unit variance kept."""
    p = 0.3
    module = regkit.build("regularizer", "alpha_dropout", p=p, feature=feature).train()
    torch.compiler.reset()
    compiled = torch.compile(module, fullgraph=True, backend="eager")
    torch.manual_seed(0)
    ones = torch.ones(64, 32, 6, 6)
    eager, traced = module(ones), compiled(ones)
    torch.testing.assert_close(traced.unique(), eager.unique())
    draws = 64 * 32 if feature else ones.numel()
    tolerance = 5 * math.sqrt(p * (1 - p) / draws)
    for out in (eager, traced):
        dropped = out == out.min()
        assert abs(float(dropped.float().mean()) - p) < tolerance
        if feature:
            assert bool((dropped == dropped.amax(dim=(2, 3), keepdim=True)).all()), "one draw per channel"
    normal = torch.randn(256, 64, 4, 4)
    out = compiled(normal)
    assert abs(float(out.mean())) < 0.05 and abs(float(out.std()) - 1.0) < 0.05, (out.mean(), out.std())
    module.eval()
    torch.testing.assert_close(compiled(normal), normal)


# ---------------------------------------------------------------------------------------------
# Semantics under inductor (slow: real code generation on the CPU). Compiled RNG draws other
# numbers than eager (inductor's Philox stream; pytorch/pytorch#141645), so what must agree is the
# distribution: the drop rate, the scaling of kept units, the axes the mask is shared over. On a
# CPU, regkit's element-wise masks are the exception: one opaque operator draws them from torch's
# generator under compile too (keep_mask), so they are the eager masks.


@pytest.mark.slow
def test_inductor_on_a_cpu_draws_the_eager_element_wise_masks() -> None:
    """A compiled MLP with dropout (regkit's ``cpu_keep_mask`` operator) trains on the eager MLP's
    masks under the same seed: outputs and gradients equal to float tolerance, a fresh mask per call."""
    torch.manual_seed(0)
    eager = build("network", "mlp", in_features=64, hidden=[128, 128], out_features=10,
                  input_dropout={"name": "dropout", "p": 0.2}, dropout={"name": "dropout", "p": 0.5})().train()
    compiled_net = build("network", "mlp", in_features=64, hidden=[128, 128], out_features=10,
                         input_dropout={"name": "dropout", "p": 0.2}, dropout={"name": "dropout", "p": 0.5})().train()
    compiled_net.load_state_dict(eager.state_dict())
    torch.compiler.reset()
    compiled = torch.compile(compiled_net, fullgraph=True)  # inductor
    x = torch.randn(32, 64)
    torch.manual_seed(1)
    expected = eager(x)
    expected.square().sum().backward()
    torch.manual_seed(1)
    out = compiled(x)
    out.square().sum().backward()
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)
    for a, b in zip(compiled_net.parameters(), eager.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(compiled(x), compiled(x)), "each call draws a fresh mask"

# name, arguments, input shape, axes the mask is shared over
MASKS = [
    ("dropout", {"p": 0.3}, (256, 256), ()),
    ("variational_dropout", {"p": 0.3, "batch_first": True}, (64, 20, 32), (1,)),  # (N, T, C): over time
    ("spatial_dropout", {"p": 0.3}, (32, 64, 6, 6), (2, 3)),  # (N, C, H, W): over positions
]


def mask_statistics(mask: torch.Tensor, shared: tuple[int, ...]) -> tuple[float, set[float], bool]:
    """(fraction dropped per independent draw, the distinct values, whether constant over ``shared``)."""
    draws = mask.amax(dim=shared, keepdim=True) if shared else mask
    constant = all(bool((mask == mask.amax(dim=d, keepdim=True)).all()) for d in shared)
    return float((draws == 0).float().mean()), {round(v, 5) for v in mask.unique().tolist()}, constant


@pytest.mark.slow
@pytest.mark.parametrize("name,args,shape,shared", MASKS, ids=[m[0] for m in MASKS])
def test_inductor_masks_have_eager_statistics(name: str, args: dict, shape: tuple, shared: tuple) -> None:
    torch.manual_seed(0)
    module = regkit.build("regularizer", name, **args).train()
    torch.compiler.reset()
    compiled = torch.compile(module, fullgraph=True)  # inductor
    x = torch.ones(shape)
    eager_mask, compiled_mask, second = module(x), compiled(x), compiled(x)
    p = args["p"]
    draws = eager_mask.numel() // math.prod(shape[d] for d in shared) if shared else eager_mask.numel()
    tolerance = 5 * math.sqrt(p * (1 - p) / draws)
    eager_rate, eager_values, eager_shared = mask_statistics(eager_mask, shared)
    rate, values, is_shared = mask_statistics(compiled_mask, shared)
    assert eager_values == values == {0.0, round(1 / (1 - p), 5)}, (eager_values, values)  # inverted scaling
    assert abs(eager_rate - p) < tolerance and abs(rate - p) < tolerance, (eager_rate, rate, tolerance)
    assert eager_shared and is_shared, "the mask must be shared over the same axes as eager's"
    assert not torch.equal(compiled_mask, second), "each compiled call draws a fresh mask"
    module.eval()
    torch.testing.assert_close(compiled(x), x)  # identity in eval mode, as eager


@pytest.mark.slow
def test_inductor_network_eval_output_equals_eager_and_mc_dropout_samples() -> None:
    from regkit.components.mc_dropout import mc_dropout

    torch.manual_seed(0)
    net = build("network", "small_cnn", in_channels=3, channels=[4, 4], image_size=8, hidden=8, out_features=3,
                norm={"name": "batch_norm"}, feature_dropout={"name": "spatial_dropout", "p": 0.3},
                dropout={"name": "dropout", "p": 0.3})()
    net(torch.randn(16, 3, 8, 8))  # running statistics that are not the initial ones
    net.eval()
    torch.compiler.reset()
    compiled = torch.compile(net)
    x = torch.randn(8, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), net(x), rtol=1e-4, atol=1e-5)
        with mc_dropout(net):
            first, second = compiled(x), compiled(x)
    assert not torch.allclose(first, second), "MC dropout must still sample under compile"
