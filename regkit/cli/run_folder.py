"""A run is a folder: ``<root>/<name>/<run id>/`` holds everything one ``regkit`` command writes.

One rule for every task, logger and callback::

    runs/mlp_dropout/20261127-031502-4f9a1c/
        config.yaml          the resolved recipe (LightningCLI's SaveConfigCallback)
        checkpoints/         last.ckpt (always the latest state) and the best checkpoint(s)
        metrics.csv          every logged value, one row per step / epoch (CSVLogger)
        hparams.yaml         the task's hyperparameters (CSVLogger)
        curves.png           loss and the task's metric per epoch (written when fit ends)
        predictions.pt       what ``regkit predict`` returned
        wandb/               the W&B run (offline unless you are logged in)
        run.lock             held by the fit writing the folder (regkit/cli/run_lock.py)
        samples/, attention_maps/   pictures from callbacks

* ``root`` is the first logger's ``save_dir`` (``runs`` by default), ``name`` is the recipe file's
  stem (or the logger's ``name``, or the task's class), ``run id`` is the start time plus random
  hex, unique even for two runs started in the same second; it is also the W&B run id.
* ``--run_dir PATH`` puts the run in PATH instead; a PATH that already holds a run is refused
  unless ``--ckpt_path last|auto`` continues it (``validate|test|predict --ckpt_path last
  --run_dir PATH`` write into ``PATH/<command>-<id>/``).
* ``--ckpt_path last`` continues the latest run of the recipe (the most recently written
  ``<root>/<name>/*/checkpoints/last.ckpt``) in its own folder and W&B run; ``--ckpt_path auto``
  does the same when there is one and starts a new run otherwise. Both check the file first: a
  broken ``last.ckpt`` is named and the newest complete checkpoint beside it is used instead, or,
  when none is complete, the command stops (exit 2; regkit/callbacks/checkpoint_files.py).
* ``validate`` / ``test`` / ``predict`` of a checkpoint inside a run write into
  ``<that run>/<command>-<id>/``; otherwise into a new run folder.

Under DDP the launching process decides and passes the folder to the processes it starts (the
``REGKIT_RUN`` environment variable), so all ranks write into the same run. Processes started
by an outside launcher (torchrun, srun) cannot agree on a random id: the run id is the launcher's
job id instead (``slurm-<SLURM_JOB_ID>``, ``torchrun-<--rdzv-id>``: regkit.cli.launcher_id), and
``--ckpt_path auto`` resumes that folder only (a requeued job continues itself, never another job's run).
torchrun without ``--rdzv-id``: one random id, agreed through torchrun's store.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import sys
import time
from pathlib import Path
from typing import Any, Optional

from regkit.cli.error_report import fail
from regkit.cli.launcher_id import agreed_new_run_id, launcher_id
from regkit.registry import snake_case

ENV = "REGKIT_RUN"
DEFAULT_ROOT = "runs"


def new_run_id() -> str:
    """``YYYYmmdd-HHMMSS-xxxxxx``: sortable by start time, unique by 24 random bits."""
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


def latest_checkpoint(root: str | Path, name: str) -> Optional[Path]:
    """The most recently written ``<root>/<name>/*/checkpoints/*.ckpt`` (``last.ckpt`` unless a
    run was killed before its first one), or None."""
    found = [p for p in Path(root, name).glob("*/checkpoints/*.ckpt") if p.is_file()]
    return max(found, key=lambda p: (p.stat().st_mtime, p.name == "last.ckpt")) if found else None


def complete_checkpoint(folder: Path, request: str, subcommand: str) -> Path:
    """``--ckpt_path last|auto``: the run's ``last.ckpt`` if it is complete, else the newest complete
    checkpoint beside it, saying which file was broken and which one is used instead; exit 2 when
    none is complete (a run never continues from garbage, nor silently starts over)."""
    from regkit.callbacks.checkpoint_files import newest_complete

    chosen, broken = newest_complete(folder, resumable=subcommand == "fit")
    passed = "; ".join(f"{path.name} {why}" for path, why in broken)
    if chosen is None:
        fail(f"--ckpt_path {request}: no complete checkpoint in {folder}: {passed}. Nothing was resumed; "
             "give --ckpt_path a checkpoint file, or start a new run without --ckpt_path (or with another --run_dir).")
    if broken or chosen.name != "last.ckpt":
        told = passed if broken else "last.ckpt is missing"
        print(f"regkit {subcommand}: --ckpt_path {request}: {told}; using {chosen}, the newest complete "
              "checkpoint of that run, instead", file=sys.stderr)
    return chosen


def run_of_checkpoint(ckpt_path: str | Path) -> Optional[Path]:
    """The run folder a checkpoint belongs to (``<run>/checkpoints/x.ckpt``), or None."""
    path = Path(ckpt_path).resolve()
    if path.parent.name == "checkpoints" and (path.parent.parent / "config.yaml").is_file():
        return path.parent.parent
    return None


def holds_run(folder: str | Path) -> bool:
    """Whether ``folder`` already holds a run (its config.yaml, metrics.csv or checkpoints)."""
    folder = Path(folder)
    return (folder / "config.yaml").is_file() or (folder / "metrics.csv").is_file() or any(
        (folder / "checkpoints").glob("*.ckpt"))


def wandb_id(run_dir: str | Path) -> str:
    """The W&B run id of a run folder: the one its ``wandb/`` already holds (a resumed run keeps
    it), else the folder's name when regkit named it, else a new id."""
    previous = sorted(Path(run_dir, "wandb").glob("*run-*-*"), key=lambda p: p.stat().st_mtime)
    for folder in reversed(previous):  # wandb/offline-run-20261127_031502-<id>
        match = re.fullmatch(r"(?:offline-)?run-\d{8}_\d{6}-(.+)", folder.name)
        if match:
            return match.group(1)
    name = Path(run_dir).name
    if re.fullmatch(r"(\w+-)?\d{8}-\d{6}-[0-9a-f]{6}", name):
        return name
    return new_run_id()


def inherited() -> Optional[dict[str, Any]]:
    """The run the launching process chose, in a process it started for DDP (local rank > 0)."""
    if os.environ.get("LOCAL_RANK", "0") != "0" and ENV in os.environ:
        return json.loads(os.environ[ENV])
    return None


def share(run: dict[str, Any]) -> None:
    """Pass the chosen run to the DDP processes this one will start."""
    os.environ[ENV] = json.dumps(run)


def first_logger(config: Any) -> Any:
    logger = config.get("trainer", {}).get("logger")
    if isinstance(logger, list):
        return logger[0] if logger else None
    return logger


def init_args(logger: Any) -> Any:
    if logger is None or isinstance(logger, bool) or not hasattr(logger, "get"):
        return None
    return logger.get("init_args")


def run_root(config: Any) -> str:
    """The first logger's ``save_dir``, else ``runs``."""
    args = init_args(first_logger(config))
    save_dir = args.get("save_dir") if args is not None else None
    return str(save_dir) if save_dir else DEFAULT_ROOT


def run_name(config: Any) -> str:
    """The recipe file's stem; else the logger's ``name``; else the task class in snake case."""
    configs = config.get("config") or []
    if configs:
        return Path(str(configs[-1])).stem
    args = init_args(first_logger(config))
    if args is not None and args.get("name"):
        return str(args.get("name"))
    model = config.get("model")
    class_path = model.get("class_path", "") if hasattr(model, "get") else ""
    return snake_case(class_path.rsplit(".", 1)[-1]) if class_path else "regkit"


def run_dir(trainer: Any) -> Path:
    """The folder of the trainer's run (the CLI sets ``default_root_dir`` to it)."""
    return Path(trainer.default_root_dir)


def choose_run(config: Any, subcommand: str, ckpt_request: Optional[str]) -> dict[str, Any]:
    """Where this command writes, which checkpoint it loads, and the W&B run id (see regkit.cli.run_folder)."""
    root, name = run_root(config), run_name(config)
    given_dir = config.get("run_dir")
    job = None if given_dir else launcher_id()  # torchrun / srun: the folder named after the job
    job_dir = Path(root, name, job.run_id) if job is not None else None
    job_ckpt = job_dir is not None and any(Path(job_dir, "checkpoints").glob("*.ckpt"))
    if job_dir is not None and subcommand == "fit" and (ckpt_request == "auto" or ckpt_request == "last" and job_ckpt):
        given_dir = str(job_dir)  # the job resumes (or starts) its own run, as in --run_dir
    ckpt: Optional[Path] = None
    resume = False
    if ckpt_request in ("last", "auto"):
        if ckpt_request == "auto" and subcommand != "fit":
            fail(f"--ckpt_path auto is for fit (resume if there is a checkpoint, else start); "
                 f"give {subcommand} a checkpoint file or 'last'")
        if given_dir:
            candidate = Path(given_dir, "checkpoints", "last.ckpt")
            ckpt = candidate if any(candidate.parent.glob("*.ckpt")) else None
            where = str(candidate)
        else:
            ckpt = latest_checkpoint(root, name)
            where = os.path.join(root, name, "*", "checkpoints", "last.ckpt")
        if ckpt is not None:
            ckpt = complete_checkpoint(ckpt.parent, ckpt_request, subcommand)
        if ckpt is None and ckpt_request == "last":
            fail(f"--ckpt_path last: nothing to resume, no checkpoint at {where}. "
                 "Start a new run without --ckpt_path, or use --ckpt_path auto (resume if there is "
                 "a checkpoint, else start).")
        resume = ckpt is not None and subcommand == "fit"
    elif ckpt_request:
        ckpt = Path(ckpt_request)
        if not ckpt.is_file():
            fail(f"--ckpt_path {ckpt_request}: no such file (or 'last' / 'auto')")
    if resume:
        run_dir = ckpt.parent.parent  # type: ignore[union-attr]
    elif given_dir and ckpt_request not in ("last", "auto"):
        run_dir = Path(given_dir)
        if holds_run(run_dir):  # another run's files, perhaps of another recipe: never overwritten
            fail(f"--run_dir {given_dir} already holds a run (config.yaml, metrics.csv or checkpoints/). "
                 "Continue that run with --ckpt_path last (or auto), or give a new folder")
    elif given_dir:  # fit --ckpt_path auto of a run that saved no checkpoint yet starts it again there;
        # validate|test|predict of its last.ckpt write beside it, as for any checkpoint of a run
        run_dir = Path(given_dir) if subcommand == "fit" else Path(given_dir, f"{subcommand}-{agreed_new_run_id(new_run_id)}")
    elif subcommand != "fit" and ckpt is not None and run_of_checkpoint(ckpt) is not None:
        run_dir = run_of_checkpoint(ckpt) / f"{subcommand}-{job.run_id if job else agreed_new_run_id(new_run_id)}"  # type: ignore[operator]
    elif job is not None and job_dir is not None:
        run_dir = job_dir if subcommand == "fit" else job_dir.with_name(f"{subcommand}-{job.run_id}")
        if subcommand == "fit" and job_ckpt:
            fail(f"{job_dir}, the run folder of {job.source}, already holds a run: continue it with "
                 "--ckpt_path auto (what a requeued job script passes), or give this run its own "
                 "folder with --run_dir PATH")
    else:
        run_dir = Path(root, name, agreed_new_run_id(new_run_id))
    return {
        "run_dir": str(run_dir),
        "ckpt_path": str(ckpt) if ckpt is not None else None,
        "resume": resume,
        "wandb_id": wandb_id(run_dir),
    }


def place_loggers(trainer_config: Any, run_dir: str, wandb_id: str, resume: bool) -> None:
    """Every configured logger writes into the run folder; W&B uses the run's id (and resumes it)."""
    loggers = trainer_config.get("logger")
    for logger in loggers if isinstance(loggers, list) else [loggers]:
        args = init_args(logger)
        if args is None:
            continue
        if "save_dir" in args:
            args["save_dir"] = run_dir
        if str(logger.get("class_path", "")).endswith("WandbLogger"):
            if not args.get("id"):
                args["id"] = wandb_id
            if resume and "resume" in args:
                args["resume"] = "allow"
        elif "name" in args and "version" in args:  # CSV / TensorBoard: straight into the run folder
            args["name"], args["version"] = "", ""


def with_csv_logger(logger: Any, run_dir: Optional[str]) -> Any:
    """The configured loggers plus a CSVLogger writing ``<run dir>/metrics.csv`` (none if logging is off)."""
    from lightning.pytorch.loggers import CSVLogger

    from regkit.loggers import RunCSVLogger

    if logger is False or run_dir is None:
        return logger
    loggers = [] if logger in (None, True) else list(logger) if isinstance(logger, (list, tuple)) else [logger]
    if not any(isinstance(lg, CSVLogger) for lg in loggers):
        loggers.append(RunCSVLogger(run_dir))
    return loggers
