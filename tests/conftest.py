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


# Optional packages a recipe needs, declared on its first lines (`# requires: timm`), with how to get
# them; a test of every recipe skips one whose package is missing, saying so.
INSTALL = {
    "timm": "pip install timm (it needs the torchvision of your torch; docs/surgery.md)",
    "transformers": "pip install transformers",
}


def missing_requirement(recipe: Path) -> str | None:
    """Why ``recipe`` cannot run here (a required package is not installed), or None."""
    import importlib.util

    for line in recipe.read_text().splitlines()[:5]:
        if line.startswith("# requires:"):
            for module in line.split(":", 1)[1].replace(",", " ").split():
                if importlib.util.find_spec(module) is None:
                    return f"{recipe.name} needs {module}: {INSTALL.get(module, f'pip install {module}')}"
    return None


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
