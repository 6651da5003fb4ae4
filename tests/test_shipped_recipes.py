"""The recipes ship with the package: ``regkit recipes`` lists them, ``regkit recipes copy`` copies
one, ``--config NAME`` finds one from any directory, and a wheel installed (not editable) into a
fresh environment has them (regkit/cli/shipped_recipes.py, setup.py)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import RECIPES, ROOT, require_plugin

from regkit.cli import main
from regkit.cli.shipped_recipes import recipes_dir, resolve_names, shipped


def test_every_recipe_in_recipes_is_shipped_with_its_header_lines() -> None:
    assert recipes_dir() == RECIPES  # a source checkout: the top-level folder itself
    listed = {r.name: r for r in shipped() if not r.plugin}  # regkit's own (plugins' below)
    assert sorted(listed) == sorted(p.stem for p in RECIPES.glob("*.yaml"))
    for recipe in listed.values():
        assert recipe.trains, f"recipes/{recipe.name}.yaml has no `# trains:` line"
        assert "epochs" in recipe.cpu
    assert listed["gan"].seed == "S4" and "about 100 s" in listed["gan"].cpu
    assert listed["mlp_dropout"].seed == "S1"
    assert listed["timm_resnet_dropblock"].requires == ["timm"]
    assert listed["hf_vit_dropout"].requires == ["transformers"]
    assert listed["mlp_dropout"].requires == []


def test_regkit_recipes_lists_names_seeds_and_requirements(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["recipes"]) == 0
    lines = capsys.readouterr().out.splitlines()
    gan = next(line for line in lines if line.startswith("gan "))
    assert " S4 " in gan and "DCGAN" in gan and "100 s" in gan
    timm = next(line for line in lines if line.startswith("timm_resnet_dropblock "))
    assert timm.rstrip().endswith("timm")
    assert main(["recipes", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {"name": "gan", "seed": "S4"}.items() <= rows[[r["name"] for r in rows].index("gan")].items()


def test_installed_plugins_recipes_are_listed_with_the_plugins_name_found_by_name_and_copied(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    require_plugin("regkit-cutout")
    require_plugin("regkit-concrete-dropout")
    import regkit_cutout

    # the editable install of plugins/regkit-cutout: recipes/ beside its package (nothing imported to find it)
    shipped_by_cutout = Path(regkit_cutout.__file__).parents[1] / "recipes" / "mlp_cutout.yaml"
    assert main(["recipes"]) == 0
    lines = capsys.readouterr().out.splitlines()
    cutout = next(line for line in lines if line.startswith("mlp_cutout "))
    assert cutout.split()[1] == "regkit-cutout" and "Cutout" in cutout and "12 epochs" in cutout
    assert next(line for line in lines if line.startswith("gan ")).split()[1] == "regkit"
    assert main(["recipes", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["mlp_concrete_dropout"]["plugin"] == "regkit-concrete-dropout" and rows["gan"]["plugin"] == ""
    assert resolve_names(["fit", "--config", "mlp_cutout"]) == ["fit", "--config", str(shipped_by_cutout)]
    assert main(["recipes", "copy", "mlp_cutout"]) == 0
    assert (tmp_path / "mlp_cutout.yaml").read_bytes() == shipped_by_cutout.read_bytes()


def test_recipes_copy_copies_and_never_overwrites(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["recipes", "copy", "gan"]) == 0
    assert (tmp_path / "gan.yaml").read_bytes() == (RECIPES / "gan.yaml").read_bytes()
    assert main(["recipes", "copy", "mlp_dropout", "mine/s1.yaml"]) == 0
    assert (tmp_path / "mine" / "s1.yaml").read_bytes() == (RECIPES / "mlp_dropout.yaml").read_bytes()
    capsys.readouterr()
    assert main(["recipes", "copy", "gan"]) == 2  # exists: refused, the file unchanged
    assert "gan.yaml exists" in capsys.readouterr().err
    assert main(["recipes", "copy", "mlp_dropuot"]) == 2
    assert "shipped recipes like it: mlp_dropout" in capsys.readouterr().err


def test_config_by_name_resolves_to_the_shipped_recipe_unless_a_file_has_that_name(tmp_path: Path) -> None:
    assert resolve_names(["fit", "--config", "gan"]) == ["fit", "--config", str(RECIPES / "gan.yaml")]
    assert resolve_names(["fit", "--config=gan.yaml"]) == ["fit", f"--config={RECIPES / 'gan.yaml'}"]
    (tmp_path / "gan").write_text("trainer: {max_epochs: 1}\n")
    assert resolve_names(["fit", "--config", "gan"]) == ["fit", "--config", "gan"]  # the user's own file wins
    assert resolve_names(["fit", "--config", "nope"]) == ["fit", "--config", "nope"]


def test_config_by_name_runs_the_shipped_recipe(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--config", "mlp_dropout", "--print_config"])
    assert exit_.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["class_path"] == "regkit.tasks.Classifier"
    assert printed["trainer"]["max_epochs"] == yaml.safe_load((RECIPES / "mlp_dropout.yaml").read_text())["trainer"]["max_epochs"]


def test_unknown_recipe_name_exits_2_with_close_matches(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fit", "--config", "gna"]) == 2
    err = capsys.readouterr().err
    assert "--config gna: no such file; shipped recipes like it: gan" in err
    assert not Path("runs").exists()


@pytest.mark.slow
def test_wheel_installed_in_a_fresh_venv_lists_copies_and_trains_a_recipe(tmp_path: Path) -> None:
    """``pip wheel`` + a non-editable install into a new venv (torch, lightning... reused from this
    machine by --system-site-packages), then, from an empty directory: ``regkit recipes``,
    ``regkit recipes copy``, and 2 training steps of ``--config gan`` (the shipped recipe by name)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "WANDB_SERVICE")}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONWARNINGS="ignore")

    def run(*cmd: str | Path, cwd: Path = tmp_path, timeout: float = 600) -> str:
        done = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, f"{' '.join(map(str, cmd))}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return done.stdout

    # Build from a copy of the tracked files, so the checkout gets no build/ or egg-info folders.
    source = tmp_path / "source"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    for name in files:
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).write_bytes((ROOT / name).read_bytes())
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", tmp_path / "dist", source)
    wheel = next((tmp_path / "dist").glob("regkit-*.whl"))
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--system-site-packages", venv)
    python, regkit = venv / "bin" / "python", venv / "bin" / "regkit"
    run(python, "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", wheel)
    shutil.rmtree(source)  # nothing of the checkout is left to find

    empty = tmp_path / "empty"
    empty.mkdir()
    where = run(python, "-c", "import regkit, regkit.cli.shipped_recipes as s; print(regkit.__file__); print(s.recipes_dir())", cwd=empty)
    package, recipes = where.split()
    assert Path(package).is_relative_to(venv) and Path(recipes) == Path(package).parent / "recipes", where

    listing = run(regkit, "recipes", cwd=empty)
    assert any(line.startswith("gan ") and " S4 " in line for line in listing.splitlines()), listing
    run(regkit, "recipes", "copy", "mlp_dropout", cwd=empty)
    assert (empty / "mlp_dropout.yaml").read_bytes() == (RECIPES / "mlp_dropout.yaml").read_bytes()

    env.update(WANDB_MODE="offline", WANDB_DIR=str(tmp_path), WANDB_SILENT="true")
    run(regkit, "fit", "--config", "gan", "--trainer.max_steps", "2", "--trainer.limit_val_batches", "1",
        "--trainer.enable_progress_bar", "false", cwd=empty)
    (run_folder,) = (empty / "runs" / "gan").iterdir()
    assert (run_folder / "checkpoints" / "last.ckpt").is_file()
    assert yaml.safe_load((run_folder / "config.yaml").read_text())["trainer"]["max_steps"] == 2
