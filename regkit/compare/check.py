"""Every setting of a comparison's grid parsed as its ``regkit fit`` will parse it, before any run
starts: a misspelt ``--vary`` key or a value a component refuses (``p=1.5``) stops the comparison
with every bad setting listed (exit 2), instead of failing after the valid settings have trained."""
from __future__ import annotations

import contextlib
import io
import logging
from typing import Any, Optional

from regkit.compare.grid import Run
from regkit.errors import BadInput, RegkitError


class _Parsed(Exception):
    """Raised where a run would start being built: the command line parsed, every parse-time check passed."""


def _parse_only_cli() -> Any:
    from regkit.cli.lightning import RegkitCLI

    class ParseOnlyCLI(RegkitCLI):
        """regkit's CLI stopped before it chooses a run folder or builds anything."""

        def before_instantiate_classes(self) -> None:
            raise _Parsed

    return ParseOnlyCLI


def fit_error(fit_args: list[str]) -> Optional[str]:
    """What ``regkit fit FIT_ARGS`` would refuse before its run (the message of its error line), or
    None when it parses. Nothing is written, nothing is printed."""
    from regkit.cli import shipped_recipes
    from regkit.cli.recipe_files import check_recipe_files

    argv = shipped_recipes.resolve_names(["fit", *fit_args])
    printed = io.StringIO()
    seed_log = logging.getLogger("lightning.fabric.utilities.seed")  # "Seed set to 0", once per setting
    level = seed_log.level
    seed_log.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stderr(printed), contextlib.redirect_stdout(io.StringIO()):
            check_recipe_files(argv)
            _parse_only_cli()(args=argv)
    except _Parsed:
        return None
    except RegkitError as err:
        return str(err)
    except SystemExit as exit_:
        if exit_.code in (0, None):
            return None
        errors = [line.split(": error: ", 1)[1] for line in printed.getvalue().splitlines() if ": error: " in line]
        return errors[-1] if errors else f"regkit fit exits with status {exit_.code}"
    finally:
        seed_log.setLevel(level)
    return None


def check_grid(runs: list[Run], passthrough: list[str]) -> None:
    """Each setting's ``regkit fit`` command line parses (seeds change nothing that is checked).

    Raises:
        BadInput: listing every setting that does not, with the error its run would end with.
    """
    errors, checked = [], set()
    for run in runs:
        if run.setting in checked:
            continue
        checked.add(run.setting)
        error = fit_error(run.fit_args(passthrough))
        if error is not None:
            errors.append(f"{run.setting}: {error}")
    if errors:
        raise BadInput(f"no run was started: {len(errors)} of {len(checked)} settings of the grid (--vary) "
                       "would fail before training: " + "; ".join(errors))
