"""MC dropout: which modules sample at predict time, norms kept in eval, the predictive summary,
and the Classifier's mc_samples option at test and predict time."""
from __future__ import annotations

import math

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import regkit
from regkit import registry
from regkit.components.mc_dropout import enable_mc_dropout, mc_dropout, mc_predict, stochastic_modules
from regkit.components.norm import GhostBatchNorm
from regkit.components.regularizers.base import is_stochastic
from regkit.tasks import Classifier


class MarkedNoise(regkit.StochasticRegularizer, nn.Module):
    """A third-party layer marked with regkit's public mixin."""

    def forward(self, x):
        return x + torch.randn_like(x) if self.training else x


class RegisteredNoise(nn.Module):
    """Add unit Gaussian noise in training (test-only plugin, Nobody, 2024)."""

    def forward(self, x):
        return x + torch.randn_like(x) if self.training else x


class OptedOut(nn.Module):
    """A registered but deterministic regularizer, unmarked (test-only plugin, Nobody, 2024)."""

    def forward(self, x):
        return x


@pytest.fixture
def registered_noise():
    regkit.register("regularizer", "test_only_noise")(RegisteredNoise)
    regkit.register("regularizer", "test_only_opted_out")(OptedOut)
    yield
    registry.unregister("regularizer", "test_only_noise")
    registry.unregister("regularizer", "test_only_opted_out")


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(10, 32), nn.BatchNorm1d(32), nn.ReLU(), regkit.build("regularizer", "dropout", p=0.3),
                         nn.Linear(32, 32), GhostBatchNorm(32, 8), nn.Dropout(0.2), nn.Linear(32, 5))


def test_every_kind_of_stochastic_module_is_found(registered_noise):
    torch_family = [nn.Dropout(), nn.Dropout1d(), nn.Dropout2d(), nn.Dropout3d(), nn.AlphaDropout(), nn.FeatureAlphaDropout()]
    regkit_family = [regkit.build("regularizer", n) for n in ["dropout", "gaussian_dropout", "alpha_dropout",
                                                               "spatial_dropout", "drop_block", "drop_path"]]
    regkit_family.append(regkit.build("regularizer", "drop_connect", in_features=3, out_features=2))
    for m in torch_family + regkit_family + [MarkedNoise()]:
        assert is_stochastic(m), type(m).__name__
    # One marker decides: being registered as a regularizer does not make a layer stochastic.
    unmarked = [RegisteredNoise(), OptedOut()]
    for m in [nn.Linear(2, 2), nn.BatchNorm1d(2), GhostBatchNorm(2), nn.ReLU(), nn.LayerNorm(2), *unmarked]:
        assert not is_stochastic(m), type(m).__name__


def test_mc_dropout_samples_while_norms_stay_in_eval():
    net = _net()
    net.train()
    net(torch.randn(64, 10))  # give the norms running statistics
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.randn(16, 10)
    with mc_dropout(net):
        assert not net[1].training and not net[5].training and net[3].training and net[6].training
        a, b = net(x), net(x)
    assert not torch.equal(a, b)  # dropout sampled
    for k, v in net.state_dict().items():  # batch norm statistics untouched
        assert torch.equal(v, before[k]), k
    assert all(m.training for m in net.modules())  # previous modes restored
    net.eval()
    with mc_dropout(net):
        pass
    assert not any(m.training for m in net.modules())
    assert len(stochastic_modules(net)) == 2


def test_mc_predict_summary():
    net = _net().eval()
    x = torch.randn(200, 10) * 3
    torch.manual_seed(0)
    pred = mc_predict(net, x, samples=50, keep_samples=True)
    assert pred.mean.shape == pred.variance.shape == (200, 5) and pred.samples.shape == (50, 200, 5)
    assert torch.allclose(pred.mean.sum(-1), torch.ones(200), atol=1e-5)
    assert torch.allclose(pred.mean, pred.samples.mean(0)) and torch.allclose(pred.variance, pred.samples.var(0, correction=0))
    assert (pred.variance > 0).any() and (pred.mutual_information > 0).all()
    assert (pred.entropy <= math.log(5) + 1e-5).all()
    expected_entropy = -(pred.samples * pred.samples.log()).sum(-1).mean(0)
    assert torch.allclose(pred.entropy - pred.mutual_information, expected_entropy, atol=1e-4)
    assert not any(m.training for m in net.modules())
    one = mc_predict(net, x, samples=1)
    assert torch.equal(one.variance, torch.zeros_like(one.variance))
    with pytest.warns(UserWarning, match="no stochastic"):
        plain = mc_predict(nn.Linear(10, 5), x, samples=3)
    assert torch.equal(plain.variance, torch.zeros_like(plain.variance))
    with pytest.raises(ValueError, match="samples"):
        mc_predict(net, x, samples=0)


def test_enable_mc_dropout_reaches_parametrizations():
    from regkit.components.regularizers.drop_connect import apply_drop_connect

    lin = apply_drop_connect(nn.Linear(50, 40), p=0.5)
    model = nn.Sequential(lin, nn.BatchNorm1d(40))
    found = enable_mc_dropout(model)
    assert len(found) == 1 and not model[1].training
    assert (lin.weight == 0).any()


def _data() -> DataLoader:
    torch.manual_seed(0)
    x = torch.randn(128, 12)
    y = (x[:, 0] > 0).long() + 2 * (x[:, 1] > 0).long()
    return DataLoader(TensorDataset(x, y), batch_size=64)


def test_classifier_mc_samples_logs_calibration_and_predicts_uncertainty():
    torch.manual_seed(0)
    task = Classifier({"name": "mlp", "in_features": 12, "hidden": [32], "out_features": 4,
                       "dropout": {"name": "dropout", "p": 0.3}}, num_classes=4, mc_samples=8)
    trainer = L.Trainer(max_epochs=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu")
    trainer.fit(task, _data())
    metrics = trainer.test(task, _data(), verbose=False)[0]
    for key in ["test/acc", "test/nll", "test/ece", "test/mc_acc", "test/mc_nll", "test/mc_ece"]:
        assert key in metrics
    assert 0 <= metrics["test/mc_ece"] <= 1 and metrics["test/mc_nll"] > 0
    assert metrics["test/nll"] == pytest.approx(metrics["test/loss"], rel=1e-4)
    out = trainer.predict(task, _data())[0]
    assert set(out) == {"probs", "entropy", "variance", "mutual_information"}
    assert torch.allclose(out["probs"].sum(-1), torch.ones(64), atol=1e-5)
    assert out["entropy"].shape == (64,) and (out["variance"] > 0).any()
    plain = Classifier({"name": "mlp", "in_features": 12, "hidden": [8], "out_features": 4}, num_classes=4)
    assert trainer.predict(plain, _data())[0].shape == (64, 4)
    with pytest.raises(ValueError, match="mc_samples"):
        Classifier({"name": "mlp"}, mc_samples=-1)
