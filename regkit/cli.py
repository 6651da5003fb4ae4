"""The ``regkit`` command: LightningCLI for ``fit|validate|test|predict`` plus ``regkit list``."""
from __future__ import annotations

import json
import os
import sys
from typing import Any, Optional

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import Logger

from regkit import registry
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
        return self._instantiate_trainer(trainer_config, [self._get(self.config_init, k) for k in keys])

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


def _pop_plugins(argv: list[str]) -> tuple[list[str], list[str]]:
    """Take ``--plugins A[,B]`` (repeatable) out of argv; ``REGKIT_PLUGINS`` adds more."""
    plugins = [p for p in os.environ.get("REGKIT_PLUGINS", "").split(",") if p]
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--plugins" and i + 1 < len(argv):
            plugins += [p for p in argv[i + 1].split(",") if p]
            i += 2
            continue
        if arg.startswith("--plugins="):
            plugins += [p for p in arg.split("=", 1)[1].split(",") if p]
        else:
            rest.append(arg)
        i += 1
    return rest, plugins


def format_arguments(entry: registry.Entry) -> str:
    parts = []
    for arg in entry.describe_arguments():
        text = arg["name"] + (f": {arg['type']}" if arg["type"] else "")
        text += f" = {arg['default']}" if arg["default"] else ""
        parts.append(text)
    return ", ".join(parts) or "(no arguments)"


def list_command(argv: list[str]) -> int:
    """``regkit list [KIND] [PATTERN] [--json]``."""
    as_json = "--json" in argv
    words = [a for a in argv if a != "--json"]
    if any(w in ("-h", "--help") for w in words):
        print("usage: regkit list [KIND] [PATTERN] [--json]\n\nkinds: " + ", ".join(registry.KINDS))
        return 0
    kind = words[0] if words else None
    pattern = words[1] if len(words) > 1 else "*"
    if kind is not None and kind not in registry.KINDS:
        # `regkit list '*drop*'` is a pattern over every kind
        if any(c in kind for c in "*?["):
            kind, pattern = None, kind
        else:
            try:
                registry.entries(kind)
            except registry.RegistryError as err:
                print(f"regkit list: {err}", file=sys.stderr)
                return 2
    found = registry.entries(kind, pattern)
    if as_json:
        rows = [
            {
                "kind": e.kind,
                "name": e.name,
                "origin": e.origin,
                "version": e.version,
                "doc": e.doc,
                "arguments": e.describe_arguments(),
            }
            for e in found
        ]
        print(json.dumps({"components": rows, "plugin_errors": registry.plugin_errors}, indent=2))
        return 0
    current = None
    for e in found:
        if e.kind != current:
            current = e.kind
            print(f"\n{current}")
        print(f"  {e.name:<24} {e.doc}")
        print(f"  {'':<24} args: {format_arguments(e)}")
        print(f"  {'':<24} from: {e.origin}{' ' + e.version if e.version else ''}")
    if not found:
        print(f"no component matches kind={kind or '*'} pattern={pattern!r}")
    for name, error in registry.plugin_errors.items():
        print(f"\nplugin {name!r} failed to load: {error}", file=sys.stderr)
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    from_command_line = argv is None
    argv, plugins = _pop_plugins(list(sys.argv[1:] if argv is None else argv))
    plugins = [os.path.abspath(p) if os.path.exists(p) else p for p in plugins]
    if plugins:
        # DDP launches the other processes with sys.argv (where --plugins is gone): pass it on.
        os.environ["REGKIT_PLUGINS"] = ",".join(dict.fromkeys(plugins))
    for plugin in dict.fromkeys(plugins):
        registry.load_module(plugin)
    if argv and argv[0] == "list":
        return list_command(argv[1:])
    if from_command_line:
        sys.argv[1:] = argv  # LightningCLI reads sys.argv itself; --plugins is already handled
    RegkitCLI(args=None if from_command_line else argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
