"""Checkpoints usable without the CLI: every task's checkpoint, written by a real ``regkit fit``,
reads with ``torch.load(weights_only=True)`` and rebuilds with ``Task.load_from_checkpoint`` (registry
components, rules and foreign ``class_path`` networks restored); docs/inference.md's code runs."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from conftest import ROOT, RECIPES, require_recipe_packages

import regkit.tasks
from regkit.cli import main

QUICK = ["--trainer.max_steps", "2", "--trainer.limit_val_batches", "1", "--test_after_fit", "false",
         "--trainer.enable_progress_bar", "false", "--trainer.logger", "false"]

CASES = [
    pytest.param("mlp_dropout", "Classifier", [], id="classifier"),
    pytest.param("gan", "GAN", [], id="gan"),
    pytest.param("lstm_ptb_variational", "LanguageModel", [], id="language_model"),
    # a foreign network by class_path, with dropout and drop-path placed by the task's rules
    pytest.param("hf_vit_dropout", "Classifier", [], id="hf_network_and_rules"),
]


@pytest.mark.parametrize("recipe, task, extra", CASES)
def test_every_tasks_checkpoint_loads_without_the_cli(recipe: str, task: str, extra: list[str]) -> None:
    require_recipe_packages(RECIPES / f"{recipe}.yaml")
    assert main(["fit", "--config", recipe, "--run_dir", "run", *QUICK, *extra]) == 0
    checkpoints = sorted(Path("run", "checkpoints").glob("*.ckpt"))
    assert len(checkpoints) >= 2  # last.ckpt and the best one
    for path in checkpoints:  # tensors and plain values only
        torch.load(path, weights_only=True)
    path = Path("run", "checkpoints", "last.ckpt")
    raw = torch.load(path, weights_only=True)
    cls = getattr(regkit.tasks, task)
    model = cls.load_from_checkpoint(path, map_location="cpu")
    assert type(model) is cls
    state = model.state_dict()
    assert state.keys() == raw["state_dict"].keys()
    assert all(torch.equal(state[k], raw["state_dict"][k]) for k in state)
    if recipe == "hf_vit_dropout":  # the rules ran again on the rebuilt foreign network
        assert raw["hyper_parameters"]["regularize"] and len(model.regularization) > 0
        assert "transformers" in raw["hyper_parameters"]["network"]["class_path"]
    # A second load predicts the same in eval mode.
    again = cls.load_from_checkpoint(path, map_location="cpu").eval()
    model.eval()
    if task == "GAN":
        z = torch.randn(4, model.latent_dim)
        assert torch.equal(model.generate(z), again.generate(z))
    elif task == "Classifier":
        x = torch.rand(4, 1, 28, 28)
        with torch.no_grad():
            assert torch.equal(model(x), again(x))


def python_blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(), re.S)


def test_inference_page_code_runs_on_a_fresh_checkpoint(capsys: pytest.CaptureFixture[str]) -> None:
    blocks = python_blocks(ROOT / "docs" / "inference.md")
    assert len(blocks) >= 3
    assert main(["fit", "--config", "mlp_dropout", *QUICK]) == 0  # runs/mlp_dropout/<run id>/
    capsys.readouterr()
    namespace: dict[str, object] = {}
    for block in blocks:
        exec(compile(block, "docs/inference.md", "exec"), namespace)
    out = capsys.readouterr().out
    assert "accuracy on 256 test images" in out and "torch.Size([256, 10])" in out and "MC accuracy" in out
    assert "{'name': 'dropout', 'p': 0.5}" in out
