"""The logging clock (regkit/loggers/interval.py): a task logs its training values exactly at the
batches whose values Lightning writes to the loggers, counting batches itself, also across a resume."""
from __future__ import annotations

import csv
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, TensorDataset

from regkit.loggers.interval import TRAINED_BATCHES
from regkit.tasks import Classifier

BATCHES = 6  # per epoch


def _task() -> Classifier:
    return Classifier({"name": "mlp", "in_features": 5, "hidden": [8], "out_features": 3}, num_classes=3)


def _data() -> DataLoader:
    g = torch.Generator().manual_seed(0)
    return DataLoader(TensorDataset(torch.randn(4 * BATCHES, 5, generator=g), torch.randint(0, 3, (4 * BATCHES,), generator=g)),
                      batch_size=4)


def _trainer(tmp_path: Path, **kwargs: object) -> L.Trainer:
    return L.Trainer(logger=CSVLogger(tmp_path, name="", version=""), log_every_n_steps=4, enable_progress_bar=False,
                     enable_model_summary=False, limit_val_batches=0, **kwargs)


def _loss_steps(tmp_path: Path) -> list[int]:
    with open(tmp_path / "metrics.csv", newline="") as file:
        return [int(row["step"]) for row in csv.DictReader(file) if row.get("train/loss")]


def test_training_values_are_logged_exactly_when_lightning_writes_them(tmp_path: Path) -> None:
    task = _task()
    assert task.logging_due()  # no trainer: a step called by hand logs
    _trainer(tmp_path, max_epochs=3).fit(task, _data())
    assert task.trained_batches == 3 * BATCHES
    # Batches 4, 8, 12, 16 (Lightning numbers rows from step 0): none missing, none extra.
    assert _loss_steps(tmp_path) == [3, 7, 11, 15]


def test_the_count_is_in_the_checkpoint_and_a_resumed_run_continues_it(tmp_path: Path) -> None:
    save = ModelCheckpoint(tmp_path, "mid", every_n_train_steps=BATCHES + 2, save_top_k=-1)  # mid-epoch
    _trainer(tmp_path / "a", max_steps=BATCHES + 3, callbacks=[save]).fit(_task(), _data())
    checkpoint = torch.load(tmp_path / "mid.ckpt", weights_only=True)
    assert checkpoint[TRAINED_BATCHES] == BATCHES + 2

    resumed = _task()
    _trainer(tmp_path / "b", max_epochs=3).fit(resumed, _data(), ckpt_path=tmp_path / "mid.ckpt")
    assert resumed.trained_batches == 3 * BATCHES
    assert _loss_steps(tmp_path / "b") == [11, 15]  # the interval goes on where it was, not from 0

    del checkpoint[TRAINED_BATCHES]  # a checkpoint from before the count: one optimizer step per batch
    older = _task()
    older.on_load_checkpoint(checkpoint)
    assert older.trained_batches == checkpoint["global_step"] == BATCHES + 2
