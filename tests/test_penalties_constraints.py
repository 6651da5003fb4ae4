"""Penalties and constraints: values by hand, parameter selection, and constraints holding after
real optimizer steps through the Classifier task (Lightning Trainer, small synthetic data)."""
from __future__ import annotations

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import regkit
from regkit.components.constraints import MaxNorm, SpectralNorm
from regkit.components.penalties import L1, L2
from regkit.components.regularizers.recurrent import weight_drop
from regkit.tasks import Classifier


def small_mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 3))


def test_l2_and_l1_equal_hand_computation_on_weights_only():
    net = small_mlp()
    w1, w2 = net[0].weight, net[3].weight
    assert torch.allclose(L2(0.01)(net), 0.01 * (w1.pow(2).sum() + w2.pow(2).sum()))
    assert torch.allclose(L1(0.1)(net), 0.1 * (w1.abs().sum() + w2.abs().sum()))  # no biases, no BN scale
    assert torch.allclose(L2(1.0, include="0.*")(net), w1.pow(2).sum())
    assert torch.allclose(L2(1.0, exclude="3.*")(net), w1.pow(2).sum())
    with_bias = L2(1.0, min_dim=1)(net)
    everything = sum(p.pow(2).sum() for p in net.parameters())
    assert torch.allclose(with_bias, everything)
    with pytest.raises(ValueError, match="no parameter"):
        L2(1.0, include="nothing*")(net)


def _fit(task: Classifier, steps: int = 5) -> L.Trainer:
    torch.manual_seed(0)
    x, y = torch.randn(256, 20) * 3, torch.randint(0, 4, (256,))
    trainer = L.Trainer(max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu", log_every_n_steps=1)
    trainer.fit(task, DataLoader(TensorDataset(x, y), batch_size=32))
    return trainer


def _task(**kwargs) -> Classifier:
    torch.manual_seed(0)
    return Classifier(
        {"name": "mlp", "in_features": 20, "hidden": [64, 32], "out_features": 4},
        num_classes=4,
        optimizer=lambda params: torch.optim.SGD(params, lr=5.0),  # big steps push norms past the bound
        **kwargs,
    )


def _row_norms(task: Classifier) -> torch.Tensor:
    return torch.cat([m.weight.norm(dim=1) for m in task.network.modules() if isinstance(m, nn.Linear)])


def test_max_norm_holds_after_optimizer_steps_through_task():
    free = _task()
    _fit(free)
    assert _row_norms(free).max() > 1.0  # without the constraint the bound is exceeded
    bounded = _task(constraints=[{"name": "max_norm", "max_norm": 1.0}], penalties=[{"name": "l2", "strength": 1e-3}])
    trainer = _fit(bounded)
    assert _row_norms(bounded).max() <= 1.0 + 1e-5
    assert "train/penalty/l2" in trainer.logged_metrics  # each penalty's value is logged


def test_spectral_norm_sigma_is_about_one_after_training(tmp_path):
    task = _task(constraints=[{"name": "spectral_norm", "exclude": "layers.5"}])
    names = [n for n, _ in task.network.named_parameters()]
    assert "layers.1.parametrizations.weight.original" in names and "layers.5.weight" in names
    _fit(task, steps=20)
    task.eval()
    linears = [m for m in task.network.modules() if isinstance(m, nn.Linear)]
    sigmas = [torch.linalg.matrix_norm(m.weight.detach(), 2).item() for m in linears]
    assert sigmas[0] == pytest.approx(1.0, abs=0.05) and sigmas[1] == pytest.approx(1.0, abs=0.05)
    assert sigmas[2] > 1.2  # excluded output layer is free
    # the parametrization is part of the model: a checkpoint loads back into a fresh task
    path = tmp_path / "sn.ckpt"
    torch.save({"state_dict": task.state_dict()}, path)
    fresh = _task(constraints=[{"name": "spectral_norm", "exclude": "layers.5"}])
    fresh.load_state_dict(torch.load(path, weights_only=True)["state_dict"])
    fresh.eval()
    x = torch.randn(4, 20)
    assert torch.allclose(fresh(x), task(x))


def test_spectral_norm_selects_layers_by_pattern_and_type_once():
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4, 2))
    sn = SpectralNorm(types=["Conv2d"])
    sn.setup(net)
    sn.setup(net)  # idempotent
    assert len(net[0].parametrizations.weight) == 1
    assert not hasattr(net[2], "parametrizations")
    with pytest.raises(ValueError, match="no Linear"):
        SpectralNorm(include="nothing", types=["Linear"]).setup(net)


def test_max_norm_projection_and_validation():
    torch.manual_seed(0)
    layer = nn.Linear(10, 5)
    with torch.no_grad():
        layer.weight.mul_(10)
    MaxNorm(0.5)(layer)
    assert layer.weight.norm(dim=1).max() <= 0.5 + 1e-6
    with pytest.raises(ValueError):
        regkit.build("constraint", "max_norm", max_norm=0.0)


def _incoming_norms(layer: nn.Module, weight: torch.Tensor) -> torch.Tensor:
    """Norm of each output unit's incoming weights, written out per layer type (the reference)."""
    if isinstance(layer, nn.ConvTranspose2d):  # weight (in, out / groups, kh, kw)
        g, per_group = layer.groups, weight.shape[0] // layer.groups
        return torch.stack([
            weight[gi * per_group:(gi + 1) * per_group, o].norm()
            for gi in range(g) for o in range(weight.shape[1])
        ])
    return torch.stack([weight[o].norm() for o in range(weight.shape[0])])  # (out, in, ...) rows


@pytest.mark.parametrize("make", [
    lambda: nn.Linear(6, 5),
    lambda: nn.Conv2d(3, 4, 3),
    lambda: nn.Conv2d(4, 6, 3, groups=2),
    lambda: nn.ConvTranspose2d(3, 4, 4, stride=2),
    lambda: nn.ConvTranspose2d(4, 6, 3, groups=2),
], ids=["linear", "conv", "conv_groups", "conv_transpose", "conv_transpose_groups"])
def test_max_norm_caps_each_output_units_incoming_weights(make):
    """Issue #13 bug 3: ConvTranspose stores (in, out, k, k); dim 0 is not the output unit."""
    torch.manual_seed(0)
    layer = make()
    with torch.no_grad():
        layer.weight.mul_(20)
    before = _incoming_norms(layer, layer.weight.detach().clone())
    MaxNorm(1.0)(layer)
    after = _incoming_norms(layer, layer.weight.detach())
    assert after.max() <= 1.0 + 1e-5
    torch.testing.assert_close(after, before.clamp(max=1.0), rtol=1e-5, atol=1e-6)  # capped, not more


@pytest.mark.parametrize("cls", [nn.LSTM, nn.GRU, nn.RNN])
def test_max_norm_caps_recurrent_weights_by_default(cls):
    torch.manual_seed(0)
    rnn = cls(6, 8, num_layers=2)
    with torch.no_grad():
        for p in rnn.parameters():
            p.mul_(50)
    MaxNorm(1.0)(rnn)
    for name in ("weight_ih_l0", "weight_hh_l0", "weight_ih_l1", "weight_hh_l1"):
        assert getattr(rnn, name).norm(dim=1).max() <= 1.0 + 1e-5, name
    assert rnn.bias_ih_l0.abs().max() > 1.0  # biases are not units' incoming weights


def test_max_norm_caps_parametrized_weights_under_spectral_norm_and_weight_drop():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    SpectralNorm().setup(net)
    lstm = weight_drop(nn.LSTM(4, 5), p=0.5)
    for original in (net[0].parametrizations.weight.original, lstm.parametrizations.weight_hh_l0.original):
        with torch.no_grad():
            original.mul_(30)
    MaxNorm(1.0)(net)
    MaxNorm(1.0)(lstm)
    assert net[0].parametrizations.weight.original.norm(dim=1).max() <= 1.0 + 1e-5
    assert net[2].parametrizations.weight.original.norm(dim=1).max() <= 1.0 + 1e-5
    assert lstm.parametrizations.weight_hh_l0.original.norm(dim=1).max() <= 1.0 + 1e-5
    # include / exclude see the name the layer uses
    net2 = nn.Sequential(nn.Linear(6, 5), nn.Linear(5, 3))
    SpectralNorm().setup(net2)
    with torch.no_grad():
        for layer in net2:
            layer.parametrizations.weight.original.mul_(30)
    MaxNorm(1.0, exclude="1.weight")(net2)
    assert net2[0].parametrizations.weight.original.norm(dim=1).max() <= 1.0 + 1e-5
    assert net2[1].parametrizations.weight.original.norm(dim=1).max() > 1.0


def test_max_norm_refuses_a_weight_it_cannot_read_by_name():
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.randn(3, 4))

    net = nn.Sequential(nn.Linear(4, 4), Odd())
    with pytest.raises(ValueError, match=r"'1.weight' \(Odd\)"):
        MaxNorm(1.0).setup(net)
    MaxNorm(1.0, exclude="1.*").setup(net)  # left out: fine
    attention = regkit.build("network", "attention_classifier", d_model=16, num_heads=2, ff_dim=16)
    MaxNorm(1.0).setup(attention)  # every weight of regkit's networks is understood
    with pytest.raises(ValueError, match="'position'"):
        MaxNorm(1.0, include="*").setup(attention)
