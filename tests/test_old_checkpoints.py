"""Checkpoints written by regkit 0.1.0 (before the package restructuring) still load: the class
paths they name (``regkit.tasks.classifier.Classifier``, ``regkit.data.MNISTDataModule``, ...) and
their registry names must keep resolving, through the CLI as a user reloads them.

The files in tests/data/checkpoints-0.1.0/ were written by ``regkit fit`` of the recipe of the same
name at commit 0eb648e with tiny widths (``--trainer.max_steps 2``)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import RECIPES, ROOT, run_regkit

OLD = ROOT / "tests" / "data" / "checkpoints-0.1.0"
TINY = ["--trainer.limit_val_batches", "1", "--trainer.enable_progress_bar", "false", "--trainer.logger", "false"]
DATA = {
    "mlp_dropout": ["--data.init_args.limit_train", "256"],
    "lstm_ptb_variational": ["--data.init_args.limit_train_tokens", "2000"],
    "gan": ["--data.init_args.limit_train", "256"],
}


@pytest.mark.parametrize("recipe", sorted(DATA), ids=sorted(DATA))
def test_a_checkpoint_of_release_0_1_0_validates_through_the_cli(recipe: str, tmp_path: Path) -> None:
    ckpt = OLD / f"{recipe}.ckpt"
    hparams = torch.load(ckpt, weights_only=True)["hyper_parameters"]
    assert hparams["_class_path"].startswith("regkit.tasks.")  # the old module path is what is tested
    proc = run_regkit("validate", "--config", str(RECIPES / f"{recipe}.yaml"), *DATA[recipe], *TINY,
                      "--ckpt_path", str(ckpt))
    assert proc.returncode == 0, proc.stderr[-3000:]
