"""regkit's LightningCLI: the recipe chooses task and data module by class, W&B logs by default,
checkpoints go where ``--ckpt_path last`` finds them, and parse errors name the YAML key."""
from __future__ import annotations

import os
from typing import Any, Optional

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.callbacks import ProgressBar as ProgressBarBase
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import Logger

from regkit import registry
from regkit.callbacks.progress_bar import ProgressBar
from regkit.errors import RegkitArgumentParser

DESCRIPTION = """\
regkit: regularizer recipes on Lightning.

  regkit fit --config recipes/mlp_dropout.yaml       train (also: validate, test, predict)
  regkit list [KIND] [PATTERN] [--json]              registered components and their arguments
  regkit --plugins my_components.py fit ...          register a local file's / module's components
"""


class LoggerSaveConfigCallback(SaveConfigCallback):
    """Saves the resolved recipe beside the run and logs it to every logger (W&B run config)."""

    def save_config(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        config = self.parser.dump(self.config, skip_none=False, format="yaml")
        import yaml

        resolved = yaml.safe_load(config)
        for logger in trainer.loggers:
            if isinstance(logger, Logger):
                logger.log_hyperparams({"recipe": resolved})


class RegkitCLI(LightningCLI):
    """LightningCLI where the recipe chooses the task (``model``) and data module by class."""

    def __init__(self, args: Optional[list[str]] = None, run: bool = True, **kwargs: Any) -> None:
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("parser_kwargs", {"description": DESCRIPTION, "prog": "regkit"})
        super().__init__(
            L.LightningModule,
            L.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_callback=LoggerSaveConfigCallback,
            seed_everything_default=0,
            auto_configure_optimizers=False,
            parser_class=RegkitArgumentParser,
            args=args,
            run=run,
            **kwargs,
        )

    def add_arguments_to_parser(self, parser: Any) -> None:
        parser.set_defaults({"trainer.logger": {"class_path": "regkit.loggers.WandbLogger"}})
        # Checkpoints go to a directory named after the run (not the logger's random version), with
        # last.ckpt kept up to date, so `regkit fit --ckpt_path last` finds them after a crash.
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({"checkpoint.save_last": True})
        parser.add_argument(
            "--test_after_fit",
            type=bool,
            default=False,
            help="After fit, evaluate the final weights on the test set (used by fit only).",
        )

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        if config.get("checkpoint") is not None and not config["checkpoint"].get("dirpath"):
            config["checkpoint"]["dirpath"] = default_checkpoint_dir(config)

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        # As LightningCLI's, but leave out regkit's ModelCheckpoint when the recipe turns
        # checkpointing off or brings its own ModelCheckpoint.
        trainer_config = {**self._get(self.config_init, "trainer", default={}), **kwargs}
        own = [c for c in trainer_config.get("callbacks") or [] if isinstance(c, ModelCheckpoint)]
        skip = trainer_config.get("enable_checkpointing") is False or bool(own) or trainer_config.get("fast_dev_run")
        keys = [k for k in self._parser(self.subcommand).callback_keys if not (skip and k == "checkpoint")]
        extra = [self._get(self.config_init, k) for k in keys]
        if trainer_config.get("enable_progress_bar") is not False and not any(
            isinstance(c, ProgressBarBase) for c in trainer_config.get("callbacks") or []
        ):
            extra.append(ProgressBar())  # metrics read at the logging interval, not every step
        return self._instantiate_trainer(trainer_config, extra)

    def after_fit(self) -> None:
        if self.config["fit"].get("test_after_fit"):
            self.trainer.test(self.model, datamodule=self.datamodule)


def default_checkpoint_dir(config: Any) -> str:
    """``<logger save_dir or runs>/checkpoints/<run name>``: the same for every rerun of a recipe
    (so ``--ckpt_path last`` finds the previous run's last.ckpt) and for every DDP process."""
    logger = config.get("trainer", {}).get("logger")
    if isinstance(logger, list):
        logger = logger[0] if logger else None
    init = {}
    if logger is not None and not isinstance(logger, bool):
        init = dict(logger.get("init_args") or {}) if hasattr(logger, "get") else {}
    save_dir = init.get("save_dir") or "runs"
    name = init.get("name") or init.get("project")
    if not name:
        model = config.get("model")
        class_path = model.get("class_path", "") if hasattr(model, "get") else ""
        name = registry.snake_case(class_path.rsplit(".", 1)[-1]) if class_path else "regkit"
    return os.path.join(str(save_dir), "checkpoints", str(name))
