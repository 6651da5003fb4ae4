"""Reliability: a killed run resumes with `--ckpt_path last` to bit-identical final weights, and
recipes / checkpoints are loaded without running code from them."""
from __future__ import annotations

import csv
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import RECIPES, regkit_main, require_recipe_packages, run_regkit

KILLER = """
import os
import signal

import lightning as L


class KillAt(L.Callback):
    \"\"\"SIGKILL this process when the first batch after global step ``step`` starts: a crash right
    after the checkpoint of that step was written (no teardown, no final checkpoint).\"\"\"

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, *args, **kwargs) -> None:
        if trainer.global_step >= self.step:
            os.kill(os.getpid(), signal.SIGKILL)
"""

QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
         "--trainer.max_epochs", "100", "--trainer.log_every_n_steps", "1"]
# recipe, tiny-budget arguments, steps of the whole run (crossing epoch boundaries), checkpoint
# interval, and the steps to kill after: one mid-epoch and past a checkpoint (the steps in between
# are trained and logged twice), one at an epoch's last batch (Lightning restarts at the next epoch)
CASES = {
    "classifier": ("mlp_dropout.yaml", ["--model.init_args.network.hidden", "[64]", "--data.init_args.limit_train", "1280",
                                        "--trainer.limit_val_batches", "2", "--test_after_fit", "false"],
                   16, 2, [7, 10]),  # 10 batches per epoch
    "language_model": ("lstm_ptb_variational.yaml", [
        "--data.init_args.limit_train_tokens", "8000", "--model.init_args.network.hidden_size", "32",
        "--model.init_args.network.embedding_dim", "32", "--trainer.limit_val_batches", "2",
        "--trainer.check_val_every_n_epoch", "1", "--test_after_fit", "false"], 25, 3, [7, 12]),  # 12 windows per epoch
    # A rate on a schedule and a module rules inserted: the values after the resume are the ones the
    # uninterrupted run had (they follow the step), and the inserted module's draws continue exactly.
    "scheduled": ("mlp_dropout.yaml", [
        "--model.init_args.network.hidden", "[64]", "--data.init_args.limit_train", "1280",
        "--trainer.limit_val_batches", "2", "--test_after_fit", "false",
        "--model.init_args.network.dropout.p", "{schedule: linear, start: 0.0, end: 0.6}",
        "--model.init_args.regularize",
        "[{path: layers.1, insert: {name: dropout, p: {schedule: late, value: 0.3, cutoff: 0.4}}}]"],
                  16, 2, [7]),
    # torch.compile (inductor) on, with a scheduled rate: the resumed process compiles the same
    # program (the compile options are in the checkpoint's hyperparameters) and inductor's random
    # draws follow torch's restored RNG state, so the end is bit-identical too.
    "compiled": ("mlp_dropout.yaml", [
        "--model.init_args.network.hidden", "[64]", "--data.init_args.limit_train", "1280",
        "--trainer.limit_val_batches", "2", "--test_after_fit", "false", "--model.init_args.compile", "true",
        "--model.init_args.network.dropout.p", "{schedule: linear, start: 0.1, end: 0.5}"], 16, 2, [7]),
    # a timm ResNet-18 regularized by the recipe's rules (DropBlock, drop-path by depth): the inserted
    # modules' draws continue exactly too (needs timm: .ci/timm runs it)
    "timm": ("timm_resnet_dropblock.yaml", [
        "--data.init_args.limit_train", "640", "--data.init_args.batch_size", "64", "--trainer.limit_val_batches", "1",
        "--test_after_fit", "false", "--model.init_args.network.init_args.zero_init_last", "false"], 12, 2, [7]),
    "gan": ("gan.yaml", ["--data.init_args.limit_train", "640", "--trainer.limit_val_batches", "1",
                         "--model.init_args.metrics", "false"], 30, 4, [10, 20]),  # 2 steps (D and G) per batch, 20 per epoch
}
SLOW = {"language_model", "gan", "compiled", "timm"}  # the classifier's runs the default suite; `-m slow` runs all three


def checkpoint(path: Path) -> dict:
    return torch.load(path, weights_only=True)  # plain data only, no pickled regkit objects


def killed_at(args: list[str], step: int, run_dir: str, tmp_path: Path) -> Path:
    """Run ``regkit fit`` until it SIGKILLs itself after step ``step``; its last.ckpt."""
    (tmp_path / "killer.py").write_text(KILLER)
    # killer.py on the path, before the regkit under test (not instead of it: the killed run must run
    # the same regkit as the resumed one)
    env = {**os.environ, "PYTHONWARNINGS": "ignore",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}
    env.pop("WANDB_SERVICE", None)
    run = subprocess.run([sys.executable, "-m", "regkit.cli", *args, "--run_dir", run_dir,
                          "--trainer.callbacks+=killer.KillAt", f"--trainer.callbacks.init_args.step={step}"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, timeout=600)
    assert run.returncode == -signal.SIGKILL, run.stderr[-3000:]
    return tmp_path / run_dir / "checkpoints" / "last.ckpt"


def logged_rows(run_dir: Path) -> list[tuple[str, str, tuple[str, ...]]]:
    """(epoch, step, names logged) of every metrics.csv row."""
    with open(run_dir / "metrics.csv", newline="") as file:
        return [(r["epoch"], r["step"], tuple(sorted(k for k, v in r.items() if v and k not in ("epoch", "step"))))
                for r in csv.DictReader(file)]


def assert_same_training_state(a: dict, b: dict) -> None:
    assert a["global_step"] == b["global_step"] and a["epoch"] == b["epoch"]
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
    for opt_a, opt_b in zip(a["optimizer_states"], b["optimizer_states"]):
        for state_a, state_b in zip(opt_a["state"].values(), opt_b["state"].values()):
            assert all(torch.equal(torch.as_tensor(state_a[k]), torch.as_tensor(state_b[k])) for k in state_a)


@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.slow) if c in SLOW else c for c in CASES])
def test_killed_run_resumes_with_bit_identical_weights(case: str, tmp_path: Path) -> None:
    """SIGKILL after a checkpoint (mid-epoch, and at an epoch's last batch), ``--ckpt_path last``:
    the final weights, optimizer state, step and epoch equal an uninterrupted run's exactly (RNG
    states, data position, TBPTT state, the GAN's step counter and EMA are all in the checkpoint),
    in the same run folder and W&B run."""
    recipe, extra, steps, every, kills = CASES[case]
    require_recipe_packages(RECIPES / recipe)
    args = ["fit", "--config", str(RECIPES / recipe), *extra, *QUIET, "--checkpoint.every_n_train_steps", str(every),
            "--trainer.max_steps", str(steps)]
    whole = run_regkit(*args, "--run_dir", "uninterrupted")
    assert whole.returncode == 0, whole.stderr[-3000:]
    uninterrupted = checkpoint(tmp_path / "uninterrupted" / "checkpoints" / "last.ckpt")
    assert uninterrupted["global_step"] == steps

    for k in kills:
        last = killed_at(args, k, f"killed_at_{k}", tmp_path)
        assert checkpoint(last)["global_step"] == k - k % every  # the last checkpoint before the kill
        resumed = run_regkit(*args, "--run_dir", f"killed_at_{k}", "--ckpt_path", "last")
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert f"Restoring states from the checkpoint path at {last.relative_to(tmp_path)}" in resumed.stdout + resumed.stderr
        assert_same_training_state(uninterrupted, checkpoint(last))
        # metrics.csv: the rows logged after the checkpoint and before the kill are not doubled
        assert logged_rows(tmp_path / f"killed_at_{k}") == logged_rows(tmp_path / "uninterrupted")
        # the same W&B run continued: both offline run folders carry the run folder's id
        folders = list((tmp_path / f"killed_at_{k}" / "wandb").glob("offline-run-*"))
        ids = {re.fullmatch(r"offline-run-\d{8}_\d{6}-(.+)", p.name).group(1) for p in folders}  # type: ignore[union-attr]
        assert len(folders) == 2 and len(ids) == 1, folders


def test_recipe_yaml_cannot_run_code(tmp_path: Path) -> None:
    recipe = (RECIPES / "mlp_dropout.yaml").read_text()
    evil = recipe.replace("seed_everything: 0", "seed_everything: !!python/object/apply:os.system ['touch pwned']")
    assert evil != recipe
    (tmp_path / "evil.yaml").write_text(evil)
    proc = regkit_main("fit", "--config", str(tmp_path / "evil.yaml"), "--trainer.fast_dev_run", "true")
    assert proc.returncode != 0
    assert not (tmp_path / "pwned").exists()


def test_checkpoint_with_pickled_code_is_refused(tmp_path: Path) -> None:
    """Resuming uses torch.load's weights_only default: a checkpoint that would run code fails."""

    class Evil:
        def __reduce__(self):
            return (os.system, ("touch pwned",))

    torch.save({"state_dict": {}, "evil": Evil()}, tmp_path / "evil.ckpt")
    proc = regkit_main("fit", "--config", str(RECIPES / "mlp_dropout.yaml"), "--trainer.fast_dev_run", "true",
                       "--ckpt_path", str(tmp_path / "evil.ckpt"))
    assert proc.returncode != 0
    assert "weights_only" in proc.stderr or "Unsupported global" in proc.stderr
    assert not (tmp_path / "pwned").exists()


@pytest.mark.slow
def test_ddp_resume_restores_every_process_rng_and_ends_bit_identical(tmp_path: Path) -> None:
    """Two CPU processes: each process's RNG streams are in the checkpoint, so after stopping at step
    4 and resuming, both ranks draw the masks they would have drawn and the weights end identical."""
    args = ["fit", "--config", str(RECIPES / "mlp_dropout.yaml"), "--model.init_args.network.hidden", "[64]",
            "--data.init_args.limit_train", "2048", "--trainer.limit_val_batches", "1", "--test_after_fit", "false",
            "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp",
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
    whole = run_regkit(*args, "--trainer.max_steps", "12", "--run_dir", "whole")
    assert whole.returncode == 0, whole.stderr[-3000:]
    first = run_regkit(*args, "--trainer.max_steps", "4", "--run_dir", "parts")  # mid-epoch (8 steps/epoch)
    assert first.returncode == 0, first.stderr[-3000:]
    saved = checkpoint(tmp_path / "parts" / "checkpoints" / "last.ckpt")
    per_rank = saved["callbacks"]["ExactResume"]["rng_per_rank"]
    assert len(per_rank) == 2
    assert not torch.equal(per_rank[0]["torch"], per_rank[1]["torch"])  # each rank has its own stream
    rest = run_regkit(*args, "--trainer.max_steps", "12", "--run_dir", "parts", "--ckpt_path", "last")
    assert rest.returncode == 0, rest.stderr[-3000:]
    a, b = checkpoint(tmp_path / "whole" / "checkpoints" / "last.ckpt"), checkpoint(tmp_path / "parts" / "checkpoints" / "last.ckpt")
    assert a["global_step"] == b["global_step"] == 12
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
