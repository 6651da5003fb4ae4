"""Cutout: cut area and shape statistics, channels, eval identity, flattened inputs, use from a recipe."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import regkit
from regkit_cutout import Cutout, cutout

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "mlp_cutout.yaml"


def expected_side(length: int, size: int) -> float:
    """Mean overlap of [c - size//2, c - size//2 + size) with [0, length), c uniform in 0..length-1."""
    total = 0
    for c in range(length):
        lo, hi = max(c - size // 2, 0), min(c - size // 2 + size, length)
        total += max(hi - lo, 0)
    return total / length


@pytest.mark.parametrize("size,h,w", [(8, 28, 28), (5, 20, 32), (16, 32, 32)])
def test_mean_cut_area_matches_uniform_centres(size: int, h: int, w: int) -> None:
    torch.manual_seed(0)
    y = cutout(torch.ones(20_000, 1, h, w), size)
    cut = (y == 0).flatten(1).sum(1).float()
    assert cut.mean().item() == pytest.approx(expected_side(h, size) * expected_side(w, size), rel=0.02)
    assert cut.max().item() == size * size  # a square fully inside is exactly size x size (odd sizes too)


def test_each_cut_is_one_rectangle_shared_by_all_channels() -> None:
    torch.manual_seed(1)
    y = cutout(torch.ones(500, 3, 28, 28), 8)
    assert torch.equal(y[:, 0], y[:, 1]) and torch.equal(y[:, 0], y[:, 2])
    for img in y[:, 0]:
        zeros = (img == 0).nonzero()
        rows, cols = zeros[:, 0], zeros[:, 1]
        box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
        assert box.item() == len(zeros) and box.item() <= 64


def test_values_outside_the_square_are_untouched() -> None:
    torch.manual_seed(2)
    x = torch.randn(100, 2, 16, 16)
    y = cutout(x, 6)
    kept = y != 0
    assert torch.equal(y[kept], x[kept])  # no rescaling


def test_probability_of_cutting() -> None:
    torch.manual_seed(3)
    y = Cutout(size=4, p=0.3).train()(torch.ones(20_000, 1, 12, 12))
    cut_images = (y == 0).flatten(1).any(1).float().mean().item()
    assert cut_images == pytest.approx(0.3, abs=0.015)


def test_identity_in_eval_and_at_p_zero() -> None:
    x = torch.randn(4, 1, 28, 28)
    assert Cutout(8).eval()(x) is x
    assert Cutout(8, p=0.0).train()(x) is x


def test_flattened_inputs_are_viewed_as_images() -> None:
    torch.manual_seed(4)
    y = Cutout(size=8).train()(torch.ones(200, 784)).reshape(200, 28, 28)
    zeros = (y == 0).nonzero()
    first = zeros[zeros[:, 0] == 0]
    box = (first[:, 1].max() - first[:, 1].min() + 1) * (first[:, 2].max() - first[:, 2].min() + 1)
    assert box.item() == len(first)  # a rectangle in 28x28, not a strip of the flat vector
    y3 = Cutout(size=4, image_shape=[3, 8, 8]).train()(torch.ones(10, 192)).reshape(10, 3, 8, 8)
    assert torch.equal(y3[:, 0], y3[:, 2])
    with pytest.raises(ValueError, match="image_shape"):
        Cutout(4).train()(torch.ones(2, 10))


def test_in_the_input_slot_of_an_mlp_by_name() -> None:
    net = regkit.NetworkSpec.parse(
        {"name": "mlp", "in_features": 784, "hidden": [32], "input_dropout": {"name": "cutout", "size": 8}}
    ).build()
    assert any(isinstance(m, Cutout) for m in net.modules())
    assert net(torch.randn(5, 1, 28, 28)).shape == (5, 10)
    assert regkit.entries("regularizer", "cutout")[0].origin == "regkit-cutout"


def test_example_recipe_trains(tmp_path: Path) -> None:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "PYTHONWARNINGS": "ignore"}
    out = subprocess.run(
        [sys.executable, "-m", "regkit.cli", "fit", "--config", str(RECIPE),
         "--data.init_args.limit_train", "512", "--trainer.max_epochs", "1", "--trainer.limit_val_batches", "1",
         "--test_after_fit", "false", "--trainer.enable_progress_bar", "false", "--trainer.logger", "false"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    # even with no logger the run has its own folder, runs/<recipe>/<run id>/
    assert len(list(tmp_path.glob(f"runs/{RECIPE.stem}/*/checkpoints/last.ckpt"))) == 1
