"""The second red-team list of issue #25, findings 2, 6 and 7: a checkpoint cannot choose a module to
import (any dotted string it carries, not only ``class_path``), a YAML alias bomb stops at once, an
empty recipe or a plugin that exits is named, ``override=True`` overrides, and ``regkit compare``
checks its whole grid before the first run."""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from conftest import regkit_main

QUICK = ["--trainer.max_steps", "2", "--trainer.limit_val_batches", "1", "--test_after_fit", "false",
         "--trainer.enable_progress_bar", "false", "--trainer.logger", "false", "--data.init_args.limit_train", "256"]
EVALUATE = ["--trainer.limit_test_batches", "1", "--trainer.enable_progress_bar", "false", "--trainer.logger", "false"]
# A module on sys.path whose import leaves a file behind: proof that something imported it.
SENTINEL = "untrusted_sentinel"
ZEN = "Beautiful is better than ugly"


@pytest.fixture(scope="module")
def real_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """last.ckpt of a real (tiny) ``regkit fit`` of the mlp_dropout recipe."""
    run = tmp_path_factory.mktemp("fit") / "run"
    cwd = os.getcwd()
    os.chdir(run.parent)
    try:
        result = regkit_main("fit", "--config", "mlp_dropout", "--run_dir", str(run), *QUICK)
    finally:
        os.chdir(cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    return run / "checkpoints" / "last.ckpt"


@pytest.fixture
def sentinel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The marker file :data:`SENTINEL` writes when it is imported (it must never exist)."""
    marker = tmp_path / "imported.txt"
    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / f"{SENTINEL}.py").write_text(
        f"open({str(marker)!r}, 'w').write('imported')\n"
        "def anything(*args, **kwargs):\n    return None\n"
        "class Anything:\n    def __init__(self, *args, **kwargs):\n        pass\n")
    monkeypatch.syspath_prepend(str(modules))
    monkeypatch.delitem(sys.modules, SENTINEL, raising=False)
    return marker


def edited(source: Path, target: Path, field: str, key: str, value: Any) -> Path:
    """A copy of a checkpoint with one (dotted) key of ``field`` set to ``value``."""
    ckpt = torch.load(source, weights_only=True)
    *parents, last = key.split(".")
    node = ckpt[field]
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    node[last] = value
    torch.save(ckpt, target)
    return target


HPARAMS, DATA = "hyper_parameters", "datamodule_hyper_parameters"
EDITS = [
    # jsonargparse imports a plain string where the type is a callable (the optimizer factory)
    pytest.param(HPARAMS, "optimizer", "this.s", "optimizer", id="optimizer-string"),
    pytest.param(HPARAMS, "optimizer", f"{SENTINEL}.anything", "optimizer", id="optimizer-sentinel"),
    pytest.param(HPARAMS, "lr_scheduler", f"{SENTINEL}.anything", "lr_scheduler", id="lr-scheduler-string"),
    pytest.param(HPARAMS, "optimizer", {"class_path": "torch.optim.SGD", "init_args": {"lr": f"{SENTINEL}.Anything"}},
                 "optimizer.init_args.lr", id="nested-init-args-value"),
    pytest.param(HPARAMS, "network.dropout", {"name": "dropout", "p": [f"{SENTINEL}.anything"]},
                 "network.dropout.p.0", id="string-in-a-list"),
    pytest.param(HPARAMS, "_class_path", f"{SENTINEL}.Anything", "_class_path", id="task-class-path"),
    pytest.param(DATA, "_instantiator", f"{SENTINEL}.anything", "_instantiator", id="data-instantiator"),
    pytest.param(DATA, "_class_path", f"{SENTINEL}.Anything", "_class_path", id="data-class-path"),
]


@pytest.mark.parametrize("field, key, value, named", EDITS)
def test_no_string_of_a_checkpoint_imports_an_untrusted_module(
        real_checkpoint: Path, sentinel: Path, tmp_path: Path, field: str, key: str, value: Any, named: str) -> None:
    ckpt = edited(real_checkpoint, tmp_path / "edited.ckpt", field, key, value)
    this_imported = "this" in sys.modules
    result = regkit_main("test", "--config", "mlp_dropout", "--ckpt_path", str(ckpt), *EVALUATE)
    output = result.stdout + result.stderr
    last = output.strip().splitlines()[-1]
    assert result.returncode == 2, output[-3000:]
    assert f"hyperparameter {named} names" in last and "edited.ckpt" in last, last
    assert not sentinel.exists(), f"{SENTINEL} was imported"
    assert ZEN not in output and ("this" in sys.modules) == this_imported, "the module `this` was imported"
    assert not (tmp_path / "runs").exists()


def test_a_checkpoint_cannot_name_regkits_own_command(real_checkpoint: Path, tmp_path: Path) -> None:
    """``_class_path: regkit.__main__.Classifier`` is under regkit, yet importing it runs regkit again;
    regkit.cli's functions would too (its ``main`` as the optimizer factory)."""
    for key, value in [("_class_path", "regkit.__main__.Classifier"), ("optimizer", "regkit.cli.main.main"),
                       ("lr_scheduler", "regkit.compare.main")]:
        ckpt = edited(real_checkpoint, tmp_path / "command.ckpt", HPARAMS, key, value)
        result = regkit_main("test", "--config", "mlp_dropout", "--ckpt_path", str(ckpt), *EVALUATE)
        last = (result.stdout + result.stderr).strip().splitlines()[-1]
        assert result.returncode == 2, result.stderr[-3000:]
        assert f"hyperparameter {key} names {value!r}" in last and "regkit's command" in last, last
        assert "regkit.__main__" not in sys.modules
        assert not (tmp_path / "runs").exists()


def test_a_resumed_runs_edited_last_checkpoint_is_refused_before_any_import(
        real_checkpoint: Path, sentinel: Path, tmp_path: Path) -> None:
    """``--ckpt_path last`` resolves the file itself; the file it picks passes the same rule."""
    run = tmp_path / "run"
    shutil.copytree(real_checkpoint.parent.parent, run)
    edited(real_checkpoint, run / "checkpoints" / "last.ckpt", HPARAMS, "optimizer", f"{SENTINEL}.anything")
    result = regkit_main("fit", "--config", "mlp_dropout", "--run_dir", str(run), "--ckpt_path", "last",
                         "--trainer.max_steps", "4", *QUICK[2:])
    last = (result.stdout + result.stderr).strip().splitlines()[-1]
    assert result.returncode == 2 and "hyperparameter optimizer names" in last, last
    assert not sentinel.exists()


def test_dotted_strings_that_import_nothing_or_trusted_code_still_load(real_checkpoint: Path, tmp_path: Path) -> None:
    """The rule refuses only what could import untrusted code: the unedited checkpoint evaluates, and
    so does one whose rule names a module path (``network.layers``, no installed module of that name)."""
    result = regkit_main("test", "--config", "mlp_dropout", "--ckpt_path", str(real_checkpoint), *EVALUATE)
    assert result.returncode == 0, result.stderr[-3000:]
    from regkit.cli.checkpoints import check_trusted_hparams

    hparams = torch.load(real_checkpoint, weights_only=True)[HPARAMS]
    check_trusted_hparams({**hparams, "regularize": [{"path": "network.layers", "set": {"p": 0.1}}]}, "here")
    with pytest.raises(ValueError, match="regularize.0.path names 'this.s'"):
        check_trusted_hparams({**hparams, "regularize": [{"path": "this.s"}]}, "here")


# --- finding 6: a YAML alias bomb -------------------------------------------------------------
def alias_bomb(levels: int = 9) -> str:
    """"Billion laughs": each level an alias list of nine of the level below (9**9 values expanded)."""
    lines = ["lol0: &lol0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"lol{i}: &lol{i} [{', '.join([f'*lol{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join([*lines, "trainer: {max_steps: 1}", f"bomb: *lol{levels - 1}", ""])


def test_a_yaml_alias_bomb_stops_at_once_naming_the_file(tmp_path: Path) -> None:
    from conftest import run_regkit

    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(alias_bomb(9))
    result = run_regkit("fit", "--config", str(bomb), timeout=120)  # before: no end after minutes
    last = result.stderr.strip().splitlines()[-1]
    assert result.returncode == 2, result.stderr[-3000:]
    assert "--config" in last and "bomb.yaml" in last and "alias" in last and "100,000" in last, last
    assert "Traceback" not in result.stderr and not (tmp_path / "runs").exists()


def test_aliases_are_counted_not_expanded_and_still_work_in_a_recipe() -> None:
    import yaml

    from regkit.cli.recipe_files import load_yaml

    assert load_yaml("a: &x {p: 0.1, q: [1, 2]}\nb: *x\nc: *x\n") == {"a": {"p": 0.1, "q": [1, 2]}} | {
        "b": {"p": 0.1, "q": [1, 2]}, "c": {"p": 0.1, "q": [1, 2]}}
    with pytest.raises(yaml.YAMLError, match="duplicate key a.p"):  # inside a shared node: named once
        load_yaml("a: &x {p: 0.1, p: 0.2}\nb: *x\n")
    with pytest.raises(yaml.YAMLError, match="recursive"):
        load_yaml("a: &x [1, *x]\n")
    with pytest.raises(yaml.YAMLError, match="100,000 values"):
        load_yaml(alias_bomb(6))  # 9**6 = 531,441 values


# --- finding 7: an empty recipe, an exiting plugin, override=True, compare's grid ---------------
@pytest.mark.parametrize("text", ["", "# only a comment\n\n"], ids=["empty", "comments-only"])
def test_an_empty_recipe_is_named(tmp_path: Path, text: str) -> None:
    recipe = tmp_path / "nothing.yaml"
    recipe.write_text(text)
    for configs in (["--config", str(recipe)], ["--config", "mlp_dropout", "--config", str(recipe)]):
        result = regkit_main("fit", *configs, "--trainer.logger", "false")
        last = result.stderr.strip().splitlines()[-1]
        assert result.returncode == 2 and "--config" in last and "nothing.yaml" in last and "is empty" in last, last
        assert not (tmp_path / "runs").exists()


def test_a_plugin_that_exits_while_imported_is_a_plugin_error(tmp_path: Path) -> None:
    plugin = tmp_path / "leaving.py"
    plugin.write_text("import sys\nsys.exit(0)\n")
    for command in (["fit", "--config", "mlp_dropout"], ["list"]):
        result = regkit_main("--plugins", str(plugin), *command)
        last = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else ""
        assert result.returncode == 2, f"exit {result.returncode}: {result.stderr[-2000:]}"  # before: 0, silently
        assert "--plugins" in last and "leaving.py" in last and "sys.exit(0)" in last, last
        assert not (tmp_path / "runs").exists()


def test_override_true_replaces_a_name_an_installed_plugin_registers_later(tmp_path: Path) -> None:
    """The installed regkit-concrete-dropout registers penalty ``concrete_dropout`` when it is imported,
    which is after a local plugin's override: the override stays and the plugin's other components
    (its regularizer) still load."""
    from conftest import require_plugin, run_regkit

    require_plugin("regkit-concrete-dropout")
    plugin = tmp_path / "mine.py"
    plugin.write_text(
        "import torch\nimport regkit\n\n\n"
        "@regkit.register('penalty', 'concrete_dropout', override=True)\n"
        "class MyConcretePenalty(torch.nn.Module):\n    \"\"\"My own concrete-dropout penalty.\"\"\"\n\n"
        "    def __init__(self, weight: float = 1.0):\n        super().__init__()\n")
    result = run_regkit("--plugins", str(plugin), "list", timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "failed to load" not in result.stderr and "override=True" not in result.stderr, result.stderr[-3000:]
    penalty = result.stdout.split("\npenalty\n", 1)[1].split("\n\n", 1)[0]
    regularizer = result.stdout.split("\nregularizer\n", 1)[1].split("\n\n", 1)[0]
    assert "My own concrete-dropout penalty" in penalty and "mine.py" in penalty, penalty
    assert "concrete_dropout" in regularizer and "regkit-concrete-dropout" in regularizer, regularizer


@pytest.mark.parametrize("vary, bad, good", [
    (["model.init_args.network.dropout.p=0.2,1.5"], ["dropout.p=1.5: model.init_args.network.dropout.p"],
     ["dropout.p=0.2"]),
    (["model.init_args.network.dropuot.p=0.2,0.3"], ["dropuot.p=0.2: model.init_args.network", "dropuot.p=0.3"], []),
    (["trainer.max_epoch=1", "model.init_args.network.dropout.p=0.2,1.5"],
     ["max_epoch=1,dropout.p=0.2: unrecognized arguments: --trainer.max_epoch", "max_epoch=1,dropout.p=1.5"], []),
], ids=["invalid-value", "misspelt-key", "misspelt-trainer-flag"])
def test_compare_checks_its_whole_grid_before_any_run(
        tmp_path: Path, vary: list[str], bad: list[str], good: list[str]) -> None:
    """Every setting is parsed first and all bad ones are listed; before, the valid ones trained first."""
    out = tmp_path / "cmp"
    varies = [arg for spec in vary for arg in ("--vary", spec)]
    result = regkit_main("compare", "--config", "mlp_dropout", *varies, "--seeds", "2", "--out", str(out),
                         "--trainer.max_steps", "1", "--trainer.limit_val_batches", "1", "--test_after_fit", "false")
    last = result.stderr.strip().splitlines()[-1]
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert last.startswith("regkit compare: error: no run was started"), last
    assert all(expected in last for expected in bad), last
    assert not any(f"{setting}: " in last for setting in good), last
    assert not out.exists() and not (tmp_path / "runs").exists()
