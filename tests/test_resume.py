"""Reliability: a killed run resumes with `--ckpt_path last` to bit-identical final weights, and
recipes / checkpoints are loaded without running code from them."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import RECIPES, run_regkit

THROTTLE = """
import time
import lightning as L


class Throttle(L.Callback):
    \"\"\"Slow each training step down so the test can kill the run in the middle.\"\"\"

    def on_train_batch_end(self, *args, **kwargs) -> None:
        time.sleep(0.3)
"""

QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
         "--trainer.max_epochs", "100"]
# recipe, tiny-budget arguments, steps of the whole run (crossing epoch boundaries), checkpoint interval
CASES = {
    "classifier": ("mlp_dropout.yaml", ["--model.init_args.network.hidden", "[64]", "--data.init_args.limit_train", "1280",
                                        "--trainer.limit_val_batches", "2", "--test_after_fit", "false"], 16, 3),
    "language_model": ("lstm_ptb_variational.yaml", [
        "--data.init_args.limit_train_tokens", "8000", "--model.init_args.network.hidden_size", "32",
        "--model.init_args.network.embedding_dim", "32", "--trainer.limit_val_batches", "2",
        "--trainer.check_val_every_n_epoch", "1", "--test_after_fit", "false"], 25, 3),
    "gan": ("gan.yaml", ["--data.init_args.limit_train", "640", "--trainer.limit_val_batches", "1",
                         "--model.init_args.metrics", "false"], 30, 4),  # 2 steps (D and G) per batch, 20 per epoch
}
SLOW = {"language_model", "gan"}  # the classifier's runs the default suite; `-m slow` runs all three


def checkpoint(path: Path) -> dict:
    return torch.load(path, weights_only=True)  # plain data only, no pickled regkit objects


def kill_after_checkpoint(args: list[str], last_glob: str, tmp_path: Path, at_least: int) -> Path:
    """Start ``regkit fit``, SIGKILL it once its last.ckpt holds step >= ``at_least``; the checkpoint."""
    (tmp_path / "throttle.py").write_text(THROTTLE)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    env.pop("WANDB_SERVICE", None)
    run = subprocess.Popen([sys.executable, "-m", "regkit.cli", *args, "--trainer.callbacks+=throttle.Throttle"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    last, step, deadline = None, 0, time.monotonic() + 400
    try:
        while step < at_least:
            assert run.poll() is None, f"the run ended before it was killed:\n{run.stderr.read()[-3000:]}"
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.3)
            last = last or next(tmp_path.glob(last_glob), None)
            try:
                step = checkpoint(last)["global_step"] if last is not None else 0
            except Exception:  # caught while being written: look again
                step = 0
    finally:
        run.send_signal(signal.SIGKILL)  # a crash: no teardown, no final checkpoint
        run.wait()
    assert run.returncode == -signal.SIGKILL and last is not None
    return last


@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.slow) if c in SLOW else c for c in CASES])
def test_killed_run_resumes_with_bit_identical_weights(case: str, tmp_path: Path) -> None:
    """SIGKILL after a mid-training checkpoint, ``--ckpt_path last``: the final weights, optimizer
    state and step equal an uninterrupted run's exactly (RNG states, data position, TBPTT state,
    the GAN's step counter and EMA are all in the checkpoint), in the same run folder and W&B run."""
    recipe, extra, steps, every = CASES[case]
    name = recipe.removesuffix(".yaml")
    args = ["fit", "--config", str(RECIPES / recipe), *extra, *QUIET, "--checkpoint.every_n_train_steps", str(every),
            "--trainer.max_steps", str(steps)]
    whole = run_regkit(*args, "--run_dir", "uninterrupted")
    assert whole.returncode == 0, whole.stderr[-3000:]

    last = kill_after_checkpoint(args, f"runs/{name}/*/checkpoints/last.ckpt", tmp_path, at_least=2 * every)
    k = checkpoint(last)["global_step"]
    assert 0 < k < steps and k % every == 0

    resumed = run_regkit(*args, "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"Restoring states from the checkpoint path at {last.relative_to(tmp_path)}" in resumed.stdout + resumed.stderr
    assert [p.parent.parent for p in tmp_path.glob(f"runs/{name}/*/checkpoints/last.ckpt")] == [last.parent.parent]

    a, b = checkpoint(tmp_path / "uninterrupted" / "checkpoints" / "last.ckpt"), checkpoint(last)
    assert a["global_step"] == b["global_step"] == steps
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
    for opt_a, opt_b in zip(a["optimizer_states"], b["optimizer_states"]):
        for state_a, state_b in zip(opt_a["state"].values(), opt_b["state"].values()):
            assert all(torch.equal(torch.as_tensor(state_a[k]), torch.as_tensor(state_b[k])) for k in state_a)
    # the same W&B run continued: both offline run folders carry the run folder's id
    folders = list((last.parent.parent / "wandb").glob("offline-run-*"))
    ids = {re.fullmatch(r"offline-run-\d{8}_\d{6}-(.+)", p.name).group(1) for p in folders}  # type: ignore[union-attr]
    assert len(folders) == 2 and ids == {last.parent.parent.name}


def test_recipe_yaml_cannot_run_code(tmp_path: Path) -> None:
    recipe = (RECIPES / "mlp_dropout.yaml").read_text()
    evil = recipe.replace("seed_everything: 0", "seed_everything: !!python/object/apply:os.system ['touch pwned']")
    assert evil != recipe
    (tmp_path / "evil.yaml").write_text(evil)
    proc = run_regkit("fit", "--config", str(tmp_path / "evil.yaml"), "--trainer.fast_dev_run", "true")
    assert proc.returncode != 0
    assert not (tmp_path / "pwned").exists()


def test_checkpoint_with_pickled_code_is_refused(tmp_path: Path) -> None:
    """Resuming uses torch.load's weights_only default: a checkpoint that would run code fails."""

    class Evil:
        def __reduce__(self):
            return (os.system, ("touch pwned",))

    torch.save({"state_dict": {}, "evil": Evil()}, tmp_path / "evil.ckpt")
    proc = run_regkit("fit", "--config", str(RECIPES / "mlp_dropout.yaml"), "--trainer.fast_dev_run", "true",
                      "--ckpt_path", str(tmp_path / "evil.ckpt"))
    assert proc.returncode != 0
    assert "weights_only" in proc.stderr or "Unsupported global" in proc.stderr
    assert not (tmp_path / "pwned").exists()
