"""The ``regkit`` subcommands and how a command line names them: the one place that lists the
subcommands and reads options out of ``argv`` by hand (everything else is parsed by jsonargparse)."""
from __future__ import annotations

from typing import Optional

TRAINER_SUBCOMMANDS = ("fit", "validate", "test", "predict")
"""The subcommands LightningCLI runs (each a ``Trainer`` method)."""
SUBCOMMANDS = (*TRAINER_SUBCOMMANDS, "list", "recipes", "compare")
"""Every subcommand of ``regkit``."""
USAGE = "regkit [-h] [--plugins FILE_OR_MODULE[,...]] {" + ",".join(SUBCOMMANDS) + "} ..."


def subcommand_of(argv: list[str]) -> Optional[str]:
    """The subcommand of a regkit command line (the first word that is one)."""
    return next((a for a in argv if a in SUBCOMMANDS), None)


def option_values(argv: list[str], option: str) -> list[str]:
    """Every value of ``option`` (``--config a.yaml`` or ``--config=a.yaml``), in order."""
    values = []
    for i, arg in enumerate(argv):
        if arg == option and i + 1 < len(argv):
            values.append(argv[i + 1])
        elif arg.startswith(option + "="):
            values.append(arg.split("=", 1)[1])
    return values


def take_option(argv: list[str], option: str) -> tuple[list[str], list[str]]:
    """``argv`` without ``option`` and its values, and the values (comma-separated lists split)."""
    rest: list[str] = []
    values: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == option and i + 1 < len(argv):
            values += [v for v in argv[i + 1].split(",") if v]
            i += 2
            continue
        if arg.startswith(option + "="):
            values += [v for v in arg.split("=", 1)[1].split(",") if v]
        else:
            rest.append(arg)
        i += 1
    return rest, values


def dotted_keys(argv: list[str], prefix: str) -> list[str]:
    """The keys of the options under ``prefix`` (``--model.init_args.mc_samples 20`` ->
    ``init_args.mc_samples`` for prefix ``--model``), and ``""`` for ``prefix`` itself."""
    keys = []
    for arg in argv:
        name = arg.split("=", 1)[0]
        if name == prefix:
            keys.append("")
        elif name.startswith(prefix + "."):
            keys.append(name[len(prefix) + 1:])
    return keys
