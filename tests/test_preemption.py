"""Preemption and the run folder as a resource (issue #25): SIGTERM, SIGUSR1 and Ctrl-C during fit
save last.ckpt and exit 128 + the signal's number, and the same command with ``--ckpt_path auto``
ends bit-identical to an uninterrupted run; one process at a time writes a run folder; a folder
holding another run is not overwritten; a read-only folder and W&B without network end clearly."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import RECIPES, regkit_main, run_regkit
from test_resume import QUIET, assert_same_training_state, checkpoint, logged_rows

# Real processes stopped from outside, and in-process ones at a chosen hook.
HELPERS = """
import os
import signal
import time

import lightning as L


class Pace(L.Callback):
    \"\"\"After each training step write the step reached to ``progress`` and wait ``delay`` s, so a
    test can send a signal from outside in the middle of training.\"\"\"

    def __init__(self, progress: str, delay: float = 0.3) -> None:
        self.progress, self.delay = progress, delay

    def on_train_batch_end(self, trainer, *args, **kwargs) -> None:
        with open(self.progress, "w") as file:
            file.write(str(trainer.global_step))
        time.sleep(self.delay)


class SignalAt(L.Callback):
    \"\"\"Send this process ``name`` at the start of the first training batch after step ``step``
    (inside that step), or of the first validation batch after it (inside validation).\"\"\"

    def __init__(self, step: int, name: str = "SIGTERM", inside: str = "step") -> None:
        self.step, self.name, self.inside, self.sent = step, name, inside, False

    def send(self, trainer) -> None:
        if trainer.global_step >= self.step and not self.sent and not trainer.sanity_checking:
            self.sent = True
            os.kill(os.getpid(), getattr(signal, self.name))

    def on_train_batch_start(self, trainer, *args, **kwargs) -> None:
        if self.inside == "step":
            self.send(trainer)

    def on_validation_batch_start(self, trainer, *args, **kwargs) -> None:
        if self.inside == "validation":
            self.send(trainer)
"""

STEPS = 16  # 10 batches per epoch: the run crosses an epoch; its only checkpoints are at epoch ends
ARGS = ["fit", "--config", str(RECIPES / "mlp_dropout.yaml"), "--model.init_args.network.hidden", "[64]",
        "--data.init_args.limit_train", "1280", "--trainer.limit_val_batches", "2", "--test_after_fit", "false",
        *QUIET, "--trainer.max_steps", str(STEPS)]
EXIT = {"SIGTERM": 143, "SIGUSR1": 138, "SIGINT": 130}


def helper_env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "preempt_helpers.py").write_text(HELPERS)
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run every stopped-and-resumed run must equal: its folder."""
    folder = tmp_path_factory.mktemp("uninterrupted")
    whole = run_regkit(*ARGS, "--run_dir", str(folder / "run"))
    assert whole.returncode == 0, whole.stderr[-3000:]
    return folder / "run"


def stopped_from_outside(name: str, run_dir: str, tmp_path: Path, after: int = 3) -> subprocess.CompletedProcess:
    """Start ``regkit fit`` as a process, send it signal ``name`` once it has trained ``after`` steps."""
    progress = tmp_path / "progress"
    env = {**os.environ, "PYTHONWARNINGS": "ignore", **helper_env(tmp_path)}
    env.pop("WANDB_SERVICE", None)
    command = [sys.executable, "-m", "regkit.cli", *ARGS, "--run_dir", run_dir,
               "--trainer.callbacks+=preempt_helpers.Pace", f"--trainer.callbacks.init_args.progress={progress}"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 300
    while not (progress.is_file() and progress.read_text().strip() and int(progress.read_text()) >= after):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()[1][-3000:]
        time.sleep(0.05)
    process.send_signal(getattr(signal, name))
    out, err = process.communicate(timeout=300)
    return subprocess.CompletedProcess(command, process.returncode, out, err)


def assert_resumes_exactly(stopped: subprocess.CompletedProcess, name: str, run_dir: Path, uninterrupted: Path) -> None:
    """``stopped`` exited with the signal's status, saying where it saved; ``--ckpt_path auto`` in
    the same folder ends with the uninterrupted run's weights, optimizer state and metrics rows."""
    assert stopped.returncode == EXIT[name], stopped.stderr[-3000:]
    last = run_dir / "checkpoints" / "last.ckpt"
    said = re.search(r"regkit fit: stopped by .*?at step (\d+) \(epoch 0\); saved (\S+); continue with the same "
                     rf"command and --ckpt_path auto \(exit status {EXIT[name]}\)", stopped.stderr)
    assert said, stopped.stderr[-3000:]
    step = int(said.group(1))
    assert Path(said.group(2)).resolve() == last.resolve()
    assert 3 <= step < 10 and checkpoint(last)["global_step"] == step  # mid-epoch: no other checkpoint has it
    assert not list(run_dir.glob("checkpoints/*.stop"))
    resumed = run_regkit(*ARGS, "--run_dir", str(run_dir.relative_to(Path.cwd())), "--ckpt_path", "auto")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Restoring states from the checkpoint path at" in resumed.stdout + resumed.stderr
    assert_same_training_state(checkpoint(uninterrupted / "checkpoints" / "last.ckpt"), checkpoint(last))
    assert logged_rows(run_dir) == logged_rows(uninterrupted)


def test_sigterm_saves_last_and_resumes_exactly(uninterrupted: Path, tmp_path: Path) -> None:
    """A scheduler's SIGTERM mid-epoch: last.ckpt of the step reached, exit 143, exact resume (on
    main it exited 0 with no checkpoint at all)."""
    stopped = stopped_from_outside("SIGTERM", "run", tmp_path)
    assert_resumes_exactly(stopped, "SIGTERM", tmp_path / "run", uninterrupted)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["SIGUSR1", "SIGINT"])
def test_sigusr1_and_ctrl_c_save_last_and_resume_exactly(name: str, uninterrupted: Path, tmp_path: Path) -> None:
    """SLURM's SIGUSR1 warning (exit 138) and a first Ctrl-C (exit 130) stop the same way."""
    stopped = stopped_from_outside(name, "run", tmp_path)
    if name == "SIGINT":
        assert "Ctrl-C: stopping at the end of this step" in stopped.stderr
    assert_resumes_exactly(stopped, name, tmp_path / "run", uninterrupted)


@pytest.mark.slow
@pytest.mark.parametrize("inside", ["step", "validation"])
def test_sigterm_inside_a_step_or_validation_resumes_exactly(inside: str, uninterrupted: Path, tmp_path: Path) -> None:
    """The signal at a known place: inside step 6 (saved after it), and inside the validation at
    the first epoch's end (saved with the epoch complete, resumed at the next one)."""
    step = 6 if inside == "step" else 9
    stopped = run_regkit(*ARGS, "--run_dir", "run", "--trainer.callbacks+=preempt_helpers.SignalAt",
                         f"--trainer.callbacks.init_args.step={step}", f"--trainer.callbacks.init_args.inside={inside}",
                         env=helper_env(tmp_path))
    assert stopped.returncode == 143, stopped.stderr[-3000:]
    saved = checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert saved["global_step"] == (7 if inside == "step" else 10)
    resumed = run_regkit(*ARGS, "--run_dir", "run", "--ckpt_path", "auto")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_training_state(checkpoint(uninterrupted / "checkpoints" / "last.ckpt"),
                               checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt"))
