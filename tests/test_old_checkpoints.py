"""Checkpoints written by regkit 0.1.0 (before the package restructuring) still load: the class
paths they name (``regkit.tasks.classifier.Classifier``, ``regkit.data.MNISTDataModule``, ...) and
their registry names must keep resolving, through the CLI as a user reloads them.

The files in tests/data/checkpoints-0.1.0/ were written by ``regkit fit`` of the recipe of the same
name at commit 0eb648e with tiny widths (``--trainer.max_steps 2``). An even earlier format (Lightning's
instantiator saved next to ``_class_path``) loads too."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import RECIPES, ROOT, regkit_main

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
    proc = regkit_main("validate", "--config", str(RECIPES / f"{recipe}.yaml"), *DATA[recipe], *TINY,
                       "--ckpt_path", str(ckpt))
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_a_checkpoint_in_the_earlier_hparams_format_still_loads(tmp_path):
    """Before this change, tasks under the CLI saved Lightning's instantiator next to `_class_path`;
    such a checkpoint loads with weights_only and rebuilds the same task."""
    import lightning as L
    import torch

    from regkit.tasks import Classifier

    network = {"name": "mlp", "in_features": 784, "hidden": [16], "dropout": {"name": "dropout", "p": 0.5}}
    model = Classifier(network=network)
    hparams = {"_class_path": "regkit.tasks.Classifier", "_instantiator": "lightning.pytorch.cli.instantiate_module",
               "network": network, "num_classes": 10, "mc_samples": 0, "penalties": [], "constraints": []}
    path = tmp_path / "old.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": hparams,
                "pytorch-lightning_version": L.__version__}, path)
    loaded = Classifier.load_from_checkpoint(path, weights_only=True)
    assert loaded.hparams["network"] == network
    assert torch.equal(loaded.network.layers[1].weight, model.network.layers[1].weight)
    # and the new format: plain values and the class path, nothing else
    assert set(model.hparams) == {"_class_path", "network", "num_classes", "mc_samples", "penalties", "constraints",
                                  "regularize", "compile", "channels_last"}
    assert model.hparams["_class_path"] == "regkit.tasks.classifier.Classifier"
