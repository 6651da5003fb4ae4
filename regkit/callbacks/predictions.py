"""Write what ``regkit predict`` returns to ``<run dir>/predictions.pt``."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter



def concatenate(outputs: list[Any]) -> Any:
    """Batches of tensors (or of dicts of tensors) joined along the first dimension."""
    if not outputs:
        return outputs
    if isinstance(outputs[0], dict):
        return {key: concatenate([o[key] for o in outputs]) for key in outputs[0]}
    if isinstance(outputs[0], torch.Tensor):
        return torch.cat([o.detach().cpu() for o in outputs])
    return outputs


class PredictionWriter(BasePredictionWriter):
    """At the end of ``predict``, save every prediction, in dataset order, to
    ``<run dir>/predictions.pt`` (``torch.load`` it; plain tensors, ``weights_only`` loads it).

    For a classifier it holds ``probs`` (N, classes); with ``mc_samples`` T > 0 a dict of
    ``probs`` (mean of T passes), ``entropy`` (predictive entropy), ``variance`` and
    ``mutual_information`` (BALD: entropy minus expected entropy), each one row per example.
    A language model writes per-token ``targets``, ``nll``, ``top1`` (see
    :class:`regkit.tasks.LanguageModel`); a GAN ``samples``, ``d_real``, ``d_fake`` (see
    :meth:`regkit.tasks.GAN.predict_step`).
    Under DDP each process writes ``predictions-rank<k>.pt`` with ``indices`` into the dataset.

    Args:
        filename: file name inside the run folder.
    """

    def __init__(self, filename: str = "predictions.pt") -> None:
        super().__init__(write_interval="epoch")
        self.filename = filename
        self.path: Optional[Path] = None

    def write_on_epoch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, predictions: Sequence[Any], batch_indices: Sequence[Any]
    ) -> None:
        if predictions and isinstance(predictions[0], list):  # several predict dataloaders: the first
            predictions, batch_indices = predictions[0], batch_indices[0] if batch_indices else batch_indices
        result = concatenate(list(predictions))
        if not isinstance(result, dict):
            result = {"probs": result} if isinstance(result, torch.Tensor) else {"predictions": result}
        name = self.filename
        if trainer.world_size > 1:
            name = name.replace(".pt", f"-rank{trainer.global_rank}.pt")
            result["indices"] = torch.tensor([i for batch in batch_indices for i in batch])
        self.path = Path(trainer.default_root_dir) / name
        self.path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(result, self.path)
        shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in result.items() if isinstance(v, torch.Tensor))
        print(f"predictions: {self.path} ({shapes})")
