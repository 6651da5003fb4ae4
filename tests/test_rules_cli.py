"""Rules and foreign models through the command line: the plan is printable and stops, a bad rule
stops before anything is written naming its key (in a task's regularize: or a Regularize callback),
a model regkit did not build (here a user's own class) trains, and its checkpoint reloads with the
recipe that names it, and is refused without it."""
from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml

from conftest import RECIPES, regkit_main

TINY = ["--trainer.max_steps", "2", "--trainer.limit_val_batches", "1", "--trainer.limit_test_batches", "1",
        "--trainer.logger", "false", "--trainer.enable_progress_bar", "false", "--test_after_fit", "false",
        "--data.init_args.limit_train", "256"]

OWN_MODEL = '''
import torch
from torch import nn


class SmallNet(nn.Module):
    """A user's own network: conv, batch norm, dropout, linear."""

    def __init__(self, width: int = 4, classes: int = 10) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, width, 3, stride=2)
        self.bn = nn.BatchNorm2d(width)
        self.drop = nn.Dropout(0.1)
        self.head = nn.Linear(width * 13 * 13, classes)

    def forward(self, x):
        return self.head(self.drop(torch.relu(self.bn(self.conv(x))).flatten(1)))
'''

RULES = [
    {"type": "torch.nn.BatchNorm2d", "replace": {"name": "ghost_batch_norm", "virtual_batch_size": 16}},
    {"path": "conv", "insert": {"name": "spatial_dropout", "p": 0.1}},
    {"type": "torch.nn.Dropout", "set": {"p": 0.3}},
]


def regkit(*argv: str) -> tuple[int, str]:
    """``regkit ARGV`` in this process (conftest.regkit_main): exit code and all output (a traceback
    fails the caller)."""
    result = regkit_main(*argv)
    return result.returncode, result.stdout + result.stderr


@pytest.fixture
def own_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A recipe whose network is the user's own class (a module on the path) with rules."""
    (tmp_path / "my_models.py").write_text(OWN_MODEL)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "argv", ["regkit"])
    recipe = yaml.safe_load((RECIPES / "mlp_dropout.yaml").read_text())
    recipe["model"]["init_args"]["network"] = {"class_path": "my_models.SmallNet", "init_args": {"width": 4}}
    recipe["model"]["init_args"]["regularize"] = RULES
    path = tmp_path / "own.yaml"
    path.write_text(yaml.safe_dump(recipe))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return path


def test_print_regularization_prints_the_plan_and_writes_nothing(own_model: Path):
    code, out = regkit("fit", "--config", str(own_model), "--print_regularization")
    assert code == 0, out[-3000:]
    lines = [line for line in out.splitlines() if line.startswith("regularize.")]
    assert [line.split()[1:4] for line in lines] == [
        ["bn", "BatchNorm2d", "replace"], ["conv", "Conv2d", "insert"], ["drop", "Dropout", "set"]]
    assert os.listdir(".") == []  # no run folder, no W&B files


@pytest.mark.parametrize("rules, key, text", [
    ([{"path": "head2", "insert": "dropout"}], "model.init_args.regularize.0", "matches no module"),
    ([{"type": "torch.nn.Conv3d", "insert": "dropout"}], "model.init_args.regularize.0", "matches no module"),
    ([{"path": "conv", "insert": {"name": "variational_dropout"}, "layout": "maps"}],
     "model.init_args.regularize.0.insert", "cannot fill"),
    ([{"path": "conv", "isnert": "dropout"}], "model.init_args.regularize.0.isnert", "did you mean 'insert'"),
    ([{"type": "my_models.Missing", "insert": "dropout"}], "model.init_args.regularize.0.type", "has no 'Missing'"),
])
def test_a_bad_rule_stops_before_the_run_naming_its_key(own_model: Path, rules, key, text):
    recipe = yaml.safe_load(own_model.read_text())
    recipe["model"]["init_args"]["regularize"] = rules
    own_model.write_text(yaml.safe_dump(recipe))
    code, out = regkit("fit", "--config", str(own_model), *TINY)
    last = [line for line in out.splitlines() if line.strip()][-1]
    assert code == 2, out[-3000:]
    assert f"error: {key}:" in last and text in last, last
    assert "Traceback" not in out
    assert os.listdir(".") == []


def test_a_bad_rule_of_the_callback_names_the_callback_s_key(own_model: Path):
    recipe = yaml.safe_load(own_model.read_text())
    recipe["model"]["init_args"].pop("regularize")
    recipe["trainer"]["callbacks"] = [{"class_path": "regkit.callbacks.Regularize",
                                       "init_args": {"rules": [{"path": "nothing", "insert": "dropout"}],
                                                     "module": "network"}}]
    own_model.write_text(yaml.safe_dump(recipe))
    code, out = regkit("fit", "--config", str(own_model), *TINY)
    assert code == 2, out[-3000:]
    assert "trainer.callbacks.0.init_args.rules.0: matches no module" in out
    assert os.listdir(".") == []


def test_a_foreign_model_trains_and_its_checkpoint_needs_the_recipe_that_names_it(own_model: Path):
    code, out = regkit("fit", "--config", str(own_model), *TINY)
    assert code == 0, out[-3000:]
    (run,) = Path("runs/own").iterdir()
    assert "ghost_batch_norm" in (run / "regularization.txt").read_text()  # the plan is in the run's record
    ckpt = run / "checkpoints" / "last.ckpt"
    hparams = torch.load(ckpt, weights_only=True)["hyper_parameters"]
    assert hparams["network"]["class_path"] == "my_models.SmallNet" and hparams["regularize"][0]["replace"]
    code, out = regkit("validate", "--config", str(own_model), *TINY[:-6], "--ckpt_path", str(ckpt))
    assert code == 0, out[-3000:]
    # Without the recipe the checkpoint alone may not choose the class to import.
    bare = yaml.safe_load((RECIPES / "mlp_dropout.yaml").read_text())
    Path("bare.yaml").write_text(yaml.safe_dump(bare))
    code, out = regkit("validate", "--config", "bare.yaml", *TINY[:-6], "--ckpt_path", str(ckpt))
    assert code == 2 and "my_models.SmallNet" in out and "not a class of regkit" in out, out[-3000:]


def test_rules_are_shown_by_regkit_list():
    code, out = regkit("list", "rule")
    assert code == 0
    for key in ("path", "type", "insert", "replace", "set", "wrap", "penalty", "constraint", "layout", "depth"):
        assert f"\n  {key} " in out
    assert textwrap.dedent(out).count("\n") > 12
