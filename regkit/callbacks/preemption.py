"""Preemption: SIGTERM (a scheduler's preemption or time limit), SIGUSR1 (SLURM's warning,
``#SBATCH --signal=USR1@90``) and Ctrl-C stop ``regkit fit`` at the end of the training step under
way, with ``last.ckpt`` saved, and the command exits with status 128 + the signal's number (143,
138, 130: :data:`EXIT_STATUS`). The same command with ``--ckpt_path auto`` continues exactly.

Lightning already stops on SIGTERM at a step's end (its signal connector raises
``SIGTERMException``); this callback saves ``last.ckpt`` when that exception passes through
``on_exception``, and sends SIGUSR1 and the first Ctrl-C down the same path. Under DDP it saves
nothing on a signal (the processes may stop at different steps, and a checkpoint is a collective
of all of them): there the periodic checkpoints (``--checkpoint.every_n_train_steps``) are what
``--ckpt_path auto`` continues from. A handler
SIGUSR1 already has (Lightning's SLURM auto-requeue, which saves an HPC checkpoint and requeues the
job) still runs first. A second Ctrl-C stops at once, as before, without saving.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
from types import FrameType
from typing import Any, Optional

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

from regkit.callbacks.resume import ExactResume, last_path

EXIT_STATUS = {signal.SIGTERM: 128 + signal.SIGTERM, signal.SIGUSR1: 128 + signal.SIGUSR1,
               signal.SIGINT: 128 + signal.SIGINT}
"""Exit status of a fit stopped by each signal (the shell's convention: 128 + its number)."""


class SaveOnSignal(L.Callback):
    """Saves ``last.ckpt`` when fit stops on a signal (see the module's docstring); ``exact_resume``
    is the run's :class:`ExactResume`, which writes it."""

    def __init__(self, exact_resume: ExactResume) -> None:
        self.exact_resume = exact_resume
        self.received: Optional[signal.Signals] = None  # SIGUSR1 or SIGINT, turned into SIGTERM
        self.previous: dict[int, Any] = {}
        self.training = False
        self.stopped_at: Optional[tuple[int, int]] = None  # (step, epoch) of the saved state

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.training = True
        if threading.current_thread() is not threading.main_thread():
            return
        # After Lightning set its handlers (it does so just before training): SIGTERM is its own.
        for signum in (signal.SIGUSR1, signal.SIGINT):
            self.previous[signum] = signal.signal(signum, self.on_signal)

    def on_signal(self, signum: int, frame: Optional[FrameType]) -> None:
        previous = self.previous.get(signum)
        if signum == signal.SIGINT:
            signal.signal(signal.SIGINT, previous)  # a second Ctrl-C interrupts at once
            print("\nregkit: Ctrl-C: stopping at the end of this step and saving last.ckpt "
                  "(Ctrl-C again stops at once, without saving)", file=sys.stderr, flush=True)
        elif callable(previous):
            previous(signum, frame)  # Lightning's SLURM requeue handler, or one the user set
        if self.received is None:
            self.received = signal.Signals(signum)
        signal.raise_signal(signal.SIGTERM)  # Lightning stops on it at the step's end

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if threading.current_thread() is threading.main_thread():
            for signum, handler in self.previous.items():
                if signal.getsignal(signum) == self.on_signal and handler is not None:
                    signal.signal(signum, handler)
        self.previous.clear()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, SIGTERMException) or not self.training:
            return
        self.stopped_at = (trainer.global_step, trainer.current_epoch)
        if trainer.world_size > 1:
            return
        # Raised at a step's end (or inside validation after it): the last step is complete.
        self.exact_resume.save_last(trainer)
        self.exact_resume.put_back_stop_copies()

    def saved_files(self, trainer: L.Trainer) -> list[str]:
        """Each ``last.ckpt`` there is, relative to the working folder when inside it."""
        paths = [last_path(c) for c in trainer.checkpoint_callbacks
                 if isinstance(c, ModelCheckpoint) and c.save_last and c.dirpath and os.path.isfile(last_path(c))]
        return [os.path.relpath(p) if not os.path.relpath(p).startswith("..") else p for p in paths]

    def report(self, trainer: Optional[L.Trainer]) -> SystemExit:
        """Print what was saved and how to continue (stderr); the exit to raise."""
        signum = self.received or signal.SIGTERM
        name = "Ctrl-C (SIGINT)" if signum == signal.SIGINT else signum.name
        if not self.training:
            what = "before training started: nothing to save"
        elif self.stopped_at is None:
            what = "after training ended (last.ckpt holds its final state)"
        else:
            step, epoch = self.stopped_at
            saved = self.saved_files(trainer) if trainer is not None else []
            what = f"at step {step} (epoch {epoch}); "
            if trainer is not None and trainer.world_size > 1:
                what += ("nothing saved on a signal under DDP; --ckpt_path auto continues from the last "
                         "periodic checkpoint (--checkpoint.every_n_train_steps)")
            elif saved:
                what += f"saved {', '.join(saved)}; continue with the same command and --ckpt_path auto"
            else:
                what += "no checkpoint saved (checkpointing is off or keeps no last.ckpt)"
        print(f"regkit fit: stopped by {name} {what} (exit status {EXIT_STATUS[signum]})", file=sys.stderr, flush=True)
        return SystemExit(EXIT_STATUS[signum])


def preempted(trainer: Optional[L.Trainer]) -> SystemExit:
    """The exit of a command whose fit stopped on a signal, after saying why and what was saved."""
    callbacks = getattr(trainer, "callbacks", None) or []
    found = next((c for c in callbacks if isinstance(c, SaveOnSignal)), None)
    if found is None:
        print(f"regkit: stopped by SIGTERM (exit status {EXIT_STATUS[signal.SIGTERM]})", file=sys.stderr, flush=True)
        return SystemExit(EXIT_STATUS[signal.SIGTERM])
    return found.report(trainer)
