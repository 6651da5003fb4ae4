"""Faults around the checkpoint files a run depends on (issue #25): a save killed half-way, a broken
newest checkpoint under ``--ckpt_path last|auto``, a full disk; with the run folder under /tmp and on
a second filesystem (/dev/shm, a tmpfs). The slow test kills runs at many points and resumes each."""
from __future__ import annotations

import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
import lightning as L
import pytest
import torch

from conftest import RECIPES, regkit_main
from regkit.callbacks.checkpoint_files import DiskFull, SameFolderCheckpointIO, newest_complete, problem
from test_resume import assert_same_training_state, checkpoint

SHM = Path("/dev/shm")
# A tiny classifier: 2 batches per epoch, a checkpoint every step, every step file kept.
ARGS = ["fit", "--config", str(RECIPES / "mlp_dropout.yaml"), "--model.init_args.network.hidden", "[64]",
        "--data.init_args.limit_train", "256", "--trainer.limit_val_batches", "1", "--test_after_fit", "false",
        "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false", "--trainer.max_epochs", "100",
        "--checkpoint.every_n_train_steps", "1", "--checkpoint.save_top_k", "-1"]

KILLER = """
import os
import signal

import lightning as L


class KillInSave(L.Callback):
    \"\"\"SIGKILL this process inside its ``save``-th checkpoint save: the file is written and
    fsync'd under its partial name, not yet renamed (as `strace -e inject=rename:signal=KILL`).\"\"\"

    def __init__(self, save: int) -> None:
        replace, seen = os.replace, [0]

        def killing_replace(src, dst, *args, **kwargs):
            if str(src).endswith(".partial"):
                seen[0] += 1
                if seen[0] == save:
                    os.kill(os.getpid(), signal.SIGKILL)
            return replace(src, dst, *args, **kwargs)

        os.replace = killing_replace
"""


def fit(*args: str) -> subprocess.CompletedProcess:
    done = regkit_main(*ARGS, *args)
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A run stopped after step 4 (last.ckpt and the files of steps 1 to 4) and the
    same run trained to step 5 without a stop: what every resume must end equal to."""
    root = tmp_path_factory.mktemp("runs")
    for name, steps in (("stopped", "4"), ("whole", "5")):
        done = fit("--trainer.max_steps", steps, "--run_dir", str(root / name))
        assert done.returncode == 0, done.stderr[-3000:]
    return {"stopped": root / "stopped", "whole": root / "whole"}


def second_filesystem(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A new folder on /dev/shm, a tmpfs: another filesystem than the test's /tmp folder (removed after the test)."""
    if not SHM.is_dir() or SHM.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("/dev/shm is not a second filesystem here")
    folder = SHM / f"regkit-test-{os.getpid()}-{time.time_ns()}"
    folder.mkdir()
    request.addfinalizer(lambda: shutil.rmtree(folder, ignore_errors=True))
    return folder


@pytest.fixture(params=["tmp", "shm"])
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A folder for a run beside the test's /tmp folder, or on /dev/shm (another filesystem)."""
    return tmp_path if request.param == "tmp" else second_filesystem(request, tmp_path)


def partial_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.partial"))


def break_file(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "zero-byte":
        path.write_bytes(b"")
    elif how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "garbage":
        path.write_bytes(random.Random(0).randbytes(len(data)))
    elif how == "flipped":  # bytes inside the tensor data changed: only the zip CRCs tell
        middle = len(data) // 2
        path.write_bytes(data[:middle] + bytes(b ^ 0xFF for b in data[middle:middle + 64]) + data[middle + 64:])
    else:
        raise AssertionError(how)


@pytest.mark.parametrize("how", ["zero-byte", "truncated", "garbage", "flipped"])
def test_a_broken_checkpoint_is_told_from_a_complete_one(runs: dict[str, Path], how: str, tmp_path: Path) -> None:
    ckpt = tmp_path / "last.ckpt"
    shutil.copyfile(runs["stopped"] / "checkpoints" / "last.ckpt", ckpt)
    assert problem(ckpt) is None
    break_file(ckpt, how)
    assert problem(ckpt) is not None


def test_a_weights_only_checkpoint_cannot_resume_training(runs: dict[str, Path], tmp_path: Path) -> None:
    saved = checkpoint(runs["stopped"] / "checkpoints" / "last.ckpt")
    torch.save({k: v for k, v in saved.items() if k not in ("optimizer_states", "loops")}, tmp_path / "w.ckpt")
    assert "weights-only" in (problem(tmp_path / "w.ckpt") or "")
    assert problem(tmp_path / "w.ckpt", resumable=False) is None  # fine to validate / test


# (how the newest files are broken, --ckpt_path, the file resumed from instead, where the run is)
BROKEN = [
    ("zero-byte", ["last.ckpt"], "last", "epoch=1-step=4.ckpt", "tmp"),
    ("truncated", ["last.ckpt"], "auto", "epoch=1-step=4.ckpt", "shm"),
    ("garbage", ["last.ckpt", "epoch=1-step=4.ckpt"], "last", "epoch=1-step=3.ckpt", "shm"),
    pytest.param("flipped", ["last.ckpt"], "auto", "epoch=1-step=4.ckpt", "tmp", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("how,broken,request_,instead,where", BROKEN)
def test_a_broken_newest_checkpoint_is_named_and_the_newest_complete_one_resumes(
    runs: dict[str, Path], how: str, broken: list[str], request_: str, instead: str, where: str,
    tmp_path: Path, request: pytest.FixtureRequest,
) -> None:
    """``--ckpt_path last|auto`` finds last.ckpt broken, says so by name, resumes from the newest
    complete checkpoint of the run (saying which) and ends bit-identical to an uninterrupted run."""
    base = second_filesystem(request, tmp_path) if where == "shm" else tmp_path
    run = base / "runs" / "mlp_dropout" / "20261204-000000-abcdef"
    shutil.copytree(runs["stopped"], run)
    for name in broken:
        break_file(run / "checkpoints" / name, how)
    # `auto` finds the run by the recipe's name under the logger's save_dir; `last` is given the folder
    where_args = ["--run_dir", str(run)] if request_ == "last" else []
    os.chdir(base)  # runs/ is found from the working folder
    done = fit("--trainer.max_steps", "5", "--ckpt_path", request_, *where_args)
    assert done.returncode == 0, done.stderr[-3000:]
    told = done.stderr.replace("\n", " ")
    for name in broken:
        assert name in told
    shown = (run if request_ == "last" else run.relative_to(base)) / "checkpoints" / instead
    assert f"using {shown}, the newest complete checkpoint" in told, told[-2000:]
    assert f"Restoring states from the checkpoint path at {shown}" in told
    assert_same_training_state(checkpoint(runs["whole"] / "checkpoints" / "last.ckpt"),
                               checkpoint(run / "checkpoints" / "last.ckpt"))


@pytest.mark.parametrize("request_", ["last", "auto"])
def test_no_complete_checkpoint_exits_2_and_starts_nothing(runs: dict[str, Path], request_: str, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(runs["stopped"], run)
    for ckpt in (run / "checkpoints").glob("*.ckpt"):
        break_file(ckpt, "truncated")
    before = sorted((p.name, p.stat().st_size) for p in run.rglob("*"))
    done = regkit_main(*ARGS, "--trainer.max_steps", "5", "--ckpt_path", request_, "--run_dir", str(run))
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert f"no complete checkpoint in {run / 'checkpoints'}" in done.stderr.replace("\n", " ")
    assert "last.ckpt is truncated" in done.stderr
    assert sorted((p.name, p.stat().st_size) for p in run.rglob("*")) == before  # nothing started over


def test_a_save_that_does_not_fit_keeps_the_previous_file(place: Path) -> None:
    """The plugin itself: a write that fails (EFBIG under a file size limit) leaves the previous
    checkpoint as it was, no partial file, and a message naming the folder and its free space."""
    io, target = SameFolderCheckpointIO(), place / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.zeros(10)}}, target)
    previous = target.read_bytes()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (len(previous) + 10_000, hard))
    try:
        with pytest.raises(DiskFull) as raised:
            io.save_checkpoint({"state_dict": {"w": torch.zeros(100_000)}}, target)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)
    assert str(place / "checkpoints") in str(raised.value) and " free" in str(raised.value)
    assert target.read_bytes() == previous
    assert partial_files(place) == []


@pytest.mark.parametrize("place", [pytest.param("tmp", marks=pytest.mark.slow), "shm"], indirect=True)
def test_a_save_killed_before_its_rename_leaves_the_previous_checkpoint(
    runs: dict[str, Path], place: Path, tmp_path: Path
) -> None:
    """SIGKILL inside the 4th save (last.ckpt of step 2, fully written under its partial name):
    last.ckpt is step 1's, complete; the next start removes the partial file and resumes exactly."""
    (tmp_path / "killer.py").write_text(KILLER)
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "TMPDIR": str(tmp_path / "tmpdir"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}
    (tmp_path / "tmpdir").mkdir()
    run = place / "run"
    killed = subprocess.run([sys.executable, "-m", "regkit.cli", *ARGS, "--trainer.max_steps", "5", "--run_dir", str(run),
                             "--trainer.callbacks+=killer.KillInSave", "--trainer.callbacks.init_args.save=4"],
                            capture_output=True, text=True, env=env, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    (left,) = partial_files(run)
    assert left.name.startswith(".last.ckpt.") and left.parent == run / "checkpoints"
    assert checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == 1
    assert not [p for p in (tmp_path / "tmpdir").rglob("*") if p.is_file()]  # no file in /tmp ($TMPDIR)
    done = fit("--trainer.max_steps", "5", "--ckpt_path", "last", "--run_dir", str(run))
    assert done.returncode == 0, done.stderr[-3000:]
    assert partial_files(run) == []
    assert_same_training_state(checkpoint(runs["whole"] / "checkpoints" / "last.ckpt"),
                               checkpoint(run / "checkpoints" / "last.ckpt"))


def test_every_run_saves_through_the_same_folder_plugin_unless_given_its_own() -> None:
    from lightning.pytorch.plugins.io import TorchCheckpointIO

    from regkit.callbacks.checkpoint_files import with_checkpoint_io

    assert [type(p) for p in with_checkpoint_io(None)] == [SameFolderCheckpointIO]
    assert [type(p) for p in with_checkpoint_io("bf16-mixed")][1:] == [SameFolderCheckpointIO]
    own = TorchCheckpointIO()
    assert with_checkpoint_io([own]) == [own]
    trainer = L.Trainer(plugins=with_checkpoint_io(None), logger=False)
    assert isinstance(trainer.strategy.checkpoint_io, SameFolderCheckpointIO)


def file_size_limit(limit: int):  # type: ignore[no-untyped-def]
    def limit_child() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return limit_child


def test_a_full_disk_ends_the_run_clearly_and_keeps_the_previous_checkpoint(runs: dict[str, Path], tmp_path: Path) -> None:
    """A resumed run whose next checkpoint exceeds the file size limit (EFBIG, as a full disk
    ENOSPC): exit 2 naming the folder and its free space, no traceback, last.ckpt as it was."""
    run = tmp_path / "run"
    shutil.copytree(runs["stopped"], run)
    previous = (run / "checkpoints" / "last.ckpt").read_bytes()
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    done = subprocess.run([sys.executable, "-m", "regkit.cli", *ARGS, "--trainer.max_steps", "6", "--ckpt_path", "last",
                           "--run_dir", str(run)], capture_output=True, text=True, env=env, timeout=600,
                          preexec_fn=file_size_limit(len(previous) // 2))
    told = done.stderr.replace("\n", " ")
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert "not saved: the file size limit" in told and f"{run / 'checkpoints'} has " in told and " free" in told
    assert (run / "checkpoints" / "last.ckpt").read_bytes() == previous
    assert partial_files(run) == []


def test_a_full_tmpfs_ends_the_run_clearly_and_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    """A 1 MB tmpfs holds two checkpoints of 420 KB, not a third: the run stops with exit 2 at the
    save that does not fit, naming the folder and its free space; what was saved is complete."""
    mount = tmp_path / "small"
    mount.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({mounted.stderr.strip() or mounted.returncode}); "
                    "test_a_full_disk_ends_the_run_clearly_and_keeps_the_previous_checkpoint covers EFBIG")
    try:
        done = regkit_main(*ARGS, "--trainer.max_steps", "5", "--run_dir", str(mount / "run"))
        told = done.stderr.replace("\n", " ")
        assert done.returncode == 2, done.stderr[-3000:]
        assert "Traceback" not in done.stderr
        assert "not saved: no space left on device" in told and f"{mount / 'run' / 'checkpoints'} has " in told
        kept = sorted((mount / "run" / "checkpoints").glob("*.ckpt"))
        assert kept and all(problem(p) is None for p in kept)
        assert partial_files(mount) == []
        chosen, broken = newest_complete(mount / "run" / "checkpoints")
        assert chosen is not None and not broken
    finally:
        subprocess.run(["umount", str(mount)], check=False)


# The kill-point suite: a run (60 steps, 10 per epoch, a 3 MB checkpoint every step) killed again
# and again at chosen points and resumed with --ckpt_path last each time.
KILL_POINTS = int(os.environ.get("REGKIT_KILL_POINTS", "52"))
CHAIN_STEPS = 60
CHAIN_ARGS = [*ARGS, "--model.init_args.network.hidden", "[512]", "--data.init_args.limit_train", "1280",
              "--trainer.max_steps", str(CHAIN_STEPS)]


def reference_step(reference: Path, step: int) -> Path:
    (found,) = (reference / "checkpoints").glob(f"epoch=*-step={step}.ckpt")
    return found


def kill_while(proc: subprocess.Popen, checkpoints: Path, mode: str, arg: float) -> bool:
    """SIGKILL ``proc``: at the ``arg``-th time a partial file appears in ``checkpoints`` (mode
    ``write``: inside a save) or ``arg`` seconds after its start (mode ``time``: anywhere). False
    when the process ended by itself first."""
    start, seen, appearances = time.monotonic(), set(), 0
    while proc.poll() is None:
        if mode == "time":
            if time.monotonic() - start >= arg:
                break
            time.sleep(0.005)
            continue
        try:
            now = {e.name for e in os.scandir(checkpoints) if e.name.endswith(".partial")}
        except FileNotFoundError:
            now = set()
        appearances += len(now - seen)
        seen = now
        if appearances >= arg:
            break
    else:
        return False
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return True


@pytest.mark.slow
def test_runs_killed_at_many_points_resume_bit_identically_or_refuse(tmp_path: Path) -> None:
    """SIGKILL at KILL_POINTS points (half inside a checkpoint write, found by polling for its
    partial file; half at random times, startup included), half with the run folder under /tmp and
    half on /dev/shm. After each kill every checkpoint file is complete and equals the uninterrupted
    run's at its step; each resume (--ckpt_path last) continues, and the run's end is bit-identical
    to the uninterrupted run's; a kill before the first checkpoint is refused clearly. Writes its
    counts to $REGKIT_FAULTS_JSON (README.md, "Reliability")."""
    rng = random.Random(25)
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "TMPDIR": str(tmpdir)}
    env.pop("WANDB_SERVICE", None)

    def regkit(*args: str) -> subprocess.Popen:
        with open(tmp_path / "stderr.txt", "w") as log:
            return subprocess.Popen([sys.executable, "-m", "regkit.cli", *CHAIN_ARGS, *args],
                                    stdout=subprocess.DEVNULL, stderr=log, env=env, text=True)

    started = time.monotonic()
    whole = regkit("--run_dir", str(tmp_path / "whole"))
    assert whole.wait(timeout=900) == 0, (tmp_path / "stderr.txt").read_text()[-3000:]
    run_time = time.monotonic() - started
    reference = tmp_path / "whole"
    final = checkpoint(reference / "checkpoints" / "last.ckpt")
    assert final["global_step"] == CHAIN_STEPS

    counts = {"kill points tried": 0, "killed inside a checkpoint write": 0,
              "killed before the first checkpoint (resume refused clearly)": 0,
              "resumed exactly": 0, "checkpoints checked after a kill, equal to the uninterrupted run's": 0,
              "half-written files under a checkpoint name": 0, "broken checkpoints reported at resume": 0,
              "runs completed after kills, bit-identical": 0}
    places = [tmp_path] + ([] if SHM.stat().st_dev == tmp_path.stat().st_dev else [SHM])
    for place_index, base in enumerate(places):
        chain = 0
        folder = Path(base) / f"regkit-kills-{os.getpid()}-{chain}"
        try:
            resumes, kills_here = 0, KILL_POINTS // len(places) + (place_index < KILL_POINTS % len(places))
            kills_done = 0
            while True:
                last = folder / "checkpoints" / "last.ckpt"
                proc = regkit("--run_dir", str(folder), *(["--ckpt_path", "last"] if last.exists() else []))
                resumed = last.exists()
                if kills_done == kills_here:  # the last part of the run: no kill
                    killed = False
                    assert proc.wait(timeout=900) == 0, (tmp_path / "stderr.txt").read_text()[-3000:]
                else:
                    mode = "write" if kills_done % 2 == 0 else "time"
                    killed = kill_while(proc, folder / "checkpoints", mode,
                                        rng.randint(1, 6) if mode == "write" else rng.uniform(0.2, run_time))
                told = (tmp_path / "stderr.txt").read_text()
                counts["broken checkpoints reported at resume"] += told.count("the newest complete checkpoint")
                if resumed:
                    counts["resumed exactly"] += 1  # checked below: every later checkpoint, and the end
                if not killed:
                    assert proc.returncode == 0, told[-3000:]
                    assert_same_training_state(final, checkpoint(folder / "checkpoints" / "last.ckpt"))
                    counts["runs completed after kills, bit-identical"] += 1
                    assert not partial_files(folder)  # removed when the run after a killed save started
                    shutil.rmtree(folder)
                    if kills_done == kills_here:
                        break
                    chain += 1  # the run ended before the next kill: a new one
                    folder = Path(base) / f"regkit-kills-{os.getpid()}-{chain}"
                    continue
                kills_done += 1
                counts["kill points tried"] += 1
                counts["killed inside a checkpoint write"] += bool(partial_files(folder))
                saved = sorted((folder / "checkpoints").glob("*.ckpt"), key=lambda p: p.stat().st_mtime_ns)[-3:]
                for ckpt in saved:  # the newest files: those a kill could have hit
                    counts["half-written files under a checkpoint name"] += problem(ckpt) is not None
                    assert problem(ckpt) is None, (ckpt, problem(ckpt))
                if last.exists():
                    state = checkpoint(last)
                    assert_same_training_state(checkpoint(reference_step(reference, state["global_step"])), state)
                    counts["checkpoints checked after a kill, equal to the uninterrupted run's"] += 1
                else:  # killed before its first checkpoint: --ckpt_path last refuses, naming the place
                    refused = regkit_main(*CHAIN_ARGS, "--run_dir", str(folder), "--ckpt_path", "last")
                    assert refused.returncode == 2 and "nothing to resume" in refused.stderr, refused.stderr[-2000:]
                    counts["killed before the first checkpoint (resume refused clearly)"] += 1
                    shutil.rmtree(folder, ignore_errors=True)
                    chain += 1
                    folder = Path(base) / f"regkit-kills-{os.getpid()}-{chain}"
                resumes += 1
        finally:
            if base == SHM:
                shutil.rmtree(folder, ignore_errors=True)
    assert counts["kill points tried"] == KILL_POINTS
    assert counts["half-written files under a checkpoint name"] == 0
    assert counts["resumed exactly"] + counts["killed before the first checkpoint (resume refused clearly)"] >= KILL_POINTS
    assert not [p for p in tmpdir.rglob("*") if p.is_file()]  # nothing in /tmp ($TMPDIR)

    # The other half of the figures: every checkpoint of the uninterrupted run broken one way or another
    detected, tried = 0, 0
    for i, ckpt in enumerate(sorted((reference / "checkpoints").glob("*.ckpt"))):
        broken = tmp_path / "broken.ckpt"
        shutil.copyfile(ckpt, broken)
        break_file(broken, ["zero-byte", "truncated", "garbage", "flipped"][i % 4])
        tried, detected = tried + 1, detected + (problem(broken) is not None)
    counts["corrupted checkpoints tried"], counts["corrupted checkpoints detected"] = tried, detected
    assert detected == tried
    counts["seconds"] = round(time.monotonic() - started)
    Path(os.environ.get("REGKIT_FAULTS_JSON", tmp_path / "faults.json")).write_text(json.dumps(counts, indent=2) + "\n")
