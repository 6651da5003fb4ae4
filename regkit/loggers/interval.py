"""Which training batches the loggers write: Lightning's ``log_every_n_steps`` rule, over a count of
training batches that regkit's tasks keep themselves (Lightning keeps its own in private loop state)."""
from __future__ import annotations

from typing import Any, Optional

import lightning as L

# The checkpoint key of the count (a plain int, so checkpoints still load with weights_only).
TRAINED_BATCHES = "trained_batches"


def log_every_n_steps(trainer: L.Trainer) -> int:
    """``Trainer(log_every_n_steps=...)``, an attribute Lightning sets at run time (untyped); 1 for
    a trainer without it (the stand-in a LightningModule gets under Fabric)."""
    return int(getattr(trainer, "log_every_n_steps", 1))


def attached_trainer(module: L.LightningModule) -> Optional[L.Trainer]:
    """The trainer ``module`` is attached to; None when a step is called directly (a test, a notebook)."""
    try:
        return module.trainer
    except RuntimeError:  # LightningModule.trainer raises when there is none
        return None


class CountsTrainingBatches(L.LightningModule):
    """A LightningModule that counts its training batches and keeps the count in its checkpoints.

    ``trained_batches`` is the number of training batches started, the current one included, over the
    whole run (a resumed run continues the count): the clock of :meth:`logging_due` and of regkit's
    progress bar. A subclass that overrides ``on_train_batch_start``, ``on_save_checkpoint`` or
    ``on_load_checkpoint`` calls ``super()``.
    """

    trained_batches: int = 0

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> Optional[int]:
        self.trained_batches += 1
        return None

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[TRAINED_BATCHES] = self.trained_batches

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # A checkpoint written before regkit kept the count: one optimizer step per training batch.
        self.trained_batches = int(checkpoint.get(TRAINED_BATCHES, checkpoint.get("global_step", 0)))

    def logging_due(self) -> bool:
        """Whether the trainer writes this training batch's logged values to its loggers: every
        ``log_every_n_steps`` training batches (Lightning's rule), every batch under ``fast_dev_run``
        or without a trainer.

        Tasks log training values only then: each ``self.log`` call costs Lightning's bookkeeping
        (tens to hundreds of microseconds of Python), so logging values that no logger reads is pure
        per-step overhead. Values logged at other steps would only ever be overwritten.
        """
        trainer = attached_trainer(self)
        if trainer is None or getattr(trainer, "fast_dev_run", False):
            return True
        every = log_every_n_steps(trainer)
        return bool(every) and self.trained_batches % every == 0 or bool(getattr(trainer, "should_stop", False))
