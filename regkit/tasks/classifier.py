"""Image / sequence classification task."""
from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F
import torchmetrics
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable

from regkit.components.mc_dropout import logits_of, mc_predict
from regkit.registry import ConstraintSpec, NetworkSpec, PenaltySpec
from regkit.tasks.base import RegularizedTask, default_optimizer, save_recipe
from regkit.tasks.data_checks import check_classifier_data
from regkit.tasks.speed import CompileSwitch, apply_switches, channels_last_input
from regkit.errors import check


class Classifier(RegularizedTask):
    """Cross-entropy classifier around a registry network, with torchmetrics accuracy.

    Args:
        network: the network: a registry name and arguments, e.g. ``{name: mlp, hidden: [1024, 1024]}``,
            or any importable class or factory, e.g. ``{class_path: timm.create_model, init_args:
            {model_name: resnet18, num_classes: 10, in_chans: 1}}`` (its output: logits, or an output
            with ``.logits`` such as a Hugging Face model's).
        num_classes: number of classes for the metrics.
        optimizer, lr_scheduler, penalties, constraints: see :class:`RegularizedTask`.
        mc_samples: T > 0 turns on MC dropout at test and predict time: test also logs
            ``test/mc_acc``, ``test/mc_nll`` and ``test/mc_ece`` of the mean of T stochastic passes
            (next to the single deterministic pass's ``test/acc``, ``test/nll``, ``test/ece``), and
            predict returns ``{"probs", "entropy", "variance", "mutual_information"}`` instead of
            the deterministic probabilities.
        regularize: rules that place components inside the network (regkit/rules/, docs/surgery.md),
            e.g. ``[{type: torch.nn.Dropout, replace: {name: variational_dropout}}]``.
        compile: ``torch.compile`` the network: ``true``, or ``{mode, fullgraph, dynamic, backend}``
            (docs/speed.md). Off by default.
        channels_last: the network's convolutions and the image batches in channels-last memory
            format (convolutional networks only). Off by default.
    """

    def __init__(
        self,
        network: NetworkSpec,
        num_classes: int = 10,
        optimizer: OptimizerCallable = default_optimizer,
        lr_scheduler: Optional[LRSchedulerCallable] = None,
        penalties: list[PenaltySpec] = [],
        constraints: list[ConstraintSpec] = [],
        mc_samples: int = 0,
        regularize: list[dict[str, Any]] = [],
        compile: CompileSwitch = False,
        channels_last: bool = False,
    ) -> None:
        super().__init__(optimizer, lr_scheduler, penalties, constraints)
        check(locals(), positive="num_classes", non_negative="mc_samples")
        if mc_samples < 0:
            raise ValueError(f"mc_samples must be >= 0, got {mc_samples}")
        network = NetworkSpec.parse(network)
        self.network = network.build()
        rules = self.apply_rules(regularize)
        save_recipe(self, network=network.to_config(), num_classes=num_classes, mc_samples=mc_samples, **self.spec_config,
                    regularize=[rule.to_config() for rule in rules], compile=compile, channels_last=channels_last)
        self.num_classes = num_classes
        self.mc_samples = mc_samples
        metric = lambda: torchmetrics.Accuracy(task="multiclass", num_classes=num_classes)  # noqa: E731
        self.val_acc, self.test_acc = metric(), metric()
        # Training accuracy: a plain running count (a torchmetrics update costs ~10x more per step);
        # not a buffer, which DDP would overwrite with rank 0's count at every forward.
        self.train_correct: Optional[torch.Tensor] = None
        self.train_seen = 0
        ece = lambda: torchmetrics.CalibrationError(task="multiclass", num_classes=num_classes)  # noqa: E731
        self.test_nll, self.test_ece = torchmetrics.MeanMetric(), ece()
        if mc_samples:
            self.mc_acc, self.mc_nll, self.mc_ece = metric(), torchmetrics.MeanMetric(), ece()
        # Parametrizations (spectral norm) now, so checkpoints load with Classifier.load_from_checkpoint.
        self.setup_constraints()
        self.compile_options, self.channels_last = apply_switches({"network": self.network}, compile, channels_last)

    def regularized_model(self) -> torch.nn.Module:
        return self.network

    def check_data(self, datamodule: Any, world_size: int = 1, training: bool = True) -> None:
        """Refuse a data module this classifier cannot train on (regkit/tasks/data_checks.py):
        ``num_classes`` and the network's outputs below the data's classes, a network whose
        arguments or dry forward do not take the data's ``example_shape``.

        Raises:
            BadInput: keyed by the model's argument, naming the data's value.
        """
        check_classifier_data(self, datamodule, world_size, training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return logits_of(self.network(channels_last_input(x, self.channels_last)))

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        correct = (logits.detach().argmax(1) == y).sum()  # logged once per epoch
        self.train_correct = correct if self.train_correct is None else self.train_correct + correct
        self.train_seen += y.numel()
        if self.logging_due():
            # No prog_bar: Lightning would read it as a float every step (a GPU sync);
            # regkit's ProgressBar shows it at the logging interval.
            self.log("train/loss", loss)
        if len(self.penalties):
            loss = loss + self.penalty_loss()
        return loss

    def on_train_epoch_end(self) -> None:
        if self.train_correct is not None:
            self.log("train/acc", self.train_correct / self.train_seen, sync_dist=True)
        self.train_correct, self.train_seen = None, 0

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
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        self.test_acc(logits, y)
        self.test_nll(F.cross_entropy(logits.float(), y, reduction="none"))
        self.test_ece(logits.float().softmax(-1), y)
        self.log("test/loss", loss, sync_dist=True)
        self.log("test/acc", self.test_acc, prog_bar=True)
        self.log("test/nll", self.test_nll)
        self.log("test/ece", self.test_ece)
        if self.mc_samples:
            probs = mc_predict(self, x, samples=self.mc_samples).mean
            self.mc_acc(probs, y)
            self.mc_nll(F.nll_loss(probs.clamp_min(1e-12).log(), y, reduction="none"))
            self.mc_ece(probs, y)
            self.log("test/mc_acc", self.mc_acc, prog_bar=True)
            self.log("test/mc_nll", self.mc_nll)
            self.log("test/mc_ece", self.mc_ece)
        return loss

    def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor | dict[str, torch.Tensor]:
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        if not self.mc_samples:
            return self(x).softmax(-1)
        pred = mc_predict(self, x, samples=self.mc_samples)
        return {
            "probs": pred.mean,
            "entropy": pred.entropy,
            "variance": pred.variance,
            "mutual_information": pred.mutual_information,
        }
