"""Preemption and the run folder as a resource (issue #25): SIGTERM, SIGUSR1 and Ctrl-C during fit
save last.ckpt and exit 128 + the signal's number, and the same command with ``--ckpt_path auto``
ends bit-identical to an uninterrupted run; one process at a time writes a run folder; a folder
holding another run is not overwritten; a read-only folder and W&B without network end clearly."""
from __future__ import annotations

import os
import re
import signal
import socket
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
import socket
import time

import lightning as L


class Pace(L.Callback):
    \"\"\"After each training step write the step reached to ``progress`` and wait ``delay`` s, so a
    test can send a signal from outside in the middle of training.\"\"\"

    def __init__(self, progress: str, delay: float = 0.5) -> None:
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

STEPS = 8  # 5 batches per epoch: the run crosses an epoch; its only checkpoints are at epoch ends
ARGS = ["fit", "--config", str(RECIPES / "mlp_dropout.yaml"), "--model.init_args.network.hidden", "[64]",
        "--data.init_args.limit_train", "640", "--trainer.limit_val_batches", "2", "--test_after_fit", "false",
        *QUIET, "--trainer.max_steps", str(STEPS)]
EXIT = {"SIGTERM": 143, "SIGUSR1": 138, "SIGINT": 130}


def helper_env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "preempt_helpers.py").write_text(HELPERS)
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run every stopped-and-resumed run must equal: its folder (run in this process, as the
    resumed runs are: only the stopped one needs a process of its own)."""
    folder = tmp_path_factory.mktemp("uninterrupted")
    whole = regkit_main(*ARGS, "--run_dir", str(folder / "run"))
    assert whole.returncode == 0, whole.stderr[-3000:]
    return folder / "run"


def stopped_from_outside(name: str, run_dir: str, tmp_path: Path, after: int = 2) -> subprocess.CompletedProcess:
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
    assert 2 <= step < 5 and checkpoint(last)["global_step"] == step  # mid-epoch: no other checkpoint has it
    assert not list(run_dir.glob("checkpoints/*.stop"))
    resumed = regkit_main(*ARGS, "--run_dir", str(run_dir.relative_to(Path.cwd())), "--ckpt_path", "auto")
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
    """The signal at a known place: inside step 3 (saved after it), and inside the validation at
    the first epoch's end (saved with the epoch complete, resumed at the next one)."""
    step = 2 if inside == "step" else 4
    stopped = run_regkit(*ARGS, "--run_dir", "run", "--trainer.callbacks+=preempt_helpers.SignalAt",
                         f"--trainer.callbacks.init_args.step={step}", f"--trainer.callbacks.init_args.inside={inside}",
                         env=helper_env(tmp_path))
    assert stopped.returncode == 143, stopped.stderr[-3000:]
    saved = checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert saved["global_step"] == (3 if inside == "step" else 5)
    resumed = regkit_main(*ARGS, "--run_dir", "run", "--ckpt_path", "auto")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_training_state(checkpoint(uninterrupted / "checkpoints" / "last.ckpt"),
                               checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt"))


@pytest.mark.slow
def test_sigusr1_under_slurm_auto_requeue_runs_lightnings_handler_too(tmp_path: Path) -> None:
    """In a SLURM job (as Lightning detects one) Lightning's auto-requeue handler keeps SIGUSR1:
    it saves its HPC checkpoint and calls ``scontrol requeue`` (absent here: it says so); then regkit
    stops at the step's end with last.ckpt, exit 138."""
    slurm = {"SLURM_NTASKS": "1", "SLURM_JOB_NAME": "regkit", "SLURM_JOB_ID": "4242", "SLURM_PROCID": "0",
             "SLURM_LOCALID": "0", "SLURM_NODEID": "0", "SLURM_NTASKS_PER_NODE": "1"}
    stopped = run_regkit(*ARGS, "--run_dir", "run", "--trainer.callbacks+=preempt_helpers.SignalAt",
                         "--trainer.callbacks.init_args.step=2", "--trainer.callbacks.init_args.name=SIGUSR1",
                         env={**helper_env(tmp_path), **slurm})
    assert stopped.returncode == 138, stopped.stderr[-3000:]
    output = stopped.stdout + stopped.stderr
    assert "Handling auto-requeue signal" in output and "requeing job 4242" in output, output[-3000:]
    assert Path("run", "hpc_ckpt_1.ckpt").is_file()  # Lightning's own
    assert checkpoint(Path("run", "checkpoints", "last.ckpt"))["global_step"] == 3


# ---------------------------------------------------------------- the run folder as a resource
SHORT = ["--config", str(RECIPES / "mlp_dropout.yaml"), "--model.init_args.network.hidden", "[16]",
         "--data.init_args.limit_train", "256", "--trainer.limit_val_batches", "1", "--trainer.max_steps", "2",
         "--test_after_fit", "false", "--trainer.enable_progress_bar", "false",
         "--trainer.enable_model_summary", "false"]


def files_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_run_folder_in_use_is_refused_and_a_dead_holder_taken_over(tmp_path: Path) -> None:
    """A second ``--ckpt_path last`` of a run being written exits 2 naming the folder and writes
    nothing (on main both ran: one crashed, metrics.csv lost rows, two W&B runs shared an id); the
    lock goes with its process, however it ends."""
    from regkit.cli.run_lock import RunLock

    Path("run").mkdir()  # an empty folder given with --run_dir is fine
    assert regkit_main("fit", *SHORT, "--run_dir", "run").returncode == 0
    before = files_of(Path("run"))
    held = RunLock("run").acquire()  # as a run in progress holds it (a flock: per open file, this process too)
    try:
        refused = regkit_main("fit", *SHORT, "--run_dir", "run", "--ckpt_path", "last",
                              "--trainer.max_steps", "4")
    finally:
        held.release()
    assert refused.returncode == 2, refused.stderr[-3000:]
    assert re.search(r"regkit fit: error: the run folder run is in use by another regkit run \(pid \d+ on ",
                     refused.stderr), refused.stderr[-3000:]
    assert files_of(Path("run")) == before  # nothing written, not even W&B
    # A holder killed with SIGKILL leaves the file, not the lock: the next resume takes it.
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, time; lock = open('run/run.lock', 'w'); "
                               "fcntl.flock(lock, fcntl.LOCK_EX); lock.write('pid 1 on elsewhere'); lock.flush(); "
                               "print('locked', flush=True); time.sleep(600)"], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    holder.kill()
    holder.wait()
    resumed = regkit_main("fit", *SHORT, "--run_dir", "run", "--ckpt_path", "last", "--trainer.max_steps", "4")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert checkpoint(Path("run", "checkpoints", "last.ckpt"))["global_step"] == 4
    RunLock("run").acquire().release()  # released when the command ended


@pytest.mark.slow
def test_two_resumes_started_together_one_is_refused(tmp_path: Path) -> None:
    """Two real ``regkit fit --ckpt_path last`` processes of one run at the same moment: one
    continues the run, the other exits 2 naming the folder."""
    assert regkit_main("fit", *SHORT, "--run_dir", "run").returncode == 0
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    env.pop("WANDB_SERVICE", None)
    command = [sys.executable, "-m", "regkit.cli", "fit", *SHORT, "--run_dir", "run", "--ckpt_path", "last",
               "--trainer.max_steps", "60", "--trainer.max_epochs", "100"]
    both = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
            for _ in range(2)]
    results = [(p.communicate(timeout=600)[1], p.returncode)[::-1] for p in both]
    assert sorted(code for code, _ in results) == [0, 2], [err[-2000:] for _, err in results]
    refused = next(err for code, err in results if code == 2)
    assert "the run folder run is in use by another regkit run" in refused
    assert checkpoint(Path("run", "checkpoints", "last.ckpt"))["global_step"] == 60
    assert len(list(Path("run", "wandb").glob("offline-run-*"))) == 2  # the first run's and one resume's


def test_run_dir_of_another_run_is_refused_unless_resumed(tmp_path: Path) -> None:
    """``--run_dir`` at a folder holding a run (here of another recipe) exits 2 naming it and leaves
    it as it was (on main it was overwritten: last.ckpt, config.yaml, metrics.csv mixed)."""
    assert regkit_main("fit", *SHORT, "--run_dir", "run", "--trainer.logger", "false").returncode == 0
    before = files_of(Path("run"))
    refused = regkit_main("fit", "--config", "gan", "--trainer.max_steps", "3", "--run_dir", "run")
    assert refused.returncode == 2, refused.stderr[-3000:]
    assert ("regkit fit: error: --run_dir run already holds a run (config.yaml, metrics.csv or checkpoints/). "
            "Continue that run with --ckpt_path last (or auto), or give a new folder") in refused.stderr
    assert files_of(Path("run")) == before


@pytest.mark.slow
def test_evaluating_the_last_checkpoint_of_a_run_dir_writes_beside_it(tmp_path: Path) -> None:
    """``test --ckpt_path last --run_dir R`` writes into ``R/test-<id>/``, not over R's own files."""
    assert regkit_main("fit", *SHORT, "--run_dir", "run").returncode == 0
    before = files_of(Path("run"))
    tested = regkit_main("test", *SHORT, "--run_dir", "run", "--ckpt_path", "last", "--trainer.limit_test_batches", "1")
    assert tested.returncode == 0, tested.stderr[-3000:]
    (evaluation,) = Path("run").glob("test-*")
    assert (evaluation / "config.yaml").is_file() and files_of(Path("run")).items() >= before.items()


@pytest.fixture
def read_only_folder(tmp_path: Path):
    """A folder no one can write: a read-only tmpfs as root (who may write any mode), else mode 555."""
    folder = tmp_path / "read_only"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"no read-only folder for root: mount -o ro failed: {mounted.stderr.decode()[:200]}")
    try:
        yield folder
    finally:
        os.chdir(tmp_path)
        subprocess.run(["umount", str(folder)], check=True)


@pytest.mark.parametrize("where", ["working_folder", "run_root"])
def test_read_only_folder_is_one_clear_error(where: str, read_only_folder: Path, tmp_path: Path) -> None:
    """A run started in a read-only working folder, or with a read-only run root (the logger's
    save_dir): exit 2, one line naming the folder, no traceback (on main: 3 tracebacks, exit 1)."""
    if where == "working_folder":
        os.chdir(read_only_folder)
        extra: list[str] = []
    else:
        extra = ["--trainer.logger.init_args.save_dir", str(read_only_folder / "runs")]
    result = regkit_main("fit", *SHORT, *extra)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    error = [line for line in result.stderr.splitlines() if line.startswith("regkit fit: error:")]
    assert len(error) == 1 and re.search(r"cannot write the run folder \S*runs/mlp_dropout/\d{8}-\d{6}-[0-9a-f]{6} "
                                         r"\(\S*runs\): Read-only file system|Permission denied", error[0]), error


def test_wandb_online_without_network_runs_offline_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A key set, online mode, and a W&B server that does not answer (a closed local port): the run
    goes offline with one line saying so and how to upload, and takes no longer than an offline
    run (on main it went online and failed after 111 s). The key is a fake, never a real one."""
    with socket.socket() as probe:  # a port no one listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.delenv("WANDB_MODE")  # online: a key is set
    env = {"WANDB_API_KEY": "f" * 40, "WANDB_BASE_URL": f"http://127.0.0.1:{port}"}
    start = time.monotonic()
    result = regkit_main("fit", *SHORT, "--run_dir", "run", env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert time.monotonic() - start < 60
    line = (f"W&B: cannot reach http://127.0.0.1:{port} (Connection refused): logging offline instead, to run/wandb; "
            "upload later with `wandb sync run/wandb/offline-run-*`")
    assert result.stderr.count(line) == 1, result.stderr[-3000:]
    assert len(list(Path("run", "wandb").glob("offline-run-*"))) == 1


def test_a_server_that_does_not_answer_is_given_up_within_the_timeout() -> None:
    """A server whose connection queue is full drops new connections unanswered (as an unroutable
    address does): the check gives up after its timeout."""
    from regkit.loggers.wandb_network import unreachable

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(0)  # never accepts: the queue fills with the connections below
        port = server.getsockname()[1]
        queued = [socket.socket() for _ in range(4)]
        for client in queued:
            client.setblocking(False)
            client.connect_ex(("127.0.0.1", port))
        time.sleep(0.2)
        start = time.monotonic()
        why = unreachable(f"http://127.0.0.1:{port}", timeout=1.0)
        elapsed = time.monotonic() - start
        for client in queued:
            client.close()
    assert why and 0.9 < elapsed < 2.0, (why, elapsed)
