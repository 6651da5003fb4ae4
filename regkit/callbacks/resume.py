"""What an exact resume needs beyond weights and optimizer state: random number generators and the
data position, so that a run stopped after any checkpoint and resumed ends with the same weights."""
from __future__ import annotations

import os
import random
from typing import Any, Optional

import lightning as L
import numpy as np
import torch
import torch.distributed as dist
from lightning.pytorch.callbacks import ModelCheckpoint

from regkit.callbacks.checkpoint_files import copy_durably, remove_partial_saves, replace_durably
from regkit.loggers.interval import CountsTrainingBatches


def rng_state() -> dict[str, Any]:
    """torch (CPU and every CUDA device), numpy and Python RNG states as tensors and plain values, so
    the checkpoint still loads with ``torch.load(weights_only=True)``."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def last_path(callback: Any) -> str:
    return os.path.join(callback.dirpath, callback.CHECKPOINT_NAME_LAST + callback.FILE_EXTENSION)


def train_loaders(trainer: L.Trainer) -> list[Any]:
    loaders = trainer.train_dataloader
    if loaders is None:
        return []
    if isinstance(loaders, dict):
        return list(loaders.values())
    return list(loaders) if isinstance(loaders, (list, tuple)) else [loaders]


class ExactResume(L.Callback):
    """Saves the RNG states in every checkpoint and restores them right before the first training
    batch after a resume; tells resumable data loaders (``regkit.data.ResumableDataLoader``) the
    epoch, so a mid-epoch checkpoint continues with the batch after the last one trained on.

    It also keeps ``last.ckpt`` the latest state when training stops: at the batch that reaches
    ``max_steps`` (mid-epoch too) and, for any other stop, when training ends.

    Under DDP every process's RNG states are gathered into the checkpoint (``rng_per_rank``) and
    each process gets its own back when resumed with the same number of processes.
    """

    def __init__(self) -> None:
        self.to_restore: Optional[dict[str, Any]] = None
        self.per_rank: Optional[list[dict[str, Any]]] = None
        self.logged_step: Optional[int] = None
        self.saved_step: Optional[int] = None
        self.stop_copies: dict[str, str] = {}
        # Training batches started, and whether one is under way: the step the loggers number their
        # rows with is the count of batches finished before the current one (Lightning counts a
        # batch once its hooks and logging are done).
        self.batches, self.in_batch = 0, False

    def logger_step(self) -> int:
        """The step of the rows the loggers write now (the last one a checkpoint written now covers)."""
        return self.batches - 1 if self.in_batch else self.batches

    def state_dict(self) -> dict[str, Any]:
        return {"rng": rng_state(), "batches": self.batches, "logger_step": self.logger_step()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.to_restore = state_dict.get("rng")
        self.per_rank = state_dict.get("rng_per_rank")
        if "batches" in state_dict:
            self.batches, self.logged_step = int(state_dict["batches"]), int(state_dict["logger_step"])

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:  # what saves killed before their rename left (checkpoint_files.py)
            for callback in trainer.checkpoint_callbacks:
                if isinstance(callback, ModelCheckpoint) and callback.dirpath:
                    remove_partial_saves(callback.dirpath)
        if trainer.ckpt_path is None:
            return
        if self.logged_step is not None and trainer.is_global_zero:  # a killed run's rows after its checkpoint
            for logger in trainer.loggers:
                if hasattr(logger, "forget_after"):
                    logger.forget_after(self.logged_step)
        for callback in trainer.checkpoint_callbacks:  # a resumed run keeps writing its own last.ckpt
            if isinstance(callback, ModelCheckpoint) and callback.save_last and callback.dirpath:
                if not callback.last_model_path and os.path.isfile(last_path(callback)):
                    callback.last_model_path = last_path(callback)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for loader in train_loaders(trainer):
            if hasattr(loader, "set_epoch"):
                loader.set_epoch(trainer.current_epoch)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.in_batch = False  # before any ModelCheckpoint's epoch-end save: Lightning runs those last

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        self.batches, self.in_batch = self.batches + 1, True
        # Here, not on load: sanity-check validation and loader setup between loading and the first
        # batch would otherwise draw from the restored streams.
        if self.per_rank is not None and len(self.per_rank) == trainer.world_size:
            self.to_restore = self.per_rank[trainer.global_rank]
        if self.to_restore is not None:
            set_rng_state(self.to_restore)
        self.to_restore = self.per_rank = None

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        # Called after the task's on_load_checkpoint and before load_state_dict, which restores the
        # counts of checkpoints that hold them. For older checkpoints, saved at a batch's end: the
        # task's count of training batches (regkit's tasks restore or derive it), else one optimizer
        # step per batch.
        if isinstance(pl_module, CountsTrainingBatches):
            self.batches = pl_module.trained_batches
        elif "global_step" in checkpoint:
            self.batches = int(checkpoint["global_step"])
        else:
            return
        self.logged_step = self.batches - 1

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        self.saved_step = checkpoint.get("global_step")
        # Every process builds the checkpoint (rank 0 writes it): gather all processes' streams.
        if trainer.world_size > 1 and dist.is_available() and dist.is_initialized():
            states: list[Any] = [None] * trainer.world_size
            dist.all_gather_object(states, rng_state())
            checkpoint.get("callbacks", {}).get(self.state_key, {})["rng_per_rank"] = states

    def save_last(self, trainer: L.Trainer, stopping: bool = False) -> None:
        """Write ``last.ckpt`` of every ModelCheckpoint that keeps one, unless this step is saved.
        ``stopping``: the batch that reaches ``max_steps``; Lightning still runs the epoch-end hooks
        after it, where a ModelCheckpoint may save this step again as a finished epoch (whose resume
        would skip the epoch's remaining batches), so this state is put back at the end of training."""
        if self.saved_step == trainer.global_step or getattr(trainer, "fast_dev_run", False):
            return
        for callback in trainer.checkpoint_callbacks:
            if isinstance(callback, ModelCheckpoint) and callback.save_last and callback.dirpath:
                path = last_path(callback)
                callback.last_model_path = path  # its own next save overwrites this file, no last-v1
                # As the callback's own saves: weights only if it keeps only weights (Lightning says so when not told).
                trainer.save_checkpoint(path, weights_only=callback.save_weights_only)
                if stopping and trainer.is_global_zero:
                    copy_durably(path, path + ".stop")
                    self.stop_copies[path + ".stop"] = path

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        # The epoch's last batch: a checkpoint from here on resumes at the start of the next epoch
        # (Lightning restarts there without announcing the epoch, so the loader must know it).
        epoch_done = batch_idx + 1 >= trainer.num_training_batches
        for loader in train_loaders(trainer):
            if hasattr(loader, "trained"):
                if epoch_done and hasattr(loader, "finish_epoch"):
                    loader.finish_epoch()
                else:
                    loader.trained = batch_idx + 1
        if 0 < trainer.max_steps <= trainer.global_step:  # training stops here, perhaps mid-epoch
            self.save_last(trainer, stopping=True)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.in_batch = False
        self.save_last(trainer)
        self.put_back_stop_copies()

    def put_back_stop_copies(self) -> None:
        """``last.ckpt`` back to the state saved at ``max_steps`` (see :meth:`save_last`)."""
        for copy, path in self.stop_copies.items():
            replace_durably(copy, path)
        self.stop_copies.clear()
