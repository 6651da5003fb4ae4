"""Shared test setup: W&B offline in a temporary directory, and a helper to run the real CLI."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"
# The one optional thing .ci/setup may be unable to install (a Debian package needs root): its tests
# skip with the command, as .ci/setup's own line says.
FASHION_INSTALL = "apt-get install dataset-fashion-mnist (as root), or --data.init_args.data_dir DIR with its four IDX files"


@pytest.fixture(autouse=True)
def _offline_wandb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test runs in its own directory with W&B offline, so nothing is uploaded or shared."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    # An in-process W&B run stores its service's address in os.environ; a regkit subprocess that
    # inherits it would hand its run to this process's service, which finishes writing it later.
    monkeypatch.delenv("WANDB_SERVICE", raising=False)
    monkeypatch.chdir(tmp_path)


def require_plugin(name: str) -> None:
    """Fail, naming the install command, when the plugin package ``plugins/<name>`` is not installed.
    Not a skip: ``bash .ci/setup`` installs every plugin the suite uses (the rule in .ci/setup), so a
    missing one means a setup step did not run, which must not pass unnoticed."""
    import importlib.util

    if importlib.util.find_spec(name.replace("-", "_")) is None:
        pytest.fail(f"plugin package {name} is not installed: run `bash .ci/setup`, which installs it "
                    f"(or `pip install -e plugins/{name}`)", pytrace=False)


def run_regkit(*args: str, timeout: float = 600, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run the installed ``regkit`` entry point as a user would; returns the finished process."""
    full_env = {**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})}
    full_env.pop("WANDB_SERVICE", None)  # see _offline_wandb
    return subprocess.run(
        [sys.executable, "-m", "regkit.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )


def slot_masks(model: nn.Module, cls: type, x: torch.Tensor) -> list[torch.Tensor]:
    """Each ``cls`` module's noise in one training pass of ``model``: its linear response
    ``f(x + 1) - f(x)`` to the input it got, under one seed."""
    seen: list[tuple[nn.Module, torch.Tensor]] = []
    hooks = [
        m.register_forward_hook(lambda m, args, out: seen.append((m, args[0].detach())))
        for m in model.modules() if isinstance(m, cls)
    ]
    model.train()
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    masks = []
    for i, (m, inp) in enumerate(seen):
        with torch.random.fork_rng(), torch.no_grad():
            torch.manual_seed(i)
            base = m(inp + 3.0)
            torch.manual_seed(i)
            masks.append(m(inp + 4.0) - base)
    return masks
