"""Concrete Dropout: mask statistics, learned rate, the regularization term, and use from a recipe."""
from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import regkit
from regkit_concrete_dropout import ConcreteDropout, ConcreteDropoutPenalty, concrete_dropout

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "mlp_concrete_dropout.yaml"


@pytest.mark.parametrize("p", [0.1, 0.3, 0.6])
def test_mask_drops_a_fraction_p_and_keeps_the_mean(p: float) -> None:
    torch.manual_seed(0)
    layer = ConcreteDropout(p=p).train()
    x = torch.ones(1_000_000)
    y = layer(x).detach()
    kept_scale = 1 / (1 - p)
    dropped = (y < 0.5 * kept_scale).float().mean().item()
    assert dropped == pytest.approx(p, abs=0.003)  # P(drop > 0.5) is exactly p
    assert y.mean().item() == pytest.approx(1.0, abs=0.01)
    # temperature 0.1: the relaxed mask is mostly near 0 or 1 (at temperature 1 about half is not)
    near_binary = ((y < 0.05 * kept_scale) | (y > 0.95 * kept_scale)).float().mean().item()
    assert near_binary > 0.8


def test_lower_temperature_gives_a_harder_mask() -> None:
    torch.manual_seed(0)
    x = torch.ones(200_000)
    soft = concrete_dropout(x, torch.tensor(0.0), temperature=1.0)
    hard = concrete_dropout(x, torch.tensor(0.0), temperature=0.01)
    middle = lambda y: ((y > 0.2) & (y < 1.8)).float().mean().item()  # noqa: E731
    assert middle(hard) < 0.05 < middle(soft)


def test_identity_in_eval_and_p_is_a_parameter() -> None:
    layer = ConcreteDropout(p=0.25)
    assert layer.p.item() == pytest.approx(0.25, rel=1e-6)
    assert any(param is layer.p_logit for param in layer.parameters())
    x = torch.randn(8, 16)
    assert layer.eval()(x) is x


def test_gradient_reaches_the_drop_rate() -> None:
    torch.manual_seed(0)
    layer = ConcreteDropout(p=0.2).train()
    x = torch.randn(64, 32)
    (layer(x) ** 2).sum().backward()
    assert layer.p_logit.grad is not None and layer.p_logit.grad.abs().item() > 0


def test_bf16_autocast_keeps_the_dtype() -> None:
    layer = ConcreteDropout(p=0.3).train()
    x = torch.randn(4, 100, dtype=torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(x)
    assert y.dtype == torch.bfloat16 and torch.isfinite(y.float()).all()


def test_penalty_equals_the_papers_formula_summed_over_layers() -> None:
    net = regkit.NetworkSpec.parse({
        "name": "mlp", "in_features": 20, "hidden": [16, 12], "out_features": 3,
        "input_dropout": {"name": "concrete_dropout", "p": 0.2}, "dropout": {"name": "concrete_dropout", "p": 0.4},
    }).build()
    layers = [m for m in net.modules() if isinstance(m, ConcreteDropout)]
    linears = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert len(layers) == 3 and [m.num_features for m in layers] == [20, 16, 12]  # slot fills K
    wr, dr = 1e-3, 1e-2
    penalty = ConcreteDropoutPenalty(strength=2.0, weight_regularizer=wr, dropout_regularizer=dr)
    expected = 0.0
    for layer, following in zip(layers, linears):  # each dropout feeds the next Linear
        p = layer.p.item()
        expected += wr * following.weight.pow(2).sum().item() / (1 - p)
        expected += dr * layer.num_features * (p * math.log(p) + (1 - p) * math.log(1 - p))
    assert penalty(net).item() == pytest.approx(2.0 * expected, rel=1e-5)


def test_entropy_term_pulls_a_small_rate_up() -> None:
    layer = ConcreteDropout(p=0.05, num_features=100)
    penalty = ConcreteDropoutPenalty(weight_regularizer=0.0, dropout_regularizer=1.0)
    opt = torch.optim.SGD(layer.parameters(), lr=0.01)
    for _ in range(50):
        opt.zero_grad()
        penalty(layer).backward()
        opt.step()
    assert 0.3 < layer.p.item() <= 0.5  # maximum entropy is at p = 0.5


def test_penalty_without_layers_says_what_to_do() -> None:
    with pytest.raises(ValueError, match="no ConcreteDropout layer"):
        ConcreteDropoutPenalty()(torch.nn.Linear(3, 3))


def test_registered_by_name_from_the_installed_package() -> None:
    assert "concrete_dropout" in regkit.available("regularizer")
    assert "concrete_dropout" in regkit.available("penalty")
    entry = regkit.entries("regularizer", "concrete_dropout")[0]
    assert entry.origin == "regkit-concrete-dropout"
    assert isinstance(regkit.build("penalty", "concrete_dropout", strength=0.5), ConcreteDropoutPenalty)


def test_example_recipe_trains_and_logs_learned_rates(tmp_path: Path) -> None:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "PYTHONWARNINGS": "ignore"}
    out = subprocess.run(
        [sys.executable, "-m", "regkit.cli", "fit", "--config", str(RECIPE),
         "--data.init_args.limit_train", "512", "--trainer.max_epochs", "1", "--trainer.limit_val_batches", "1",
         "--test_after_fit", "false", "--trainer.enable_progress_bar", "false",
         "--trainer.logger", "lightning.pytorch.loggers.CSVLogger", "--trainer.logger.save_dir", "logs"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    rows = list(csv.DictReader(next(tmp_path.glob("logs/**/metrics.csv")).open()))
    rates = {k: float(r[k]) for r in rows for k in r if k.startswith("concrete_dropout/") and r[k]}
    assert len(rates) == 3 and all(0.0 < p < 1.0 for p in rates.values())
    assert any(abs(p - 0.1) > 1e-5 for p in rates.values())  # the rates were trained
