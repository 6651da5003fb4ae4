"""regkit's LightningCLI: the recipe chooses task and data module by class, W&B logs by default,
checkpoints go where ``--ckpt_path last`` finds them, and parse errors name the YAML key."""
from __future__ import annotations

import argparse
import inspect
import os
import sys
from typing import Any, Optional

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.callbacks import ProgressBar as ProgressBarBase
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import Logger
from jsonargparse import DefaultHelpFormatter

from regkit import registry
from regkit.callbacks.progress_bar import ProgressBar
from regkit.errors import in_short
from regkit.overrides import merge_component_overrides
from regkit.spec import invalid_specs

USAGE = "regkit [-h] [--plugins FILE_OR_MODULE[,...]] {fit,validate,test,predict,list,compare} ..."
DESCRIPTION = """\
regkit: regularizer recipes on Lightning.

  regkit fit --config recipes/mlp_dropout.yaml       train (also: validate, test, predict)
  regkit fit --help                                  every option, regkit's tasks and data modules
  regkit list [KIND] [PATTERN] [--json]              registered components and their arguments
  regkit compare --config R --vary KEY=A,B --seeds 3 one recipe over a grid of settings x seeds
  regkit --plugins my_components.py fit ...          register a local file's / module's components
                                                     (repeatable or comma-separated; before the subcommand)
"""


class HelpFormatter(argparse.RawDescriptionHelpFormatter, DefaultHelpFormatter):
    """jsonargparse's help formatter, keeping the line breaks of descriptions."""


def _first_line(obj: Any) -> str:
    return " ".join((inspect.getdoc(obj) or "").split("\n\n", 1)[0].split())


def subcommand_description(subcommand: str, summary: str) -> str:
    """Lightning's summary of ``subcommand`` and the classes a recipe can name for ``model`` and
    ``data`` (any LightningModule / LightningDataModule works too, e.g. from ``--plugins``)."""
    import regkit.data
    import regkit.tasks

    lines = [summary, "", "regkit's tasks (model: {class_path: ..., init_args: ...}):"]
    for name in regkit.tasks.__all__:
        cls = getattr(regkit.tasks, name)
        lines.append(f"  regkit.tasks.{name:<22} {_first_line(cls)}")
    lines += ["", "regkit's data modules (data: {class_path: ..., init_args: ...}):"]
    for name in regkit.data.__all__:
        cls = getattr(regkit.data, name)
        lines.append(f"  regkit.data.{name:<23} {_first_line(cls)}")
    lines += ["", f"Arguments of one class: regkit {subcommand} --model.help regkit.tasks.Classifier",
              "(or --data.help CLASS). Components inside them: regkit list."]
    return "\n".join(lines)


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
        kwargs.setdefault("parser_kwargs", {
            "description": DESCRIPTION, "prog": "regkit", "formatter_class": HelpFormatter,
            **{sub: {"description": subcommand_description(sub, _first_line(getattr(L.Trainer, sub)))}
               for sub in ("fit", "validate", "test", "predict")},
        })
        super().__init__(
            L.LightningModule,
            L.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_callback=LoggerSaveConfigCallback,
            seed_everything_default=0,
            auto_configure_optimizers=False,
            args=args,
            run=run,
            **kwargs,
        )

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """As LightningCLI's, with overrides inside a component merged (regkit/overrides.py) and a
        component that does not resolve reported with its full key, before anything is built."""
        if isinstance(args, dict) or hasattr(args, "as_dict"):
            self.config = parser.parse_object(args)
            report_invalid_components(parser, self.config)
            return
        args = merge_component_overrides(parser, list(sys.argv[1:] if args is None else args))
        printing = [a for a in args if a.split("=")[0] == "--print_config"]
        if printing:  # --print_config prints and exits inside the parse: check the components first
            report_invalid_components(parser, parser.parse_args([a for a in args if a not in printing]))
        self.config = parser.parse_args(args)
        report_invalid_components(parser, self.config)

    def setup_parser(self, *args: Any, **kwargs: Any) -> None:
        super().setup_parser(*args, **kwargs)
        # After the subcommands exist (their usage lines start with the main parser's prog): the
        # main usage line also names `list` and `--plugins`, which regkit/cli.py handles itself.
        self.parser.usage = USAGE

    def add_arguments_to_parser(self, parser: Any) -> None:
        parser.set_defaults({"trainer.logger": {"class_path": "regkit.loggers.WandbLogger"}})
        # Checkpoints go to a directory named after the run (not the logger's random version), with
        # last.ckpt kept up to date, so `regkit fit --ckpt_path last` finds them after a crash.
        # A plain argument group (not a Lightning callback key): instantiate_trainer decides whether it is used.
        parser.add_class_arguments(ModelCheckpoint, "checkpoint", fail_untyped=False, sub_configs=True)
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
        # Add regkit's ModelCheckpoint to the recipe's callbacks, unless the recipe turns
        # checkpointing off or brings its own ModelCheckpoint.
        config = self.config_init[self.subcommand] if self.subcommand else self.config_init
        trainer_config = {**(config.get("trainer") or {}), **kwargs}
        callbacks = trainer_config.get("callbacks") or []
        callbacks = list(callbacks) if isinstance(callbacks, list) else [callbacks]
        own = any(isinstance(c, ModelCheckpoint) for c in callbacks)
        skip = trainer_config.get("enable_checkpointing") is False or own or trainer_config.get("fast_dev_run")
        if not skip and config.get("checkpoint") is not None:
            callbacks.append(config["checkpoint"])
        if trainer_config.get("enable_progress_bar") is not False and not any(
            isinstance(c, ProgressBarBase) for c in callbacks
        ):
            callbacks.append(ProgressBar())  # metrics read at the logging interval, not every step
        return super().instantiate_trainer(**{**kwargs, "callbacks": callbacks})

    def after_fit(self) -> None:
        if self.config["fit"].get("test_after_fit"):
            self.trainer.test(self.model, datamodule=self.datamodule)


def report_invalid_components(parser: LightningArgumentParser, config: Any) -> None:
    """Stop with the first recipe component that did not resolve, named by its full key."""
    root = config[config["subcommand"]] if config.get("subcommand") else config
    for key, invalid in invalid_specs(root):
        error = invalid.error.under(key)
        parser.error(f'Parser key "{error.key}":\n  {error.message}\n\n{in_short(error)}')


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
