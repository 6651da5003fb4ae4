"""Regularize any LightningModule: the rules of regkit/rules/ applied by a Lightning callback, for a
model regkit's tasks did not build, trained by a plain ``lightning.Trainer`` or any LightningCLI."""
from __future__ import annotations

from typing import Any, Optional

import lightning as L
import torch
from torch import nn

from regkit.components.schedules import ScheduledArguments
from regkit.errors import RegkitError
from regkit.rules import Report, parse_rules, regularize


class Regularize(L.Callback):
    """Apply regularization rules to a LightningModule (or one of its submodules) in ``setup``,
    before the optimizers exist and before a checkpoint is restored, so a resumed run loads into the
    same modules. Arguments given as schedules follow training (regkit/components/schedules.py).
    Penalties the rules attach add their gradient after each backward (the same as
    adding them to the loss, scaled by ``1 / accumulate_grad_batches`` like Lightning scales the
    loss); constraints are applied after each training batch, once the optimizer has stepped.

    Args:
        rules: the rules (docs/surgery.md), e.g. ``[{type: torch.nn.Dropout, replace: {name:
            variational_dropout}, layout: sequence}]``.
        module: attribute path of the submodule the rules act on (``"model"`` for a module that
            keeps its network in ``self.model``); empty for the LightningModule itself.

    Example::

        trainer = L.Trainer(callbacks=[Regularize([{"type": "torch.nn.Linear", "insert": "dropout"}])])
        trainer.fit(MyModule(), datamodule)

    To load a checkpoint of such a run outside a Trainer, apply the same rules first:
    ``regkit.regularize(model, rules)`` then ``model.load_state_dict(...)``.
    """

    def __init__(self, rules: list[dict[str, Any]], module: str = "") -> None:
        self.rules = parse_rules(rules, "rules")
        self.module = module
        self.report: Optional[Report] = None
        self._target: Optional[nn.Module] = None
        self.scheduled_arguments = ScheduledArguments()

    @property
    def state_key(self) -> str:
        return f"Regularize[{self.module}]"

    def target(self, pl_module: L.LightningModule) -> nn.Module:
        if not self.module:
            return pl_module
        try:
            return pl_module.get_submodule(self.module)
        except AttributeError as err:
            raise RegkitError(f"{type(pl_module).__name__} has no submodule {self.module!r}: {err}", "module") from None

    def attach(self, pl_module: L.LightningModule) -> Report:
        """Apply the rules to ``pl_module`` (once; later calls return the same report)."""
        if self.report is not None:
            return self.report
        target = self.target(pl_module)
        report = regularize(target, self.rules, key="rules")
        if report.penalties and not pl_module.automatic_optimization:
            raise RegkitError("penalty rules need automatic optimization; with manual optimization add "
                              "regkit's penalty to your own loss", self.rules[0].key)
        for _, constraint in report.constraints:
            constraint.setup(target)
        self.report, self._target = report, target
        return report

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.attach(pl_module)
        if self.report is not None and self.report.penalties and "16" in str(trainer.precision) \
                and "bf16" not in str(trainer.precision):
            raise RegkitError("penalty rules add their gradient after the backward, which 16-bit mixed precision has "
                              "scaled; use bf16-mixed or 32-true, or add the penalty to your loss", self.rules[0].key)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if self._target is not None:
            self.scheduled_arguments.update(pl_module, trainer.global_step,
                                            [(f"constraints.{i}", c) for i, (_, c) in enumerate(self.report.constraints)]
                                            if self.report else [])

    def on_after_backward(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.report is None or not self.report.penalties or self._target is None:
            return
        total: Optional[torch.Tensor] = None
        for name, penalty in self.report.penalties:
            value = penalty(self._target)
            pl_module.log(f"train/penalty/{name}", value.detach(), on_step=True, on_epoch=False)
            total = value if total is None else total + value
        if total is not None:
            (total / trainer.accumulate_grad_batches).backward()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if self.report is None or self._target is None:
            return
        for _, constraint in self.report.constraints:
            constraint(self._target)
