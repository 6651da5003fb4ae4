"""Reliability: a killed run resumes with `--ckpt_path last` from the same step with its optimizer
state, and recipes / checkpoints are loaded without running code from them."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from conftest import RECIPES, run_regkit

PROBE = '''
import json, time
import lightning as L


class Throttle(L.Callback):
    """Slow each training step down so the test can kill the run in the middle."""

    def __init__(self, seconds: float = 0.25) -> None:
        self.seconds = seconds

    def on_train_batch_end(self, *args, **kwargs) -> None:
        time.sleep(self.seconds)


class RecordStart(L.Callback):
    """Write the step and the first weight's Adam state that training starts from."""

    def on_train_start(self, trainer, pl_module) -> None:
        state = trainer.optimizers[0].state.get(next(pl_module.network.parameters()), {})
        with open("start.json", "w") as f:
            json.dump({
                "global_step": trainer.global_step,
                "adam_step": float(state["step"]) if state else 0.0,
                "exp_avg_sum": float(state["exp_avg"].double().abs().sum()) if state else 0.0,
            }, f)
'''

ARGS = ["fit", "--config", str(RECIPES / "mlp_dropout.yaml"),
        "--model.init_args.network.hidden", "[64]", "--data.init_args.limit_train", "1280",
        "--trainer.limit_val_batches", "1", "--trainer.max_epochs", "100", "--test_after_fit", "false",
        "--trainer.enable_progress_bar", "false", "--checkpoint.every_n_train_steps", "3"]


def adam_state(ckpt: dict) -> dict:
    return ckpt["optimizer_states"][0]["state"][0]  # the first parameter: the first Linear's weight


def test_killed_run_resumes_from_last_checkpoint_with_optimizer_state(tmp_path: Path) -> None:
    (tmp_path / "probe.py").write_text(textwrap.dedent(PROBE))
    last = None  # runs/mlp_dropout/<run id>/checkpoints/last.ckpt, once the run has made its folder
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    run = subprocess.Popen([sys.executable, "-m", "regkit.cli", *ARGS, "--trainer.callbacks+=probe.Throttle"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 240
        step = 0
        while step < 6:  # wait for at least the second checkpoint
            assert run.poll() is None, f"the run ended before it was killed:\n{run.stderr.read()[-3000:]}"
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.5)
            try:
                last = last or next(tmp_path.glob("runs/mlp_dropout/*/checkpoints/last.ckpt"), None)
                step = torch.load(last, weights_only=True)["global_step"] if last is not None else 0
            except Exception:  # caught while being written: look again
                step = 0
    finally:
        run.send_signal(signal.SIGKILL)  # a crash: no teardown, no final checkpoint
        run.wait()
    assert run.returncode == -signal.SIGKILL

    saved = torch.load(last, weights_only=True)  # plain data only, no pickled regkit objects
    k = saved["global_step"]
    assert k >= 6 and k % 3 == 0
    assert float(adam_state(saved)["step"]) == k

    resumed = run_regkit(*ARGS, "--ckpt_path", "last", "--trainer.max_steps", str(k + 6),
                         "--trainer.callbacks+=probe.RecordStart")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    start = json.loads((tmp_path / "start.json").read_text())
    assert start["global_step"] == k  # continues from the step it was killed after
    assert start["adam_step"] == k  # ... with Adam's moments, not a fresh optimizer
    assert start["exp_avg_sum"] == pytest.approx(float(adam_state(saved)["exp_avg"].double().abs().sum()), rel=1e-6)
    final = torch.load(last, weights_only=True)
    assert final["global_step"] == k + 6 and float(adam_state(final)["step"]) == k + 6  # saved every 3 steps


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
    proc = run_regkit(*ARGS[:3], "--trainer.fast_dev_run", "true", "--ckpt_path", str(tmp_path / "evil.ckpt"))
    assert proc.returncode != 0
    assert "weights_only" in proc.stderr or "Unsupported global" in proc.stderr
    assert not (tmp_path / "pwned").exists()
