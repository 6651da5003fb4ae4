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
