"""What every task shares: the optimizer from the recipe, penalties added to the loss and
constraints applied after each optimizer step."""
from __future__ import annotations

from typing import Any, Optional

import lightning as L
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn

from regkit.components.schedules import ScheduledArguments
from regkit.loggers.interval import CountsTrainingBatches
from regkit.registry import ConstraintSpec, PenaltySpec
from regkit.rules import Report, Rule, parse_rules, regularize
from regkit.tasks.data_checks import check_attached_data


def save_recipe(task: L.LightningModule, **values: Any) -> None:
    """Save a task's recipe values (plain, so checkpoints load with ``weights_only``) as its
    hyperparameters, with its class under ``_class_path``, the key LightningCLI reads: so
    ``regkit test --ckpt_path C`` rebuilds the task from the checkpoint alone."""
    class_path = f"{type(task).__module__}.{type(task).__qualname__}"
    task.save_hyperparameters({"_class_path": class_path, **values})


def default_optimizer(params: Any) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=1e-3)


class RegularizedTask(CountsTrainingBatches):
    """Base task: builds penalties and constraints from their specs and applies them uniformly.

    Args:
        optimizer: optimizer class and arguments (``class_path: torch.optim.SGD``), called with the
            task's parameters.
        lr_scheduler: optional scheduler, called with the optimizer.
        penalties: loss terms, each logged as ``train/penalty/<name>`` (at the logging interval).
        constraints: weight projections applied after every optimizer step.
    """

    def __init__(
        self,
        optimizer: OptimizerCallable = default_optimizer,
        lr_scheduler: Optional[LRSchedulerCallable] = None,
        penalties: list[PenaltySpec] = [],
        constraints: list[ConstraintSpec] = [],
    ) -> None:
        super().__init__()
        self.regularization = Report()  # what the recipe's rules changed (apply_rules)
        self.scheduled_arguments = ScheduledArguments()  # components' arguments given as schedules
        self.optimizer_factory = optimizer
        self.scheduler_factory = lr_scheduler
        penalties = [PenaltySpec.parse(p) for p in penalties]
        constraints = [ConstraintSpec.parse(c) for c in constraints]
        self.penalties = nn.ModuleList([spec.build() for spec in penalties])
        self.penalty_names = [spec.name for spec in penalties]
        self.constraints = [spec.build() for spec in constraints]
        # Checkpoints keep plain recipe values (not Spec objects) so they load with weights_only.
        self.spec_config = {
            "penalties": [spec.to_config() for spec in penalties],
            "constraints": [spec.to_config() for spec in constraints],
        }

    def regularized_model(self) -> nn.Module:
        """The module penalties, constraints and rules act on (the whole task unless overridden)."""
        return self

    def apply_rules(self, rules: list[dict[str, Any]]) -> list[Rule]:
        """Apply the recipe's ``regularize`` rules to :meth:`regularized_model` (regkit/rules/): the
        changes are in ``self.regularization`` (a :class:`~regkit.rules.Report`), the penalties and
        constraints they build join the task's own. Returns the parsed rules (for the checkpoint)."""
        parsed = parse_rules(rules)
        self.regularization = regularize(self.regularized_model(), parsed)
        for name, penalty in self.regularization.penalties:
            self.penalties.append(penalty)
            self.penalty_names.append(name)
        self.constraints += [constraint for _, constraint in self.regularization.constraints]
        return parsed

    def penalty_loss(self, **context: Any) -> torch.Tensor:
        """Sum of all penalties on the model, each logged under its registry name."""
        total = torch.zeros((), device=self.device)
        log = self.logging_due()
        for name, penalty in zip(self.penalty_names, self.penalties):
            value = penalty(self.regularized_model(), **context)
            if log:
                self.log(f"train/penalty/{name}", value, on_step=True, on_epoch=False)
            total = total + value
        return total

    def setup_constraints(self) -> None:
        """Run each constraint's one-time ``setup`` on the model (e.g. register a spectral-norm
        parametrization), once. Lightning's ``setup`` hook calls it before optimizers exist; a task
        that builds its model in ``__init__`` calls it there too, so checkpoints load directly."""
        if getattr(self, "_constraints_set_up", False):
            return
        self._constraints_set_up = True
        for constraint in self.constraints:
            constraint.setup(self.regularized_model())

    def setup(self, stage: str) -> None:
        self.setup_constraints()
        if callable(getattr(self, "check_data", None)):
            check_attached_data(self, stage)  # regkit's CLI checked it before the run; a plain Trainer here

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> Optional[int]:
        super().on_train_batch_start(batch, batch_idx)
        constraints = [(f"constraints.{i}", c) for i, c in enumerate(self.constraints)]
        self.scheduled_arguments.update(self, self.trainer.global_step, constraints)
        return None

    def apply_constraints(self) -> None:
        for constraint in self.constraints:
            constraint(self.regularized_model())

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        self.apply_constraints()

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": self.scheduler_factory(optimizer)}
