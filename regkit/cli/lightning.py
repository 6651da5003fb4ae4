"""regkit's LightningCLI: the recipe chooses task and data module by class, W&B and CSV log by
default, every command writes into its own run folder (regkit/cli/run_folder.py), ``--ckpt_path
last|auto`` resumes exactly, and parse errors name the YAML key."""
from __future__ import annotations

import argparse
import inspect
import os
import re
import sys
import warnings
from pathlib import Path
from typing import Any, Optional

import lightning as L
from jsonargparse import DefaultHelpFormatter
from lightning.pytorch.callbacks import ModelCheckpoint, StochasticWeightAveraging
from lightning.pytorch.callbacks import ProgressBar as ProgressBarBase
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities.exceptions import SIGTERMException

from regkit.callbacks.checkpoint_files import with_checkpoint_io
from regkit.callbacks.predictions import PredictionWriter
from regkit.callbacks.preemption import SaveOnSignal, preempted
from regkit.callbacks.progress_bar import ProgressBar
from regkit.callbacks.rank_streams import DistinctRankStreams
from regkit.callbacks.regularize import Regularize
from regkit.callbacks.resume import ExactResume
from regkit.cli import run_folder
from regkit.cli.checkpoints import (
    check_checkpoint,
    checkpoint_hparams,
    explicit_model_keys,
    recipe_class_paths,
    saved_checkpoint_dirs,
)
from regkit.cli.commands import TRAINER_SUBCOMMANDS, USAGE, subcommand_of
from regkit.cli.error_keys import reported_against_keys
from regkit.cli.memory import check_training_memory
from regkit.cli.layered_configs import complete_components
from regkit.cli.overrides import merge_component_overrides
from regkit.cli.parser import ShortErrorParser, report_invalid_components
from regkit.cli.recipe_checks import check_config
from regkit.cli.recipe_files import install_yaml_loader
from regkit.cli.run_lock import RunLock, make_run_folder
from regkit.cli.run_summary import announce_start, final_metrics, summarize_run
from regkit.errors import BadInput, RegkitError
from regkit.rules import Report

DESCRIPTION = """\
regkit: regularizer recipes on Lightning.

  regkit fit --config recipes/mlp_dropout.yaml       train (also: validate, test, predict)
  regkit fit --help                                  every option, regkit's tasks and data modules
  regkit fit --config gan                            a shipped recipe by name, from any directory
  regkit recipes [copy NAME [DEST]]                  the shipped recipes; copy one for editing
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
    """Saves the resolved recipe beside the run and logs it to every logger (W&B run config),
    with the precision that actually ran (``16-mixed`` on CPU runs as ``bf16-mixed``)."""

    def save_config(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        config = self.parser.dump(self.config, skip_none=False, format="yaml")
        import yaml

        resolved = yaml.safe_load(config)
        record: dict[str, Any] = {"recipe": resolved, "precision_used": str(trainer.precision)}
        reports = regularization_reports(trainer, pl_module)
        if reports:  # the plan of the rules is part of the run's record
            record["regularization"] = [row for report in reports for row in report.rows()]
            if trainer.is_global_zero:
                Path(trainer.default_root_dir, "regularization.txt").write_text(
                    "\n\n".join(report.table() for report in reports) + "\n")
        for logger in trainer.loggers:
            if isinstance(logger, Logger):
                logger.log_hyperparams(record)


def regularization_reports(trainer: Optional[L.Trainer], model: Any) -> list[Report]:
    """What the rules changed: the task's ``regularize`` rules, then each Regularize callback's."""
    reports = [model.regularization] if isinstance(getattr(model, "regularization", None), Report) else []
    for callback in getattr(trainer, "callbacks", None) or []:
        if isinstance(callback, Regularize) and callback.report is not None:
            reports.append(callback.report)
    return [report for report in reports if len(report)]


class RegkitCLI(LightningCLI):
    """LightningCLI where the recipe chooses the task (``model``) and data module by class."""

    def __init__(self, args: Optional[list[str]] = None, run: bool = True, **kwargs: Any) -> None:
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})  # only a resumed run rewrites its own
        self.argv = list(sys.argv[1:] if args is None else args) if not isinstance(args, dict) else []
        self.run_info: dict[str, Any] = {}
        self.ckpt_request: Optional[str] = None
        self.lock: Optional[RunLock] = None
        # Recipes load with the duplicate-key check; no abbreviated options (`--trainer.max_epoch 3` is
        # a typo, not max_epochs). Given to each subcommand too: per-subcommand kwargs replace the main ones.
        strict = {"parser_mode": install_yaml_loader(), "allow_abbrev": False}
        kwargs.setdefault("parser_kwargs", {
            "description": DESCRIPTION, "prog": "regkit", "formatter_class": HelpFormatter, **strict,
            **{sub: {"description": subcommand_description(sub, _first_line(getattr(L.Trainer, sub))), **strict}
               for sub in TRAINER_SUBCOMMANDS},
        })
        try:
            super().__init__(
                L.LightningModule,
                L.LightningDataModule,
                subclass_mode_model=True,
                subclass_mode_data=True,
                save_config_callback=LoggerSaveConfigCallback,
                seed_everything_default=0,
                auto_configure_optimizers=False,
                parser_class=ShortErrorParser,
                args=args,
                run=run,
                **kwargs,
            )
        except SIGTERMException:  # stopped by a signal (regkit/callbacks/preemption.py): exit 128 + its number
            raise preempted(getattr(self, "trainer", None)) from None
        finally:
            if self.lock is not None:
                self.lock.release()

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """As LightningCLI's, with overrides inside a component merged (regkit/cli/overrides.py) and a
        component that does not resolve reported with its full key, before anything is built."""
        if isinstance(args, dict) or hasattr(args, "as_dict"):
            self.config = parser.parse_object(args)
            report_invalid_components(parser, self.config)
            check_parsed_recipe(self.config)
            self.take_ckpt_request()
            return
        args = complete_components(list(sys.argv[1:] if args is None else args))  # layered --config files
        args = merge_component_overrides(parser, args)
        # --print_config prints and exits inside this parse (ShortErrorParser.dump checks the components)
        self.config = parser.parse_args(args)
        report_invalid_components(parser, self.config)
        check_parsed_recipe(self.config)
        self.take_ckpt_request()

    def take_ckpt_request(self) -> None:
        """regkit resolves ``--ckpt_path`` itself (``last`` / ``auto``; the checkpoint's
        hyperparameters under the options given next to it) in before_instantiate_classes, so
        LightningCLI's own merge of the checkpoint's hyperparameters is left nothing to do."""
        subcommand = self.config.get("subcommand")
        if subcommand and self.config[subcommand].get("ckpt_path") is not None:
            self.ckpt_request = str(self.config[subcommand]["ckpt_path"])
            self.config[subcommand]["ckpt_path"] = None

    def setup_parser(self, *args: Any, **kwargs: Any) -> None:
        super().setup_parser(*args, **kwargs)
        # After the subcommands exist (their usage lines start with the main parser's prog): the
        # main usage line also names `list` and `--plugins`, which regkit/cli/main.py handles itself.
        self.parser.usage = USAGE
        if isinstance(self.parser, ShortErrorParser):  # a parse error names the subcommand
            self.parser.subcommand = subcommand_of(self.argv)

    def add_arguments_to_parser(self, parser: Any) -> None:
        parser.set_defaults({"trainer.logger": {"class_path": "regkit.loggers.WandbLogger"}})
        # Checkpoints go to a directory named after the run (not the logger's random version), with
        # last.ckpt kept up to date, so `regkit fit --ckpt_path last` finds them after a crash.
        # A plain argument group (not a Lightning callback key): instantiate_trainer decides whether it is used.
        parser.add_class_arguments(ModelCheckpoint, "checkpoint", fail_untyped=False, sub_configs=True)
        parser.set_defaults({"checkpoint.save_last": True})
        parser.add_argument(
            "--run_dir",
            type=Optional[str],
            default=None,
            help="Folder of this run (default: <logger save_dir or runs>/<recipe name>/<run id>/).",
        )
        parser.add_argument(
            "--print_regularization",
            type=bool,
            nargs="?",
            const=True,
            default=False,
            help="Build the model, print what its regularization rules change (module, type, action) and stop.",
        )
        parser.add_argument(
            "--test_after_fit",
            type=bool,
            default=False,
            help="After fit, evaluate the final weights on the test set (used by fit only).",
        )

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        if not self.subcommand:
            return
        info = run_folder.inherited()  # a DDP process started by the launching one: same run
        if info is None:
            info = run_folder.choose_run(config, self.subcommand, self.ckpt_request)
            run_folder.share(info)
        self.run_info = info
        run_dir = info["run_dir"]
        if info["ckpt_path"]:
            hparams = checkpoint_hparams(config, info["ckpt_path"], explicit_model_keys(self.argv))
            if hparams:
                model = {"class_path": config["model"]["class_path"], "init_args": hparams}
                self.config = self.parser.parse_object({self.subcommand: {"model": model}}, self.config)
                config = self.config[self.subcommand]
        config["ckpt_path"] = info["ckpt_path"]
        config["trainer"]["default_root_dir"] = run_dir
        if config.get("checkpoint") is not None and not config["checkpoint"].get("dirpath"):
            config["checkpoint"]["dirpath"] = os.path.join(run_dir, "checkpoints")
        run_folder.place_loggers(config["trainer"], run_dir, info["wandb_id"], info["resume"])

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
        exact_resume = ExactResume()
        callbacks += [exact_resume, DistinctRankStreams()]
        if self.subcommand == "fit":
            callbacks.append(SaveOnSignal(exact_resume))
        if self.subcommand == "predict":
            callbacks.append(PredictionWriter())
        logger = run_folder.with_csv_logger(trainer_config.get("logger"), self.run_info.get("run_dir"))
        plugins = with_checkpoint_io(trainer_config.get("plugins"), trainer_config.get("strategy"))  # atomic saves in the checkpoint's folder
        trainer = super().instantiate_trainer(**{**kwargs, "callbacks": callbacks, "logger": logger, "plugins": plugins})
        run_dir = self.run_info.get("run_dir")
        # validate/test/predict write no checkpoint: there each ModelCheckpoint keeps the dirpath it
        # had when it saved the checkpoint evaluated, so Lightning restores its state as saved (and
        # does not warn that the dirpath changed to the evaluation's folder).
        ckpt = self.run_info.get("ckpt_path")
        named = recipe_class_paths(self.config[self.subcommand]) if self.subcommand else frozenset()
        saved = saved_checkpoint_dirs(ckpt, named) if ckpt and self.subcommand != "fit" and Path(ckpt).is_file() else {}
        for callback in trainer.checkpoint_callbacks:  # the recipe's own ModelCheckpoint too
            if not isinstance(callback, ModelCheckpoint):
                continue
            if callback.state_key in saved:
                callback.dirpath = saved[callback.state_key]
            elif run_dir and callback.dirpath is None:
                callback.dirpath = os.path.join(run_dir, "checkpoints")
        return trainer

    def instantiate_classes(self) -> None:
        # Any constructor error is bad input reported against the key of the failing class.
        config = self.config[self.subcommand] if self.subcommand else self.config
        with reported_against_keys(config):
            super().instantiate_classes()
        check_manual_optimization(self.trainer, self.model)
        self.attach_rules(config)
        if config.get("print_regularization"):
            reports = regularization_reports(self.trainer, self.model)
            print("\n\n".join(report.table() for report in reports) if reports else "no regularization rules")
            raise SystemExit(0)
        check_parts_agree(self.model, self.datamodule, self.trainer, self.subcommand)
        # Only now, with every class built and checked against each other, does the run folder appear;
        # a fit locks it before anything is written (regkit/cli/run_lock.py; under DDP the launching process).
        if self.run_info and not getattr(self.trainer, "fast_dev_run", False):
            make_run_folder(self.run_info["run_dir"])
            if self.subcommand == "fit" and run_folder.inherited() is None and self.trainer.global_rank == 0:
                self.lock = RunLock(self.run_info["run_dir"]).acquire()
        if self.run_info.get("resume"):  # a resumed run continues beside its own checkpoints, as intended
            checkpoints = re.escape(os.path.join(self.run_info["run_dir"], "checkpoints"))
            warnings.filterwarnings("ignore", message=f"Checkpoint directory .*{checkpoints} exists and is not empty")

    def attach_rules(self, config: Any) -> None:
        """Apply each Regularize callback's rules now, before the run folder exists, so a rule that
        matches nothing is bad input of that callback's key (its setup would only find it later)."""
        given = config["trainer"].get("callbacks") or []
        given = given if isinstance(given, list) else [given]
        keys = [f"trainer.callbacks.{i}.init_args" for i, c in enumerate(given)
                if str(getattr(c, "get", lambda _: "")("class_path")).endswith("Regularize")]
        callbacks = [c for c in getattr(self.trainer, "callbacks", []) if isinstance(c, Regularize)]
        for key, callback in zip(keys, callbacks):
            try:
                callback.attach(self.model)
            except RegkitError as err:
                raise err.under(key) from err

    def before_fit(self) -> None:
        announce_start(self.trainer, self.model)

    def after_fit(self) -> None:
        metrics = final_metrics(self.trainer)  # validation's, before test replaces them
        if self.config["fit"].get("test_after_fit"):
            self.trainer.test(self.model, datamodule=self.datamodule)
            metrics.update(final_metrics(self.trainer))
        summarize_run(self.trainer, self.run_info, metrics)

    def after_validate(self) -> None:
        summarize_run(self.trainer, self.run_info, evaluated=self.run_info.get("ckpt_path") or "")

    def after_test(self) -> None:
        summarize_run(self.trainer, self.run_info, evaluated=self.run_info.get("ckpt_path") or "")


def check_parts_agree(model: Any, datamodule: Any, trainer: Optional[L.Trainer], subcommand: Optional[str]) -> None:
    """Parts that are each valid but disagree stop before the run (docs/cli.md, "Checked before a
    run"): the data module against the processes and batch size (its ``check_sizes``), the task
    against the data module (its ``check_data``: shapes, classes, vocabulary, a dry forward), and
    the memory training needs at least against the memory free (regkit/cli/memory.py)."""
    world_size = trainer.num_devices * trainer.num_nodes if trainer is not None else 1
    training = subcommand in (None, "fit")
    if training and callable(getattr(datamodule, "check_sizes", None)):
        try:
            datamodule.check_sizes(world_size)
        except RegkitError as err:
            raise err.under("data.init_args") from err
    if datamodule is not None and callable(getattr(model, "check_data", None)):
        model.check_data(datamodule, world_size=world_size, training=training)
    if training and trainer is not None and isinstance(model, L.LightningModule):
        check_training_memory(model, trainer.strategy.root_device, processes=trainer.num_devices)
def check_manual_optimization(trainer: L.Trainer, model: L.LightningModule) -> None:
    """A task that steps its optimizers itself (the GAN: G and D in turn) cannot take the Trainer
    flags and callbacks that step them for it; say so before the run folder exists, not after the
    first batch in a traceback."""
    if model.automatic_optimization:
        return
    why = (f"{type(model).__name__} optimizes by hand (manual optimization: its own steps for each "
           "optimizer), which Lightning's {what} cannot apply; remove it")
    if trainer.gradient_clip_val:
        raise BadInput(why.format(what="gradient clipping"), "trainer.gradient_clip_val")
    if trainer.accumulate_grad_batches != 1:
        raise BadInput(why.format(what="gradient accumulation") + " (or use a larger batch_size)",
                       "trainer.accumulate_grad_batches")
    if any(isinstance(c, StochasticWeightAveraging) for c in getattr(trainer, "callbacks", [])):
        raise BadInput(why.format(what="StochasticWeightAveraging") + " (the GAN averages G itself: ema_decay)"
                       if hasattr(model, "ema") else why.format(what="StochasticWeightAveraging"), "trainer.callbacks")


def check_parsed_recipe(config: Any) -> None:
    """Checks before anything from the recipe or checkpoint is built or imported (issue #12)."""
    subcommand = config.get("subcommand")
    config = config[subcommand] if subcommand else config
    check_checkpoint(config.get("ckpt_path"), recipe_class_paths(config))
    check_config(config)
