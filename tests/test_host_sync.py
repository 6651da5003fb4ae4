"""No host-device synchronisation on an ordinary training step (issue #16).

On a GPU, every tensor turned into a Python value (``.item()``, ``float(t)``, ``if t:``, a tensor
printed or put in a progress bar) makes the host wait for the device. A CPU has no device to wait
for, so these tests count the conversions themselves: each recipe trains 20 batches as ``regkit
fit`` would (its logger, W&B offline, progress bar and callbacks) under a ``TorchFunctionMode``
(public ``torch.overrides`` API) that records every tensor-to-Python conversion and every operation
whose output size depends on the data (``nonzero``, ``unique``, boolean-mask indexing, ...). The
only conversions allowed are those at the logging interval (``log_every_n_steps``), where the
loggers and the progress bar read the logged values.

torch.optim's own step counters are exempt: optimizers keep ``state["step"]`` on the CPU (unless
``capturable``/``fused``) and read it with ``.item()``, which never waits for a GPU.
"""
from __future__ import annotations

import importlib.util
import inspect
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from torch.overrides import TorchFunctionMode

from regkit.cli.lightning import RegkitCLI
from regkit.tasks import Classifier

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
LOG_EVERY = 8
BATCHES = 20

_T = torch.Tensor
# Calls that hand a tensor's value to Python (or to a data-dependent output size).
SYNCING = {
    _T.item, _T.tolist, _T.numpy, _T.cpu, _T.__bool__, _T.__float__, _T.__int__, _T.__index__,
    _T.__complex__, _T.__format__, _T.__repr__, _T.nonzero, _T.unique, _T.unique_consecutive,
    _T.bincount, _T.masked_select, torch.equal, torch.allclose, torch.is_nonzero, torch.nonzero,
    torch.argwhere, torch.unique, torch.unique_consecutive, torch.bincount, torch.masked_select,
}
INDEXING = {_T.__getitem__, _T.__setitem__, _T.index_put_, _T.index_put}


def _bool_index(args: tuple) -> bool:
    index = args[1] if len(args) > 1 else None
    items = index if isinstance(index, (tuple, list)) else (index,)
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in items)


def _exempt(frame: Any) -> bool:
    """torch.optim's ``_get_value`` reading an optimizer's CPU step counter."""
    return frame.f_code.co_name == "_get_value" and Path(frame.f_code.co_filename).parent.name == "optim"


class HostSyncCounter(TorchFunctionMode):
    """Records ``(batch, call, caller)`` for every syncing call while ``batch`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.batch: int | None = None
        self.events: list[tuple[int, str, str]] = []

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: Any = None) -> Any:
        if self.batch is not None and (func in SYNCING or (func in INDEXING and _bool_index(args))):
            caller = inspect.currentframe().f_back  # type: ignore[union-attr]
            if not _exempt(caller):
                where = f"{caller.f_code.co_filename}:{caller.f_lineno}"  # type: ignore[union-attr]
                self.events.append((self.batch, getattr(func, "__name__", str(func)), where))
        return func(*args, **(kwargs or {}))


class BatchWindow(L.Callback):
    """Tells the counter which training batch (1-based) is running; closes before epoch-end work."""

    def __init__(self, counter: HostSyncCounter) -> None:
        self.counter, self.batches = counter, 0

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        self.batches += 1
        self.counter.batch = self.batches

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.counter.batch = None

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.counter.batch = None


def train_counting(recipe: str, *overrides: str, steps: int = BATCHES) -> tuple[list[tuple[int, str, str]], str]:
    """Fit ``recipe`` for ``steps`` optimizer steps as ``regkit fit`` does, counting syncs per batch;
    returns the syncs and what the progress bar showed last beside its counter."""
    cli = RegkitCLI(
        args=["--config", str(RECIPES / recipe), "--trainer.max_steps", str(steps),
              "--trainer.log_every_n_steps", str(LOG_EVERY), "--trainer.num_sanity_val_steps", "0", *overrides],
        run=False,
    )
    counter = HostSyncCounter()
    window = BatchWindow(counter)
    cli.trainer.callbacks.insert(0, window)  # first, so it closes the window before other epoch-end hooks
    try:
        with counter:
            cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    finally:
        finish_wandb()
    assert window.batches == BATCHES
    return counter.events, str(cli.trainer.progress_bar_callback.train_progress_bar.postfix)


# A GPU machine without wandb (benchmarks/gpu_checks.sh) runs these counts with --trainer.logger null.
HAVE_WANDB = importlib.util.find_spec("wandb") is not None


def finish_wandb() -> None:
    """Ends the W&B run as the end of a `regkit fit` process would (nothing to do without wandb)."""
    if HAVE_WANDB:
        import wandb

        wandb.finish()


def batches_with_syncs(events: list[tuple[int, str, str]]) -> set[int]:
    return {batch for batch, _, _ in events}


CASES = {
    "classifier": ("mlp_dropout.yaml", ["--data.init_args.limit_train", "3000"], BATCHES),
    "language_model": ("lstm_ptb_variational.yaml", ["--data.init_args.limit_train_tokens", "16000"], BATCHES),
    # Manual optimization: one D and one G optimizer step per batch.
    "gan": ("gan.yaml", ["--data.init_args.limit_train", "1600"], 2 * BATCHES),
    "attention": ("attention_dropout.yaml", ["--data.init_args.limit_train", "3000"], BATCHES),
    # Scheduled rates (in a slot and in a rule's inserted module), set and logged every step from the host.
    "scheduled": ("mlp_dropout.yaml", [
        "--data.init_args.limit_train", "3000",
        "--model.init_args.network.dropout.p", "{schedule: linear, start: 0.1, end: 0.5}",
        "--model.init_args.regularize",
        "[{path: layers.1, insert: {name: dropout, p: {schedule: early, value: 0.2, cutoff: 0.5}}}]"], BATCHES),
}


@pytest.mark.parametrize("task", list(CASES))
def test_recipe_defaults_sync_only_at_the_logging_interval(task: str) -> None:
    recipe, overrides, steps = CASES[task]
    events, shown = train_counting(recipe, *overrides, steps=steps)
    logging_batches = {b for b in range(1, BATCHES + 1) if b % LOG_EVERY == 0}
    outside = [e for e in events if e[0] not in logging_batches]
    assert not outside, f"{task}: host-device syncs outside the logging interval: {outside}"
    # The counter sees the conversions that logging does make (so it is not blind).
    assert batches_with_syncs(events) == logging_batches, events
    assert "loss=" in shown  # the progress bar still shows the losses


class ItemPerStep(Classifier):
    """A classifier with the mistake the test exists to catch: a Python float of the loss per step."""

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss = super().training_step(batch, batch_idx)
        self.last_loss = loss.item()
        return loss


def test_counter_catches_an_item_per_step() -> None:
    events, _ = train_counting(
        "mlp_dropout.yaml", "--data.init_args.limit_train", "3000",
        "--model.class_path", f"{__name__}.ItemPerStep",
    )
    assert batches_with_syncs(events) == set(range(1, BATCHES + 1))
    assert all(name == "item" for batch, name, _ in events if batch % LOG_EVERY)
