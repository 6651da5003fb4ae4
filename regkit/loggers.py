"""Weights & Biases logging, offline unless you are logged in."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any, Optional

from lightning.pytorch.loggers import WandbLogger as _LightningWandbLogger


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


def git_revision() -> Optional[str]:
    """The current git commit of the working directory, if it is a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def run_versions() -> dict[str, Any]:
    """Versions of regkit, torch, lightning and installed regkit plugin packages, plus the git revision."""
    import importlib.metadata as md

    import lightning
    import torch

    import regkit

    versions: dict[str, Any] = {"regkit": regkit.__version__, "torch": torch.__version__, "lightning": lightning.__version__}
    for ep in md.entry_points(group="regkit.plugins"):
        if ep.dist is not None:
            versions[ep.dist.name] = ep.dist.version
    rev = git_revision()
    if rev:
        versions["git_revision"] = rev
    return versions


class WandbLogger(_LightningWandbLogger):
    """Lightning's WandbLogger with regkit's defaults: runs under ``save_dir/wandb``, offline unless
    logged in (``WANDB_MODE`` respected; ``wandb sync`` uploads offline runs later), and the
    regkit/torch/plugin versions and git revision in the run config.

    Args:
        project: W&B project name.
        name: run name (W&B picks one if null).
        save_dir: where run files go.
        offline: force offline (true) or online (false); null decides as described above.
        log_model: upload checkpoints as W&B artifacts.
        **kwargs: passed to ``wandb.init`` (e.g. ``entity``, ``tags``).
    """

    def __init__(
        self,
        project: str = "regkit",
        name: Optional[str] = None,
        save_dir: str = "runs",
        offline: Optional[bool] = None,
        log_model: bool = False,
        **kwargs: Any,
    ) -> None:
        Path(save_dir).mkdir(parents=True, exist_ok=True)
        config = {"versions": run_versions(), **kwargs.pop("config", {})}
        super().__init__(
            name=name,
            save_dir=save_dir,
            project=project,
            offline=resolve_offline(offline),
            log_model=log_model,
            config=config,
            **kwargs,
        )
