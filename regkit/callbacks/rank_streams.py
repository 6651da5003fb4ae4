"""Distinct random streams per DDP process, so that the processes draw different dropout masks."""
from __future__ import annotations

import lightning as L
import torch

RANK_STRIDE = 1_000_003  # a prime: rank r of seed s never starts where rank 0 of a nearby seed does


class DistinctRankStreams(L.Callback):
    """Lightning's ``seed_everything`` seeds every process alike, so under DDP all ranks would draw
    the same dropout masks (on different examples), making the noise of one global batch
    correlated. At the start of a fresh fit, rank ``r > 0`` restarts torch's generators (CPU and
    CUDA) from ``seed + r * 1_000_003``; rank 0 keeps its stream, so a one-process run is unchanged.
    A resumed run gets every process's saved streams back (:class:`~regkit.callbacks.resume.ExactResume`).
    """

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.world_size > 1 and trainer.global_rank > 0 and trainer.ckpt_path is None:
            torch.manual_seed((torch.initial_seed() + RANK_STRIDE * trainer.global_rank) % 2**63)
