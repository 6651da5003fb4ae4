"""Parity: regkit's Classifier trained through the Lightning Trainer follows the same loss curve as
a hand-written PyTorch loop with the same seed, data, batches and optimizer (like Lightning's own
parity tests). Uses the benchmark's own loops, so the overhead benchmark compares identical work."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

ROOT = Path(__file__).resolve().parents[1]


def _load_bench_overhead():
    path = ROOT / "benchmarks" / "bench_overhead.py"
    spec = importlib.util.spec_from_file_location("bench_overhead", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_overhead", module)
    spec.loader.exec_module(module)
    return module


bench = _load_bench_overhead()

# A small S1-shaped MLP (input dropout + hidden dropout) so that dropout masks must match too.
NETWORK = {
    "name": "mlp",
    "in_features": 64,
    "hidden": [48, 48],
    "out_features": 10,
    "input_dropout": {"name": "dropout", "p": 0.2},
    "dropout": {"name": "dropout", "p": 0.5},
}
STEPS = 20  # two epochs of 10 batches: the epoch boundary must line up as well


def _data(shuffle: bool) -> DataLoader:
    g = torch.Generator().manual_seed(123)
    x = torch.randn(10 * 16, 1, 8, 8, generator=g)
    y = (x.flatten(1) @ torch.randn(64, 10, generator=g)).argmax(1)  # learnable labels
    return DataLoader(TensorDataset(x, y), batch_size=16, shuffle=shuffle)


@pytest.mark.parametrize("shuffle", [False, True])
def test_trainer_loss_curve_matches_hand_loop(shuffle: bool) -> None:
    data = _data(shuffle)
    net = bench.build_network(NETWORK, seed=7)
    initial = [p.detach().clone() for p in net.parameters()]
    hand = bench.hand_loop(net, data, STEPS, seed=7)
    task = bench.build_task(NETWORK, seed=7)
    trainer = bench.trainer_run(task, data, STEPS, mode="off", seed=7)

    hand_losses, trainer_losses = hand.loss_curve(), trainer.loss_curve()
    assert hand_losses.shape == trainer_losses.shape == (STEPS,)
    torch.testing.assert_close(trainer_losses, hand_losses, atol=1e-5, rtol=0)
    # the weights after training agree as well, not just the logged losses
    for (name, p_hand), p_trainer in zip(net.named_parameters(), task.network.parameters()):
        torch.testing.assert_close(p_trainer, p_hand, atol=1e-5, rtol=0, msg=name)
    # training did something: every parameter moved (Adam's first steps move each by about lr)
    for p0, p in zip(initial, net.parameters()):
        assert (p.detach() - p0).abs().max() > 1e-3


def test_parity_check_detects_a_different_seed() -> None:
    """The comparison above is sharp: another dropout seed gives a visibly different curve."""
    data = _data(shuffle=False)
    a = bench.hand_loop(bench.build_network(NETWORK, seed=7), data, STEPS, seed=7).loss_curve()
    b = bench.trainer_run(bench.build_task(NETWORK, seed=7), data, STEPS, mode="off", seed=8).loss_curve()
    assert (a - b).abs().max() > 1e-3
