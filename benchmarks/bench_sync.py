"""Host-device synchronisation per training step: every task's recipe (classifier, language model,
GAN, attention) trains 20 batches as ``regkit fit`` would (W&B offline, progress bar, checkpointing),
logging every 8 steps, under the conversion counter of ``tests/test_host_sync.py`` (a public
``torch.overrides.TorchFunctionMode`` that records every tensor-to-Python conversion and every
data-dependent output size). Goal: 0 conversions on the steps between logging intervals; the
logging steps are counted too, to show the counter sees what logging does read.

On a GPU each recipe also trains on the GPU under ``torch.cuda.set_sync_debug_mode("warn")``, whose
warnings (each a synchronising CUDA call) are counted the same way. Without a GPU that row says
"not measured". A count, not a time: the same on every machine.
"""
from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
from common import print_table, row  # noqa: E402

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

BENCHMARK = "sync"


def cpu_counts(task: str) -> tuple[int, int, int]:
    """(conversions on ordinary steps, conversions on logging steps, logging steps) for ``task``."""
    import test_host_sync as hs

    recipe, overrides, steps = hs.CASES[task]
    events, _ = hs.train_counting(recipe, *overrides, steps=steps)
    logging = {b for b in range(1, hs.BATCHES + 1) if b % hs.LOG_EVERY == 0}
    outside = sum(1 for batch, _, _ in events if batch not in logging)
    return outside, len(events) - outside, len(logging)


def gpu_counts(task: str) -> tuple[int, int, int]:
    """Synchronising CUDA calls under sync debug mode "warn": (on ordinary steps outside checkpoint
    saves, inside checkpoint saves, on logging steps). A checkpoint save copies every GPU tensor to
    the host (``torch.save``), one synchronising copy each: its cost is per checkpoint, not per step."""
    import traceback

    import test_host_sync as hs

    from regkit.cli.lightning import RegkitCLI

    recipe, overrides, steps = hs.CASES[task]
    no_wandb = [] if hs.HAVE_WANDB else ["--trainer.logger", "null"]  # metrics.csv only
    cli = RegkitCLI(args=["--config", str(hs.RECIPES / recipe), "--trainer.max_steps", str(steps),
                          "--trainer.log_every_n_steps", str(hs.LOG_EVERY), "--trainer.num_sanity_val_steps", "0",
                          "--trainer.accelerator", "gpu", "--trainer.devices", "1", *overrides, *no_wandb], run=False)
    counter = hs.HostSyncCounter()  # used only for its batch number (the mode is not entered)
    cli.trainer.callbacks.insert(0, hs.BatchWindow(counter))
    batches: list[tuple[int, bool]] = []  # (batch, inside a checkpoint save)
    shown = warnings.showwarning

    def record(message: Any, category: Any, *args: Any, **kwargs: Any) -> None:
        if counter.batch is not None and "synchroniz" in str(message).lower():
            saving = any(frame.name == "save_checkpoint" for frame in traceback.extract_stack())
            batches.append((counter.batch, saving))
        else:
            shown(message, category, *args, **kwargs)

    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings():  # restores showwarning and the filters on exit
            warnings.simplefilter("always")
            warnings.showwarning = record
            cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    finally:
        torch.cuda.set_sync_debug_mode("default")
        hs.finish_wandb()
    logging = {b for b in range(1, hs.BATCHES + 1) if b % hs.LOG_EVERY == 0}
    ordinary = [saving for b, saving in batches if b not in logging]
    return ordinary.count(False), ordinary.count(True), len(batches) - len(ordinary)


def run(quick: bool = False) -> list[dict]:
    import test_host_sync as hs

    rows = []
    note = f"{hs.BATCHES} training batches, logging every {hs.LOG_EVERY}; recipe defaults (W&B offline, bar, ckpt)"
    for task in hs.CASES:
        outside, at_logging, n_logging = cpu_counts(task)
        goal = "goal 0: met" if outside == 0 else "goal 0: NOT met"
        rows.append(row(BENCHMARK, f"{task}: conversions on steps between logging", "count (CPU counter)",
                        outside, 0, note=f"{goal}; {note}"))
        rows.append(row(BENCHMARK, f"{task}: conversions on the {n_logging} logging steps", "count (CPU counter)",
                        at_logging, 0, note="what the loggers and the progress bar read"))
        if torch.cuda.is_available():
            outside, saving, at_logging = gpu_counts(task)
            rows.append(row(BENCHMARK, f"{task}: synchronising CUDA calls between logging steps",
                            "count (sync debug mode)", outside, 0,
                            note=f"{torch.cuda.get_device_name(0)}; goal 0: {'met' if outside == 0 else 'NOT met'}; "
                                 f"checkpoint saves not counted here"))
            rows.append(row(BENCHMARK, f"{task}: synchronising CUDA calls inside the checkpoint saves",
                            "count (sync debug mode)", saving, 0, note="torch.save copies each GPU tensor to the host"))
        else:
            rows.append({"benchmark": BENCHMARK, "case": f"{task}: synchronising CUDA calls between logging steps",
                         "metric": "count (sync debug mode)", "value": None, "spread": None, "baseline": "",
                         "baseline_value": None, "ratio": None, "note": "not measured here (no GPU in this run): see GPU_RESULTS.md"})
    return rows


if __name__ == "__main__":
    print_table(run(quick="--quick" in sys.argv))
