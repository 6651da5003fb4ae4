"""Plugins as users meet them: a local file with --plugins, where each component comes from, and
installed plugins switched off by REGKIT_DISABLE_PLUGIN_AUTOLOAD."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
import torch

from conftest import RECIPES, ROOT, regkit_main, require_plugin, run_regkit
from regkit.components.mc_dropout import is_stochastic

EXAMPLE = ROOT / "examples" / "my_components.py"
EXAMPLE_RECIPE = ROOT / "examples" / "my_recipe.yaml"
QUICK = ["--data.init_args.limit_train", "256", "--trainer.max_epochs", "1", "--trainer.limit_val_batches", "1",
         "--trainer.enable_progress_bar", "false", "--trainer.logger", "false"]


@pytest.fixture
def example_unloaded() -> Iterator[None]:
    """The example plugin's components, registered in this process by ``--plugins``, are removed after
    the test (as if its process had ended)."""
    from regkit import registry

    yield
    registry.unregister("regularizer", "my_noise")
    registry.unregister("penalty", "my_weight_decay")


def test_example_plugin_file_trains_from_its_recipe(tmp_path: Path, example_unloaded: None) -> None:
    """The guide's complete minimal example (docs/plugins.md), run as written plus quick limits."""
    proc = regkit_main("--plugins", str(EXAMPLE), "fit", "--config", str(EXAMPLE_RECIPE), *QUICK)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (last,) = tmp_path.glob("runs/my_recipe/*/checkpoints/last.ckpt")  # the run folder of my_recipe.yaml
    ckpt = torch.load(last, weights_only=True)
    assert ckpt["hyper_parameters"]["network"]["dropout"] == {"name": "my_noise", "sigma": 0.5}
    assert ckpt["global_step"] == 2  # 256 images / batch 128


def test_recipe_naming_a_plugin_component_fails_without_the_plugin(tmp_path: Path) -> None:
    proc = regkit_main("fit", "--config", str(EXAMPLE_RECIPE), *QUICK)
    assert proc.returncode == 2
    assert "unknown regularizer 'my_noise'" in proc.stderr
    assert not (tmp_path / "runs").exists()  # stopped before training: no run folder


def test_list_shows_where_each_component_comes_from(example_unloaded: None) -> None:
    proc = regkit_main("--plugins", str(EXAMPLE), "list", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {(r["kind"], r["name"]): r for r in json.loads(proc.stdout)["components"]}
    assert rows[("regularizer", "my_noise")]["origin"] == str(EXAMPLE)
    assert rows[("regularizer", "dropout")]["origin"] == "regkit"
    assert rows[("network", "mlp")]["origin"] == "regkit"
    installed = {"regkit_concrete_dropout": ("concrete_dropout", "regkit-concrete-dropout"),
                 "regkit_cutout": ("cutout", "regkit-cutout")}
    for module, (name, dist) in installed.items():
        if importlib.util.find_spec(module) is not None:  # CI installs both (see .ci/run)
            assert rows[("regularizer", name)]["origin"] == dist
            assert rows[("regularizer", name)]["version"] == "0.1.0"


def test_example_component_adds_noise_of_the_given_size() -> None:
    from regkit import registry

    registry.load_module(str(EXAMPLE))
    try:
        layer = registry.build("regularizer", "my_noise", sigma=0.3).train()
        decay = registry.build("penalty", "my_weight_decay", strength=2.0)
    finally:
        registry.unregister("regularizer", "my_noise")
        registry.unregister("penalty", "my_weight_decay")
    linear = torch.nn.Linear(3, 2)
    assert decay(linear).item() == pytest.approx(linear.weight.pow(2).sum().item())  # 2.0 * 0.5 * |W|^2
    assert is_stochastic(layer)  # regkit.StochasticRegularizer: MC dropout samples it
    x = torch.zeros(500_000)
    torch.manual_seed(0)
    noise = layer(x)
    assert noise.std().item() == pytest.approx(0.3, rel=0.01)
    assert abs(noise.mean().item()) < 0.003
    assert layer.eval()(x) is x


def test_a_checkpoint_cannot_name_an_installed_plugin_whose_autoload_is_disabled(tmp_path: Path) -> None:
    """REGKIT_DISABLE_PLUGIN_AUTOLOAD=1 turns installed plugins off for the checkpoint trust check too:
    a checkpoint naming a class of one is refused (exit 2, nothing run), as any unknown module is."""
    require_plugin("regkit-cutout")
    hparams = {"_class_path": "regkit.tasks.Classifier",
               "network": {"class_path": "regkit_cutout.Cutout", "init_args": {"size": 8}}}
    ckpt = tmp_path / "cutout.ckpt"
    torch.save({"state_dict": {}, "pytorch-lightning_version": "2.6.6", "epoch": 0, "global_step": 0,
                "hyper_parameters": hparams}, ckpt)
    proc = run_regkit("test", "--config", str(RECIPES / "mlp_dropout.yaml"), "--ckpt_path", str(ckpt),
                      "--trainer.logger", "false", env={"REGKIT_DISABLE_PLUGIN_AUTOLOAD": "1"})
    last = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "regkit_cutout.Cutout" in last and "not a class of regkit" in last, last
    assert not (tmp_path / "runs").exists()

    from regkit.cli.checkpoints import check_trusted_hparams
    from regkit.registry.plugins import autoload_disabled

    if not autoload_disabled():  # this process: the installed plugin is trusted
        check_trusted_hparams(hparams, f"ckpt_path {ckpt}")


def test_plugin_autoload_can_be_disabled():
    require_plugin("regkit-cutout")
    script = "import regkit; print(sorted(regkit.available('regularizer')))"
    env = {k: v for k, v in os.environ.items() if k != "REGKIT_DISABLE_PLUGIN_AUTOLOAD"}
    on = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    off = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                         env={**env, "REGKIT_DISABLE_PLUGIN_AUTOLOAD": "1"})
    assert on.returncode == 0 and off.returncode == 0, on.stderr + off.stderr
    assert "'cutout'" in on.stdout and "'cutout'" not in off.stdout
    assert "'dropout'" in off.stdout  # built-ins are not plugins
