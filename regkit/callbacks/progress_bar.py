"""A progress bar that never turns a GPU tensor into a Python number on an ordinary training step."""
from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import TQDMProgressBar

from regkit.loggers.interval import CountsTrainingBatches, log_every_n_steps


class ProgressBar(TQDMProgressBar):
    """Lightning's TQDM progress bar, showing training values only when the trainer logs them.

    Every training value logged with ``self.log(..., prog_bar=True)`` is read as a Python float
    by Lightning after every step, which makes the host wait for the GPU once per step. regkit's
    tasks therefore log their training values without ``prog_bar``, and this bar shows the logged
    values whose names match ``show`` (default: the losses, ``train/loss``, ``train/d_loss``,
    ``train/g_loss``), read every ``trainer.log_every_n_steps`` training batches -- when the
    loggers read them anyway -- and at the end of each epoch. The step counter still moves every
    step (tqdm redraws at most every 0.1 s). ``regkit fit`` uses this bar unless the recipe brings
    its own progress bar or sets ``trainer.enable_progress_bar: false``.

    Args:
        show: shell-style patterns (``fnmatch``) of logged names to display.
        refresh_rate, process_position, leave: as Lightning's ``TQDMProgressBar``.
    """

    def __init__(
        self, show: Sequence[str] = ("train/*loss",), refresh_rate: int = 1, process_position: int = 0,
        leave: bool = False,
    ) -> None:
        super().__init__(refresh_rate=refresh_rate, process_position=process_position, leave=leave)
        self.show = list(show)

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)
        for key, value in trainer.callback_metrics.items():
            if key not in items and any(fnmatchcase(key, pattern) for pattern in self.show):
                items[key] = value.item() if isinstance(value, torch.Tensor) else value
        return items

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        bar = self.train_progress_bar
        if bar.disable:
            return
        n = batch_idx + 1
        if n % self.refresh_rate == 0 or n == bar.total:
            bar.update(n - bar.n)  # tqdm throttles the redraw itself (mininterval)
        every = log_every_n_steps(trainer)
        # Training batches so far, this one included: the task's own count (regkit's tasks keep it);
        # for another LightningModule its optimizer steps, one per batch.
        batches = pl_module.trained_batches if isinstance(pl_module, CountsTrainingBatches) else trainer.global_step
        if every and batches % every == 0:
            bar.set_postfix(self.get_metrics(trainer, pl_module))
