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


# Optional packages, by the rule in .ci/setup: what setup installs is required (a missing one fails);
# what it cannot install beside the pinned CPU torch skips, saying how to get it.
SETUP_INSTALLS = {"transformers": "pip install transformers"}
CANNOT_INSTALL_HERE = {
    "timm": "pip install torch==2.14.1 torchvision==0.29.1 timm in another environment: timm needs a torchvision "
            "built for its torch, which PyPI has not for the CPU torch .ci/setup pins (docs/surgery.md)",
}


def require_package(module: str) -> None:
    """Skip (timm: .ci/setup cannot install it here) or fail (everything else) when ``module`` is missing."""
    import importlib.util

    if importlib.util.find_spec(module) is not None:
        return
    if module in CANNOT_INSTALL_HERE:
        pytest.skip(f"{module} is not installed: {CANNOT_INSTALL_HERE[module]}")
    pytest.fail(f"{module} is not installed: run `bash .ci/setup`, which installs it "
                f"({SETUP_INSTALLS.get(module, f'pip install {module}')})", pytrace=False)


def require_recipe_packages(recipe: Path) -> None:
    """The packages a recipe declares on its first lines (``# requires: timm``), by :func:`require_package`."""
    for line in recipe.read_text().splitlines()[:5]:
        if line.startswith("# requires:"):
            for module in line.split(":", 1)[1].replace(",", " ").split():
                require_package(module)


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
