"""Image / sequence classification task."""
from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F
import torchmetrics
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable

from regkit.spec import ConstraintSpec, NetworkSpec, PenaltySpec
from regkit.tasks.base import RegularizedTask, default_optimizer


class Classifier(RegularizedTask):
    """Cross-entropy classifier around a registry network, with torchmetrics accuracy.

    Args:
        network: the network (registry name and arguments), e.g. ``{name: mlp, hidden: [1024, 1024]}``.
        num_classes: number of classes for the metrics.
        optimizer, lr_scheduler, penalties, constraints: see :class:`RegularizedTask`.
    """

    def __init__(
        self,
        network: NetworkSpec,
        num_classes: int = 10,
        optimizer: OptimizerCallable = default_optimizer,
        lr_scheduler: Optional[LRSchedulerCallable] = None,
        penalties: list[PenaltySpec] = [],
        constraints: list[ConstraintSpec] = [],
    ) -> None:
        super().__init__(optimizer, lr_scheduler, penalties, constraints)
        network = NetworkSpec.parse(network)
        self.save_hyperparameters({"network": network.to_config(), "num_classes": num_classes, **self.spec_config})
        self.network = network.build()
        self.num_classes = num_classes
        metric = lambda: torchmetrics.Accuracy(task="multiclass", num_classes=num_classes)  # noqa: E731
        self.train_acc, self.val_acc, self.test_acc = metric(), metric(), metric()

    def regularized_model(self) -> torch.nn.Module:
        return self.network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        self.train_acc(logits, y)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True)
        if len(self.penalties):
            loss = loss + self.penalty_loss()
        return loss

    def _evaluate(self, batch: Any, stage: str, metric: torchmetrics.Metric) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        metric(logits, y)
        self.log(f"{stage}/loss", loss, sync_dist=True)
        self.log(f"{stage}/acc", metric, prog_bar=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._evaluate(batch, "val", self.val_acc)

    def test_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._evaluate(batch, "test", self.test_acc)

    def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        return self(x).softmax(-1)
