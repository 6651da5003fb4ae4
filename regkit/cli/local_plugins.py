"""Local plugins: the files and modules named by ``--plugins A[,B]`` (before the subcommand,
repeatable) and ``REGKIT_PLUGINS=A,B``, whose components are registered before anything else runs.
A target that does not exist, fails to import or exits while imported (``sys.exit``) is named with
what is wrong."""
from __future__ import annotations

import os
from pathlib import Path

from regkit.errors import BadInput, describe


def looks_like_path(target: str) -> bool:
    return target.endswith(".py") or os.sep in target or "/" in target or target.startswith(".")


def check_plugin_target(target: str) -> None:
    """A ``--plugins`` value that looks like a path (``x.py``, ``dir/``, ``./x``) must be a file."""
    if not looks_like_path(target):
        return
    path = Path(target)
    if not path.exists():
        raise BadInput("no such file or directory", f"--plugins {target}")
    if path.is_dir():
        raise BadInput("is a directory; --plugins takes a .py file or an importable module name", f"--plugins {target}")


def load_plugin(target: str) -> None:
    """Register the components of one ``--plugins`` target; any failure names the target."""
    from regkit import registry

    check_plugin_target(target)
    try:
        registry.load_module(os.path.abspath(target) if os.path.exists(target) else target)
    except ModuleNotFoundError as err:
        if not looks_like_path(target) and err.name == target.split(".")[0]:
            raise BadInput(
                "no module of that name is installed, and it is not a file (a local file ends in .py)",
                f"--plugins {target}",
            ) from None
        raise BadInput(f"failed to import: {describe(err)}", f"--plugins {target}") from err
    except SystemExit as err:  # else regkit would end with the plugin's status, silently (0: "success")
        raise BadInput(f"exited while it was imported (sys.exit({err.code!r})); a plugin only defines and "
                       "registers components", f"--plugins {target}") from None
    except Exception as err:
        raise BadInput(f"failed to import: {describe(err)}", f"--plugins {target}") from err
