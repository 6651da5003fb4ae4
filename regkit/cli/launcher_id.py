"""The run id that every process of one torchrun or SLURM launch agrees on: the launcher's job id.

torchrun and srun start each process themselves, so the processes cannot agree on regkit's random
run id (:func:`regkit.cli.run_folder.new_run_id`); they all see the launcher's job id instead:

* SLURM (as Lightning detects it: ``srun``, or the batch step of an ``sbatch`` script):
  ``slurm-<SLURM_JOB_ID>``, or ``slurm-<SLURM_ARRAY_JOB_ID>_<SLURM_ARRAY_TASK_ID>`` for a task of a
  job array. A requeued job keeps its id, so ``--ckpt_path auto`` continues it in its folder.
* torchrun with ``--rdzv-id ID`` (``TORCHELASTIC_RUN_ID``; not torchrun's default ``none``):
  ``torchrun-<ID>``. ``--standalone`` picks a new random one per launch.

SLURM wins when both are set (``srun torchrun ...``): the job id survives a requeue.

torchrun without ``--rdzv-id`` names nothing, so there :func:`agreed_new_run_id` makes the processes
agree on a new id of regkit's kind: the first one to ask puts its proposal into the store torchrun's
own agent holds for the launch (``MASTER_ADDR:MASTER_PORT``; ``torch.distributed.TCPStore``) and
every process reads back the one that won.
"""
from __future__ import annotations

import os
import re
from datetime import timedelta
from typing import Callable, NamedTuple, Optional


class LauncherId(NamedTuple):
    run_id: str  # the run folder's name
    source: str  # where it came from, for messages: "SLURM job 123 (SLURM_JOB_ID)"


def slurm_detected() -> bool:
    """Whether Lightning runs this process as part of a SLURM job (not an interactive shell in one)."""
    if "SLURM_JOB_ID" not in os.environ:
        return False
    from lightning.fabric.plugins.environments import SLURMEnvironment

    return SLURMEnvironment.detect()


def launcher_id() -> Optional[LauncherId]:
    """The launcher's id for this process's run, or None when no launcher names one."""
    env = os.environ
    if slurm_detected():
        array, task = env.get("SLURM_ARRAY_JOB_ID"), env.get("SLURM_ARRAY_TASK_ID")
        if array and task:
            return LauncherId(safe(f"slurm-{array}_{task}"),
                              f"SLURM array job {array} task {task} (SLURM_ARRAY_JOB_ID, SLURM_ARRAY_TASK_ID)")
        job = env["SLURM_JOB_ID"]
        return LauncherId(safe(f"slurm-{job}"), f"SLURM job {job} (SLURM_JOB_ID)")
    rdzv = env.get("TORCHELASTIC_RUN_ID", "")
    if rdzv and rdzv != "none":  # torchrun's default --rdzv-id: every launch would share it
        return LauncherId(safe(f"torchrun-{rdzv}"), f"torchrun --rdzv-id {rdzv} (TORCHELASTIC_RUN_ID)")
    return None


def safe(name: str) -> str:
    """``name`` as one folder name: letters, digits, ``_ . -`` (anything else becomes ``_``)."""
    return re.sub(r"[^\w.-]", "_", name)


def agreed_new_run_id(new_run_id: Callable[[], str]) -> str:
    """``new_run_id()``, or under torchrun (several processes, torchrun's agent store) the one that
    the first process of this launch and restart proposed."""
    env = os.environ
    if env.get("TORCHELASTIC_USE_AGENT_STORE") != "True" or int(env.get("WORLD_SIZE", "1")) < 2:
        return new_run_id()
    from torch.distributed import TCPStore

    store = TCPStore(env["MASTER_ADDR"], int(env["MASTER_PORT"]), is_master=False, timeout=timedelta(seconds=300))
    key = f"regkit/run_id/{env.get('TORCHELASTIC_RESTART_COUNT', '0')}"  # a restart starts a run of its own
    return bytes(store.compare_set(key, "", new_run_id())).decode()
