"""Layer regularizers: the contract every registered one keeps (eval identity, p = 0 identity, rate
validation, shape, bf16, no gradient through dropped units), then each component's statistics over
large tensors, under eager mode and torch.compile."""
from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import regkit
from regkit import registry
from regkit.components.regularizers.drop_connect import DropConnectLinear, apply_drop_connect
from regkit.components.regularizers.drop_path import DropPath, drop_path_rates, set_drop_path_rates
from regkit.components.regularizers.dropout import AlphaDropout, Dropout, GaussianDropout
from regkit.components.regularizers.recurrent import WeightDrop
from regkit.components.regularizers.spatial import DropBlock, SpatialDropout

from conftest import RECIPES, regkit_main

# name -> (constructor arguments besides p, input shape). Components not listed (the recurrent ones,
# plugins) get the contract tests with no extra arguments, on the first of GENERIC_SHAPES they accept.
CASES: dict[str, tuple[dict, tuple[int, ...]]] = {
    "dropout": ({}, (16, 32, 8, 8)),
    "gaussian_dropout": ({}, (16, 32, 8, 8)),
    "alpha_dropout": ({}, (16, 32, 8, 8)),
    "spatial_dropout": ({}, (16, 32, 8, 8)),
    "drop_block": ({"block_size": 3}, (16, 32, 12, 10)),
    "drop_path": ({}, (16, 32, 8, 8)),
    "drop_connect": ({"in_features": 32, "out_features": 24}, (16, 32)),
}


def _loads(name: str) -> bool:
    try:
        registry.get("regularizer", name)
        return True
    except registry.RegistryError:  # a broken plugin is reported by the registry's own tests
        return False


NAMES = [n for n in registry.available("regularizer") if _loads(n)]


GENERIC_SHAPES = [(16, 8, 12, 12), (64, 32)]


def make(name: str, **kwargs):
    if name in CASES:
        extra, shape = CASES[name]
        return regkit.build("regularizer", name, **{**extra, **kwargs}), torch.randn(shape)
    m = regkit.build("regularizer", name, **kwargs)
    for shape in GENERIC_SHAPES:
        x = torch.randn(shape)
        try:
            m.train()(x)
            return m, x
        except (RuntimeError, ValueError):
            continue
    raise AssertionError(f"{name} accepts none of the inputs {GENERIC_SHAPES}")


def has_rate(name: str) -> bool:
    return "p" in {p.name for p in registry.get("regularizer", name).parameters}


def builtin(name: str) -> bool:
    """regkit's own components promise p = 0 identity and 0 <= p < 1; a plugin may define its rate
    differently (concrete dropout learns p in (0, 1)) and is tested by its own package for that."""
    return registry.get("regularizer", name).module.startswith("regkit.")


def deterministic(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What the layer computes with nothing dropped: the input, or for drop_connect a plain Linear."""
    return F.linear(x, m.weight, m.bias) if isinstance(m, nn.Linear) else x


@pytest.mark.parametrize("name", NAMES)
def test_eval_mode_is_identity(name):
    m, x = make(name, **({"p": 0.5} if has_rate(name) else {}))
    m.eval()
    out = m(x)
    assert torch.equal(out, deterministic(m, x))
    if not isinstance(m, nn.Linear):
        assert out is x  # no copy in eval mode


@pytest.mark.parametrize("name", [n for n in NAMES if has_rate(n) and builtin(n)])
def test_zero_rate_is_identity_in_training(name):
    m, x = make(name, p=0.0)
    m.train()
    assert torch.equal(m(x), deterministic(m, x))


@pytest.mark.parametrize("name", [n for n in NAMES if has_rate(n) and builtin(n)])
@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5])
def test_rate_is_validated_with_clear_error(name, bad):
    with pytest.raises(regkit.BadInput, match=r"^p: must be in \[0, 1\), got") as err:
        make(name, p=bad)
    assert err.value.key == "p"  # the CLI prefixes the recipe key of the component


@pytest.mark.parametrize("name", [n for n in NAMES if has_rate(n)])
def test_training_output_is_random_with_same_shape(name):
    m, x = make(name, p=0.3)
    m.train()
    a, b = m(x), m(x)
    assert a.shape == deterministic(m, x).shape
    assert not torch.equal(a, b)
    assert not torch.equal(a, deterministic(m, x))


@pytest.mark.parametrize("name", NAMES)
def test_bf16_autocast(name):
    m, x = make(name, **({"p": 0.3} if has_rate(name) else {}))
    m.train()
    x = x if isinstance(m, nn.Linear) else x.bfloat16()  # a Linear under autocast casts for itself
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(x)
    assert out.dtype == torch.bfloat16
    assert torch.isfinite(out).all()
    if not isinstance(m, (nn.Linear, GaussianDropout)) and has_rate(name):
        assert (out == 0).any()


@pytest.mark.parametrize("name", [n for n in NAMES if has_rate(n) and n != "drop_connect"])
def test_dropped_units_carry_no_gradient_and_no_signal(name):
    """Where the input gets no gradient the output must not depend on the input, and vice versa."""
    m, x = make(name, p=0.3)
    m.train()
    x.requires_grad_(True)
    torch.manual_seed(1)
    out = m(x)
    out.sum().backward()
    kept = x.grad != 0
    torch.manual_seed(1)
    with torch.no_grad():
        shifted = m(x.detach() + 1.0)
    assert torch.equal(shifted[~kept], out.detach()[~kept])
    assert (shifted[kept] != out.detach()[kept]).all()
    if builtin(name) and name != "gaussian_dropout":  # hard masks drop about p of the units
        assert 0.1 < (~kept).float().mean() < 0.6


def test_registry_lists_every_regularizer_with_arguments_and_paper():
    entries = {e.name: e for e in registry.entries("regularizer")}
    for name in CASES:
        entry = entries[name]
        assert re.search(r"\(.*(19|20)\d\d.*\)\.?$", entry.doc), f"{name}: first doc line cites no paper"
        assert "Args:" in entry.obj.__doc__ and "Shape:" in entry.obj.__doc__
    args = {a["name"]: a for a in entries["drop_block"].describe_arguments()}
    assert {"p", "block_size", "warmup_steps", "share_channels"} <= set(args)
    assert args["block_size"]["type"] == "int" and args["block_size"]["default"] == "7"


def test_extra_repr_shows_rate():
    assert "p=0.3" in repr(Dropout(0.3))
    assert "block_size=5" in repr(DropBlock(0.1, 5))
    assert "channels_last=True" in repr(SpatialDropout(0.2, channels_last=True))
    assert "p=0.25" in repr(DropConnectLinear(4, 3, p=0.25))


@pytest.mark.parametrize("cls", [Dropout, DropPath, DropBlock, WeightDrop])
def test_rate_is_settable_and_validated(cls):
    m = cls(0.5)
    m.p = 0.1
    assert m.p == 0.1 and "p=0.1" in repr(m)
    for bad in (1.0, -0.1, None, True, "0.5"):
        with pytest.raises(regkit.BadInput, match="must be in") as err:
            m.p = bad
        assert err.value.key == "p"


@pytest.mark.parametrize("build, key", [
    (lambda: DropBlock(0.1, block_size=0), "block_size"),
    (lambda: DropBlock(0.1, warmup_steps=-1), "warmup_steps"),
    (lambda: DropConnectLinear(4, 3, p=1.0), "p"),
    (lambda: drop_path_rates(1.0, 3), "max_rate"),
    (lambda: drop_path_rates(0.2, 3, min_rate=-0.1), "min_rate"),
    (lambda: drop_path_rates(0.2, 0), "depth"),
    (lambda: WeightDrop(-0.1), "p"),
])
def test_every_argument_check_names_its_argument(build, key):
    """One validation style in regularizers/: regkit.errors.check, a BadInput naming the argument."""
    with pytest.raises(regkit.BadInput) as err:
        build()
    assert err.value.key == key and str(err.value).startswith(f"{key}: ")


# ---- statistics, component by component (large tensors, stated tolerances) ----

@pytest.mark.parametrize("cls", [Dropout, DropPath, SpatialDropout])
def test_inverted_scaling_keeps_the_mean(cls):
    torch.manual_seed(0)
    x = torch.ones(2000, 64, 8)
    out = cls(0.3)(x)
    assert abs(out.mean().item() - 1.0) < 0.03


def test_dropout_rate_and_scale():
    torch.manual_seed(0)
    out = Dropout(0.3)(torch.ones(1000, 1000))
    assert abs((out == 0).float().mean().item() - 0.3) < 0.003
    assert torch.allclose(out[out != 0], torch.tensor(1 / 0.7))
    assert abs(out.mean().item() - 1.0) < 0.005


def test_gaussian_dropout_moments():
    torch.manual_seed(0)
    p = 0.3
    out = GaussianDropout(p)(torch.ones(1000, 1000))
    assert abs(out.mean().item() - 1.0) < 0.005
    assert abs(out.var().item() - p / (1 - p)) < 0.01 * p / (1 - p) * 2
    assert (out != 0).all()


@pytest.mark.parametrize("feature", [False, True])
def test_alpha_dropout_keeps_mean_and_variance(feature):
    torch.manual_seed(0)
    x = torch.randn(4000, 64, 4)
    out = AlphaDropout(0.2, feature=feature)(x)
    assert abs(out.mean().item()) < 0.02
    assert abs(out.std().item() - 1.0) < 0.02
    dropped_value = out[0].flatten().mode().values  # the one value every dropped element takes
    dropped = out == dropped_value
    assert abs(dropped.float().mean().item() - 0.2) < 0.01
    if feature:  # whole channels: constant along the last axis
        assert torch.equal(dropped.all(-1), dropped.any(-1))


@pytest.mark.parametrize(
    "shape,channels_last",
    [((64, 128, 50), False), ((64, 128, 8, 6), False), ((32, 64, 3, 4, 5), False), ((64, 50, 128), True), ((32, 8, 6, 128), True)],
)
def test_spatial_dropout_mask_constant_over_spatial_axes(shape, channels_last):
    torch.manual_seed(0)
    out = SpatialDropout(0.3, channels_last=channels_last)(torch.ones(shape))
    spatial = tuple(range(1, len(shape) - 1)) if channels_last else tuple(range(2, len(shape)))
    assert torch.equal(out.amax(spatial), out.amin(spatial))  # one value per (sample, channel)
    per_channel = out.amax(spatial)
    assert per_channel.shape == ((shape[0], shape[-1]) if channels_last else shape[:2])
    assert abs((per_channel == 0).float().mean().item() - 0.3) < 0.03
    assert abs(out.mean().item() - 1.0) < 0.05


def test_spatial_dropout_on_flat_input_is_dropout():
    torch.manual_seed(0)
    out = SpatialDropout(0.4)(torch.ones(500, 400))
    assert abs((out == 0).float().mean().item() - 0.4) < 0.01


def _is_union_of_blocks(dropped: torch.Tensor, block: tuple[int, int]) -> bool:
    """Morphological opening with a block-sized window leaves ``dropped`` unchanged exactly when
    every dropped unit lies in a fully dropped block."""
    bh, bw = block
    full = -F.max_pool2d(-dropped, (bh, bw), stride=1)  # windows (top-left) that are fully dropped
    opened = F.max_pool2d(F.pad(full, (bw - 1, bw - 1, bh - 1, bh - 1)), (bh, bw), stride=1)
    return torch.equal(opened, dropped)


@pytest.mark.parametrize("block_size,hw", [(3, (32, 24)), (4, (32, 24)), (5, (17, 31)), (2, (16, 16)), (7, (5, 9))])
def test_drop_block_drops_whole_blocks_at_target_rate(block_size, hw):
    torch.manual_seed(0)
    p = 0.15
    x = torch.ones(64, 32, *hw)
    out = DropBlock(p, block_size)(x)
    dropped = (out == 0).float()
    block = (min(block_size, hw[0]), min(block_size, hw[1]))
    assert _is_union_of_blocks(dropped, block)
    rate = dropped.mean().item()
    tol = 0.15 if block_size == 7 else 0.08  # relative; a block as large as the map is the worst case
    assert abs(rate - p) < tol * p, rate
    assert abs(out.mean().item() - 1.0) < 1e-4  # kept units rescaled by total/kept


def test_drop_block_masks_per_channel_or_shared():
    torch.manual_seed(0)
    x = torch.ones(8, 16, 20, 20)
    per_channel = (DropBlock(0.2, 3)(x) == 0)
    shared = (DropBlock(0.2, 3, share_channels=True)(x) == 0)
    assert torch.equal(shared.all(1), shared.any(1))
    assert not torch.equal(per_channel.all(1), per_channel.any(1))


def test_drop_block_rate_schedule():
    torch.manual_seed(0)
    m = DropBlock(0.2, 3, warmup_steps=10)
    x = torch.ones(32, 32, 16, 16)
    assert torch.equal(m(x), x)  # step 0: rate 0
    for _ in range(4):
        m(x)
    assert math.isclose(float(m.current_rate()), 0.1, rel_tol=1e-6)
    half = (m(x) == 0).float().mean().item()
    assert abs(half - 0.1) < 0.015
    with torch.no_grad():  # MC sampling / validation does not advance the schedule
        m(x)
    assert int(m.step) == 6
    for _ in range(10):
        m(x)
    assert math.isclose(float(m.current_rate()), 0.2, rel_tol=1e-6)
    assert "step" in m.state_dict()
    m.p = 0.05  # settable, e.g. from a callback
    assert math.isclose(float(m.current_rate()), 0.05, rel_tol=1e-6)


def test_drop_path_drops_whole_samples():
    torch.manual_seed(0)
    x = torch.rand(4000, 8, 5) + 0.5
    out = DropPath(0.25)(x)
    dropped = (out == 0).flatten(1)
    assert torch.equal(dropped.all(1), dropped.any(1))
    assert abs(dropped.all(1).float().mean().item() - 0.25) < 0.02
    kept = ~dropped.all(1)
    assert torch.allclose(out[kept], x[kept] / 0.75)
    unscaled = DropPath(0.25, scale_by_keep=False)(x)
    keep2 = unscaled.flatten(1).any(1)
    assert torch.equal(unscaled[keep2], x[keep2])


def test_drop_path_per_layer_schedule():
    assert drop_path_rates(0.2, 4) == pytest.approx([0.05, 0.1, 0.15, 0.2])
    model = nn.Sequential(*(nn.Sequential(nn.Linear(4, 4), DropPath(0.0)) for _ in range(3)))
    rates = set_drop_path_rates(model, 0.3)
    assert [m.p for m in model.modules() if isinstance(m, DropPath)] == pytest.approx([0.1, 0.2, 0.3]) == rates
    with pytest.raises(ValueError, match="max_rate"):
        drop_path_rates(1.0, 3)


def test_drop_connect_drops_weights_not_activations():
    torch.manual_seed(0)
    p = 0.4
    layer = DropConnectLinear(500, 400, p=p)
    x = torch.ones(3, 500)
    torch.manual_seed(1)
    out = layer(x)
    torch.manual_seed(1)
    w_eff = layer.weight * (torch.rand(layer.weight.shape) < 1 - p).float().div_(1 - p)  # keep_mask's draw on a CPU
    assert torch.allclose(out, F.linear(x, w_eff, layer.bias), atol=1e-5)
    assert abs((w_eff == 0).float().mean().item() - p) < 0.01
    assert torch.equal(out[0], out[1])  # one weight mask per pass, shared by the batch
    # gradient reaches exactly the kept weights
    torch.manual_seed(1)
    layer(x).sum().backward()
    assert torch.equal(layer.weight.grad == 0, w_eff == 0)


def test_drop_connect_with_torch_func_and_parametrize():
    layer = DropConnectLinear(6, 4, p=0.5).eval()
    w = torch.randn(4, 6)
    x = torch.randn(2, 6)
    out = torch.func.functional_call(layer, {"weight": w, "bias": layer.bias}, (x,))
    assert torch.allclose(out, F.linear(x, w, layer.bias))
    torch.manual_seed(0)
    lin = apply_drop_connect(nn.Linear(300, 200), p=0.3)
    assert abs((lin.weight == 0).float().mean().item() - 0.3) < 0.01
    lin.eval()
    assert torch.equal(lin.weight, lin.parametrizations.weight.original)


# ---- torch.compile ----

def _compile_cases() -> list[nn.Module]:
    return [Dropout(0.3), GaussianDropout(0.3), SpatialDropout(0.3), DropBlock(0.2, 3), DropPath(0.3)]


def _check_compiled_statistics(backend: str) -> None:
    torch._dynamo.reset()
    mods = nn.ModuleList(_compile_cases()).train()
    fn = torch.compile(lambda x: [m(x) for m in mods], backend=backend, fullgraph=True)
    torch.manual_seed(0)
    x = torch.ones(512, 8, 16, 16)  # 512 samples: drop_path's per-sample rate has std 0.02
    outs = fn(x)
    outs2 = fn(x)
    for m, out, out2 in zip(mods, outs, outs2):
        name = type(m).__name__
        assert not torch.equal(out, out2), f"{name}: the same mask twice under torch.compile"
        assert abs(out.mean().item() - 1.0) < (0.12 if isinstance(m, DropPath) else 0.03), name
        if isinstance(m, GaussianDropout):
            assert abs(out.var().item() - 0.3 / 0.7) < 0.02, name
        else:
            target = m.p
            assert abs((out == 0).float().mean().item() - target) < (0.08 if isinstance(m, DropPath) else 0.03), name
    spatial = outs[2]
    assert torch.equal(spatial.amax((2, 3)), spatial.amin((2, 3)))
    assert _is_union_of_blocks((outs[3] == 0).float(), (3, 3))
    path = (outs[4] == 0).flatten(1)
    assert torch.equal(path.all(1), path.any(1))


def test_compile_traces_without_graph_breaks():
    """fullgraph=True: every regularizer traces as one graph (aot_eager backend, quick on CPU)."""
    _check_compiled_statistics("aot_eager")


@pytest.mark.slow
def test_compile_inductor_mask_statistics():
    """Inductor generates its own RNG code for dropout masks; check their statistics (about 60 s of
    C++ compilation on a CPU, hence slow)."""
    _check_compiled_statistics("inductor")


# ---- the S1 recipes through regkit fit; a regularizer switched with one line ----

@pytest.mark.parametrize("recipe", ["mlp_dropout.yaml", "mlp_batchnorm_dropout.yaml"])
def test_recipe_fast_dev_run_through_cli(recipe):
    result = regkit_main(
        "fit", "--config", str(RECIPES / recipe), "--trainer.fast_dev_run", "2", "--data.init_args.limit_train", "512",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Trainer.fit" in result.stderr + result.stdout  # "`Trainer.fit` stopped" is printed at the end


def _fit_with_dropout(name: str) -> None:
    """``--model.init_args.network.dropout NAME`` puts that regularizer in the network regkit fit
    builds (each dropout slot of the MLP but the input's), and the run trains."""
    from regkit.cli.lightning import RegkitCLI

    args = ["--config", str(RECIPES / "mlp_dropout.yaml"), "--trainer.fast_dev_run", "1",
            "--trainer.logger", "false", "--test_after_fit", "false", "--model.init_args.network.dropout", name]
    cli = RegkitCLI(args=args, run=False)  # the objects `regkit fit ARGS` builds, before it fits
    kinds = [type(m) for m in cli.model.network.layers]
    hidden = cli.config["model"]["init_args"]["network"].kwargs["hidden"]
    assert kinds.count(registry.get("regularizer", name).obj) == len(hidden), kinds  # one per hidden layer
    assert kinds.count(Dropout) == 1  # the input's dropout is another slot
    result = regkit_main("fit", *args)
    assert result.returncode == 0, result.stderr[-3000:]


def test_s1_recipe_switches_regularizer_by_one_line():
    _fit_with_dropout("gaussian_dropout")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["alpha_dropout", "drop_path", "spatial_dropout", "variational_dropout"])
def test_s1_recipe_switches_to_each_regularizer(name):
    _fit_with_dropout(name)
