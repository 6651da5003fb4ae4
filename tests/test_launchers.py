"""Processes started by torchrun or srun agree on one run folder without --run_dir: it is named after
the launcher's job id (regkit/cli/launcher_id.py), and ``--ckpt_path auto`` resumes that folder, so a
requeued job continues itself and never another job's run."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import RECIPES, regkit_main

TINY = ["--data.init_args.limit_train", "512", "--trainer.limit_val_batches", "1", "--test_after_fit", "false",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--trainer.logger", "lightning.pytorch.loggers.CSVLogger"]
MLP = ["fit", "--config", str(RECIPES / "mlp_dropout.yaml"), *TINY]


def slurm(job: str, **more: str) -> dict[str, str]:
    """The variables sbatch / srun set that Lightning's SLURM detection and regkit read (one task)."""
    return {"SLURM_JOB_ID": job, "SLURM_NTASKS": "1", "SLURM_JOB_NAME": "regkit", **more}


def steps(ckpt: Path) -> int:
    return int(torch.load(ckpt, weights_only=True)["global_step"])


def test_launcher_id_names_the_job_and_ignores_what_no_launcher_set(monkeypatch: pytest.MonkeyPatch) -> None:
    from regkit.cli.launcher_id import launcher_id

    for name in [k for k in os.environ if k.startswith(("SLURM_", "TORCHELASTIC_"))]:
        monkeypatch.delenv(name)
    assert launcher_id() is None
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "none")  # torchrun's default --rdzv-id: shared by every launch
    assert launcher_id() is None
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "exp/7")
    assert launcher_id().run_id == "torchrun-exp_7"  # type: ignore[union-attr]
    for name, value in slurm("4242", SLURM_JOB_NAME="bash").items():  # an interactive shell in an allocation:
        monkeypatch.setenv(name, value)                                 # Lightning does not treat it as SLURM
    assert launcher_id().run_id == "torchrun-exp_7"  # type: ignore[union-attr]
    monkeypatch.setenv("SLURM_JOB_NAME", "regkit")
    assert launcher_id().run_id == "slurm-4242"  # type: ignore[union-attr]  # srun torchrun: the job id survives a requeue
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "4240")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "2")
    assert launcher_id().run_id == "slurm-4240_2"  # type: ignore[union-attr]


def test_a_slurm_job_writes_the_folder_named_after_it_and_its_requeue_resumes_it(tmp_path: Path) -> None:
    first = regkit_main(*MLP, "--trainer.max_steps", "2", "--ckpt_path", "auto", env=slurm("4242"))
    assert first.returncode == 0, first.stderr[-3000:]
    last = tmp_path / "runs" / "mlp_dropout" / "slurm-4242" / "checkpoints" / "last.ckpt"
    assert steps(last) == 2
    assert [p.name for p in (tmp_path / "runs" / "mlp_dropout").iterdir()] == ["slurm-4242"]

    # Another job of the same recipe with --ckpt_path auto starts its own run (the latest run of the
    # recipe is 4242's, which `auto` without a job id would resume)
    other = regkit_main(*MLP, "--trainer.max_steps", "2", "--ckpt_path", "auto", env=slurm("4243"))
    assert other.returncode == 0, other.stderr[-3000:]
    assert "Restoring states" not in other.stdout + other.stderr
    assert steps(tmp_path / "runs" / "mlp_dropout" / "slurm-4243" / "checkpoints" / "last.ckpt") == 2
    assert steps(last) == 2

    # The requeued job (same SLURM_JOB_ID) continues its own folder, from its step
    os.utime(last, (1, 1))  # older than 4243's: `auto` must not go by what was written last
    requeued = regkit_main(*MLP, "--trainer.max_steps", "4", "--ckpt_path", "auto", env=slurm("4242"))
    assert requeued.returncode == 0, requeued.stderr[-3000:]
    assert f"Restoring states from the checkpoint path at {last.relative_to(tmp_path)}" in requeued.stdout + requeued.stderr
    assert steps(last) == 4
    assert sorted(p.name for p in (tmp_path / "runs" / "mlp_dropout").iterdir()) == ["slurm-4242", "slurm-4243"]

    # A fresh fit in the same job would overwrite that run: exit 2, naming the folder and the variable
    fresh = regkit_main(*MLP, "--trainer.max_steps", "2", env=slurm("4242"))
    assert fresh.returncode == 2
    assert "runs/mlp_dropout/slurm-4242" in fresh.stderr and "SLURM_JOB_ID" in fresh.stderr
    assert "--ckpt_path auto" in fresh.stderr and "--run_dir" in fresh.stderr and "Traceback" not in fresh.stderr
    assert steps(last) == 4


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def two_nodes(rdzv_id: str, *args: str) -> list[subprocess.CompletedProcess]:
    """``torchrun --nnodes 2 --nproc_per_node 1 --node_rank R`` for R = 0, 1 at once on 127.0.0.1
    (two simulated nodes sharing this filesystem; static rendezvous, ``--rdzv-id`` if given), each
    running ``regkit ARGS``."""
    port, env = free_port(), {**os.environ, "PYTHONWARNINGS": "ignore"}
    env.pop("WANDB_SERVICE", None)
    procs = [
        subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
                          "--node_rank", str(rank), "--master_addr", "127.0.0.1", "--master_port", str(port),
                          *(["--rdzv-id", rdzv_id] if rdzv_id else []), "-m", "regkit", *args],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for rank in (0, 1)
    ]
    done = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        done.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return done


@pytest.mark.slow
@pytest.mark.parametrize("rdzv_id", ["exp7", ""], ids=["rdzv_id", "no_rdzv_id"])
def test_two_torchrun_nodes_write_one_run_folder_and_a_second_launch_resumes_it(tmp_path: Path, rdzv_id: str) -> None:
    nodes = ["--trainer.accelerator", "cpu", "--trainer.num_nodes", "2", "--trainer.devices", "1",
             "--trainer.strategy", "ddp"]
    for node in two_nodes(rdzv_id, *MLP, *nodes, "--trainer.max_steps", "2", "--ckpt_path", "auto"):
        assert node.returncode == 0, node.stderr[-3000:]
    (run,) = (tmp_path / "runs" / "mlp_dropout").iterdir()  # not one folder per node
    if rdzv_id:
        assert run.name == "torchrun-exp7"
    # else a new id of regkit's kind, agreed through torchrun's store
    last = run / "checkpoints" / "last.ckpt"
    assert steps(last) == 2  # rank 0 saved it, into the folder both nodes chose

    # the same launch again: with --rdzv-id its folder; without, the latest run of the recipe
    resumed = two_nodes(rdzv_id, *MLP, *nodes, "--trainer.max_steps", "4", "--ckpt_path", "auto")
    for node in resumed:
        assert node.returncode == 0, node.stderr[-3000:]
    assert f"Restoring states from the checkpoint path at {last.relative_to(tmp_path)}" in (
        resumed[0].stdout + resumed[0].stderr)
    assert [p.name for p in (tmp_path / "runs" / "mlp_dropout").iterdir()] == [run.name]
    assert steps(last) == 4
