"""Shared test setup: W&B offline in a temporary directory, and two ways to run the CLI: in this
process (:func:`regkit_main`, the default) or as a real process (:func:`run_regkit`)."""
from __future__ import annotations

import contextlib
import io
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"
# The one optional thing .ci/setup may be unable to install (a Debian package needs root): its tests
# skip with the command, as .ci/setup's own line says.
FASHION_INSTALL = "apt-get install dataset-fashion-mnist (as root), or --data.init_args.data_dir DIR with its four IDX files"


@pytest.fixture(autouse=True)
def _offline_wandb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test runs in its own directory with W&B offline, so nothing is uploaded or shared; a W&B
    run a test left open (regkit.cli.main called directly) ends with the test, as with a process, so
    the next test's run is its own."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    # An in-process W&B run stores its service's address in os.environ; a regkit subprocess that
    # inherits it would hand its run to this process's service, which finishes writing it later.
    monkeypatch.delenv("WANDB_SERVICE", raising=False)
    monkeypatch.chdir(tmp_path)
    yield
    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.finish()


def regkit_main(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``regkit ARGS`` through ``regkit.cli.main`` in this process: its exit code and what it printed
    (Lightning's log lines on stderr), like :func:`run_regkit` but without a new process paying
    Lightning's import (about 4 s). For what a command does; what a terminal shows of a real process
    (warnings, tracebacks, exit on a signal, DDP) is :func:`run_regkit`'s. An exception that escapes
    ``main`` is raised. Afterwards a W&B run still open is finished (as the process's exit would), and
    ``os.environ`` (``env`` added for the call) and ``sys.argv`` are restored."""
    from regkit import cli

    saved_env, saved_argv = dict(os.environ), sys.argv
    # A module-scoped fixture runs before the per-test _offline_wandb: drop a W&B service address an
    # earlier test left in os.environ (its service is gone; wandb.init would fail to connect to it).
    os.environ.pop("WANDB_SERVICE", None)
    os.environ.update(env or {})
    sys.argv = ["regkit", *args]  # what LightningCLI sees in a real `regkit ...`
    out, err = io.StringIO(), io.StringIO()
    handler = logging.StreamHandler(err)
    lightning_loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    for logger in lightning_loggers:
        logger.addHandler(handler)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = cli.main(list(args))
            except SystemExit as exit_:  # as the interpreter turns it into an exit status
                if isinstance(exit_.code, str):
                    print(exit_.code, file=sys.stderr)
                code = exit_.code if isinstance(exit_.code, int) else 0 if exit_.code is None else 1
    finally:
        wandb = sys.modules.get("wandb")
        if wandb is not None:  # W&B's run and settings end as the end of a `regkit` process ends them
            if wandb.run is not None:
                wandb.finish()
            wandb.teardown()
        for logger in lightning_loggers:
            logger.removeHandler(handler)
        os.environ.clear()
        os.environ.update(saved_env)
        sys.argv = saved_argv
    return subprocess.CompletedProcess(["regkit", *args], code, out.getvalue(), err.getvalue())


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
    """Run ``python -m regkit.cli`` as a user would, in a new process; returns the finished process.
    Only for the process contract (what the terminal shows, exit on a signal, DDP, kill and resume);
    everything else runs in this process with :func:`regkit_main`."""
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
