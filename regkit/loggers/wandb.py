"""Weights & Biases logging, offline unless you are logged in, with the versions and revisions of the run."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

from lightning.pytorch.loggers import WandbLogger as _LightningWandbLogger
from lightning.pytorch.utilities import rank_zero_only

from regkit.loggers.wandb_network import base_url, unreachable


def wandb_logged_in() -> bool:
    """True when an API key is available (env var or ~/.netrc); never reads the key itself out."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return "api.wandb.ai" in netrc.read_text()
    except OSError:
        return False


def resolve_offline(offline: Optional[bool]) -> bool:
    """An explicit choice wins; then ``WANDB_MODE``; then online only if logged in."""
    if offline is not None:
        return offline
    mode = os.environ.get("WANDB_MODE", "").lower()
    if mode in ("offline", "dryrun", "disabled"):
        return True
    if mode == "online":
        return False
    return not wandb_logged_in()


def git_revision(directory: Optional[str] = None) -> Optional[str]:
    """The git commit checked out in ``directory`` (default: the working directory), with
    ``+dirty`` when tracked files have uncommitted changes; None outside a git checkout."""
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=directory, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()

    try:
        rev = git("rev-parse", "HEAD")
        if not rev:
            return None
        return rev + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.SubprocessError):
        return None


def run_versions() -> dict[str, Any]:
    """Versions of Python, regkit, torch, lightning, torchmetrics and every installed regkit plugin
    package; ``git_revision`` of the working directory and ``regkit_git_revision`` of regkit's own
    source checkout, when they are git checkouts."""
    import platform

    import lightning
    import torch
    import torchmetrics

    import regkit.registry

    versions: dict[str, Any] = {
        "python": platform.python_version(),
        "regkit": _installed_version("regkit"),
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "torchmetrics": torchmetrics.__version__,
    }
    versions.update(regkit.registry.installed.distributions())
    rev = git_revision()
    if rev:
        versions["git_revision"] = rev
    source = Path(__file__).resolve().parents[2]
    own = git_revision(str(source)) if (source / ".git").exists() else None
    if own:
        versions["regkit_git_revision"] = own
    return versions


def _installed_version(distribution: str) -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:  # a source tree on the path, not installed
        return "unknown"


# ANONYMOUS_WORKAROUND (docs/wandb.md, "Why regkit touches one private attribute"). Lightning's
# WandbLogger (every release up to 2.6.6, the newest regkit is tested with) always passes
# `anonymous=None` to `wandb.init`; wandb >= 0.23 removed anonymous mode (wandb/wandb#10909) and warns
# "The anonymous setting has no effect" whenever the argument is passed at all, None included. No
# public argument or hook of the logger leaves it out (the keyword is one of its named parameters, so
# `**kwargs` cannot replace it), so regkit deletes the None from the logger's protected `_wandb_init`
# dict before the run starts. Guarded: only with a wandb that warns, and only while Lightning still
# puts the None there; a Lightning that stops passing it makes this a no-op.
def _release(distribution: str) -> tuple[int, ...]:
    """(major, minor) of an installed distribution; () when it is not installed or unparsable."""
    import importlib.metadata

    try:
        return tuple(int(part) for part in importlib.metadata.version(distribution).split(".")[:2])
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return ()


WANDB_WARNS_ON_ANONYMOUS = _release("wandb") >= (0, 23)


def online_reachable(save_dir: str) -> bool:
    """Whether the W&B server answers (regkit/loggers/wandb_network.py). When it does not, say so
    once and set ``WANDB_MODE=offline`` for this process and those it starts (DDP)."""
    why = unreachable(base_url())
    if why is None:
        return True
    os.environ["WANDB_MODE"] = "offline"
    say(f"W&B: cannot reach {base_url()} ({why}): logging offline instead, to {save_dir}/wandb; "
        f"upload later with `wandb sync {save_dir}/wandb/offline-run-*`")
    return False


@rank_zero_only
def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class WandbLogger(_LightningWandbLogger):
    """Weights & Biases logger with regkit's defaults (Lightning's WandbLogger underneath).

    Runs go under ``save_dir/wandb`` (the CLI sets ``save_dir`` to the run folder); offline unless you are logged in (``WANDB_MODE`` is
    respected; ``wandb sync`` uploads offline runs later), and offline when the W&B server does not
    answer within a few seconds (one line says so). The run config gets ``versions``
    (Python, regkit, torch, lightning, torchmetrics, each installed regkit plugin package, the git
    revisions) and, from the CLI, ``recipe``: the full resolved recipe. The API key is never
    read or logged by regkit; wandb itself finds it (``wandb login`` or ``WANDB_API_KEY``).

    Args:
        project: W&B project name.
        name: run name (W&B picks one if null).
        save_dir: where run files go.
        offline: force offline (true) or online (false); null decides as described above.
        log_model: upload checkpoints as W&B artifacts.
        id: W&B run id (the CLI gives the run folder's id).
        resume: W&B resume mode (the CLI sets ``allow`` when ``--ckpt_path last|auto`` continues a run).
        **kwargs: passed to ``wandb.init`` (e.g. ``entity``, ``tags``).
    """

    def __init__(
        self,
        project: str = "regkit",
        name: Optional[str] = None,
        save_dir: str = "runs",
        offline: Optional[bool] = None,
        log_model: bool = False,
        id: Optional[str] = None,
        resume: Optional[str] = None,
        **kwargs: Any,
    ) -> None:
        if resume is not None:
            kwargs["resume"] = resume
        config = {"versions": run_versions(), **kwargs.pop("config", {})}
        offline = resolve_offline(offline) or not online_reachable(save_dir)
        super().__init__(
            name=name,
            save_dir=save_dir,
            project=project,
            offline=offline,
            log_model=log_model,
            config=config,
            id=id,
            **kwargs,
        )
        if WANDB_WARNS_ON_ANONYMOUS:  # the one private attribute regkit touches, see ANONYMOUS_WORKAROUND
            init_args: dict[str, Any] = self._wandb_init
            if "anonymous" in init_args and init_args["anonymous"] is None:
                del init_args["anonymous"]

    @property
    def experiment(self) -> Any:
        # The folder is made when the run starts, not in __init__: constructors write nothing.
        if self.save_dir:
            Path(self.save_dir).mkdir(parents=True, exist_ok=True)
        return super().experiment
