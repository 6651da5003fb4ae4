"""Every checkpoint regkit writes reloads through the CLI, for every recipe (tiny budgets; slow)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from conftest import RECIPES, ROOT, require_recipe_packages, run_regkit

ALL = sorted(RECIPES.glob("*.yaml")) + sorted(ROOT.glob("plugins/*/recipes/*.yaml"))
TINY = ["--trainer.max_steps", "2", "--trainer.limit_val_batches", "1", "--trainer.limit_test_batches", "1",
        "--trainer.limit_predict_batches", "1", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false"]


def tiny_data(recipe: Path) -> list[str]:
    data = yaml.safe_load(recipe.read_text())["data"]["class_path"]
    return ["--data.init_args.limit_train_tokens", "2000"] if "PTB" in data else ["--data.init_args.limit_train", "256"]


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ALL, ids=[p.stem for p in ALL])
def test_checkpoint_of_every_recipe_reloads_through_the_cli(recipe: Path, tmp_path: Path) -> None:
    require_recipe_packages(recipe)
    config = ["--config", str(recipe)]
    plugin_env = {"PYTHONPATH": ":".join(str(p) for p in ROOT.glob("plugins/*"))} if "plugins" in str(recipe) else None
    fit = run_regkit("fit", *config, *tiny_data(recipe), *TINY, "--test_after_fit", "false", env=plugin_env)
    assert fit.returncode == 0, fit.stderr[-3000:]
    (ckpt,) = tmp_path.glob(f"runs/{recipe.stem}/*/checkpoints/last.ckpt")
    for command in ["validate", "test", "predict"]:
        proc = run_regkit(command, *config, *tiny_data(recipe), *TINY, "--ckpt_path", str(ckpt), env=plugin_env)
        assert proc.returncode == 0, f"{command}: {proc.stderr[-3000:]}"
    (written,) = ckpt.parent.parent.glob("predict-*/predictions.pt")
    predictions = torch.load(written, weights_only=True)
    assert predictions and all(v.shape[0] > 0 for v in predictions.values())
    more = run_regkit("fit", *config, *tiny_data(recipe), *TINY[2:], "--trainer.max_steps", "4",
                      "--test_after_fit", "false", "--ckpt_path", str(ckpt), env=plugin_env)
    assert more.returncode == 0, more.stderr[-3000:]
    (continued,) = [p for p in tmp_path.glob(f"runs/{recipe.stem}/*/checkpoints/last.ckpt") if p != ckpt]
    assert torch.load(continued, weights_only=True)["global_step"] == 4
