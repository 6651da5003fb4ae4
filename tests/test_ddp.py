"""Two-process DDP on CPU (gloo) with bf16-mixed, through the real CLI: metrics are reduced across
processes and the checkpoint reloads.

The recipes run unchanged; only trainer flags and quick limits are added. The validation split is
500 images, so each of the two processes sees 250 (rank 0 the even indices, rank 1 the odd ones:
Lightning's DistributedSampler without shuffling) and nothing is padded or duplicated.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest
import torch

from conftest import RECIPES, ROOT, run_regkit

DDP = ["--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp",
       "--trainer.precision", "bf16-mixed"]
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
         "--trainer.logger", "lightning.pytorch.loggers.CSVLogger", "--trainer.logger.save_dir", "logs"]
EXAMPLE = ROOT / "examples" / "my_components.py"


def with_pythonpath(folder: Path) -> str:
    """PYTHONPATH with ``folder`` first, keeping the caller's (a worktree's regkit before the installed one)."""
    return os.pathsep.join([str(folder), *filter(None, [os.environ.get("PYTHONPATH")])])


def logged(tmp_path: Path) -> dict[str, float]:
    """Last logged value of every metric in the CSV log."""
    out: dict[str, float] = {}
    for row in csv.DictReader(next(tmp_path.glob("logs/**/metrics.csv")).open()):
        out.update({k: float(v) for k, v in row.items() if v})
    return out


def test_classifier_ddp_bf16_reduces_metrics_and_checkpoint_reloads(tmp_path: Path) -> None:
    proc = run_regkit(
        # the local plugin must reach the second process too (it is launched without --plugins)
        "--plugins", str(EXAMPLE),
        "fit", "--config", str(RECIPES / "mlp_dropout.yaml"), *DDP, *QUIET,
        "--model.init_args.network.dropout", "{name: my_noise, sigma: 0.1}",
        # Adam learns enough in the two steps below for the checks on what was learned (the recipe's
        # SGD, as in the dropout paper, needs more steps)
        "--model.init_args.optimizer", "{class_path: torch.optim.Adam, init_args: {lr: 0.001}}",
        "--data.init_args.limit_train", "512", "--data.init_args.val_size", "500",
        "--trainer.max_epochs", "1", "--test_after_fit", "false",
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    metrics = logged(tmp_path)
    (ckpt_path,) = tmp_path.glob("logs/mlp_dropout/*/checkpoints/last.ckpt")  # <logger save_dir>/<recipe>/<run id>/

    # The checkpoint holds plain data only and rebuilds the task.
    from regkit import registry
    from regkit.data import MNISTDataModule
    from regkit.tasks import Classifier

    ckpt = torch.load(ckpt_path, weights_only=True)
    assert ckpt["global_step"] == 2  # 512 images / (2 processes x 128)
    registry.load_module(str(EXAMPLE))
    try:
        model = Classifier.load_from_checkpoint(ckpt_path, map_location="cpu", weights_only=True).eval()
    finally:
        registry.unregister("regularizer", "my_noise")

    # One process, the whole validation set, the same bf16 autocast as the run.
    dm = MNISTDataModule(val_size=500, limit_train=512)
    dm.setup("fit")
    x, y = dm.val_set.tensors
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        correct = (model(x).argmax(-1) == y).float()
    full, rank0_only = correct.mean().item(), correct[0::2].mean().item()
    assert abs(full - rank0_only) > 0.005  # otherwise this test could not tell the two apart (tolerance below: 0.003)
    assert metrics["val/acc"] == pytest.approx(full, abs=1.5 / 500)  # bf16: at most a near-tie flips
    assert 0.3 < full  # it learned something in two steps


def test_language_model_ddp_bf16_reduces_perplexity_and_checkpoint_reloads(tmp_path: Path) -> None:
    import math

    import lightning as L

    from regkit.data import PTBDataModule
    from regkit.tasks import LanguageModel

    data = {"batch_size": 32, "eval_batch_size": 32, "bptt": 35, "limit_train_tokens": 4480}  # 2 steps
    proc = run_regkit(
        "fit", "--config", str(RECIPES / "lstm_ptb_variational.yaml"), *DDP, *QUIET,
        *[a for k, v in data.items() for a in (f"--data.init_args.{k}", str(v))],
        "--trainer.limit_val_batches", "2", "--trainer.max_epochs", "1", "--trainer.check_val_every_n_epoch", "1", "--test_after_fit", "false",
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    logged_ppl = logged(tmp_path)["val/ppl"]
    (ckpt_path,) = tmp_path.glob("logs/lstm_ptb_variational/*/checkpoints/last.ckpt")
    assert torch.load(ckpt_path, weights_only=True)["global_step"] == 2
    model = LanguageModel.load_from_checkpoint(ckpt_path, map_location="cpu", weights_only=True)

    # Each process validates on its own contiguous slice of the stream; redo both slices in this
    # process (same windows, same bf16) and combine them as a correct reduction must: equal token
    # counts, so the joint perplexity is the geometric mean of the two.
    per_rank = []
    for rank in range(2):
        dm = PTBDataModule(**data)
        dm._rank = lambda rank=rank: (rank, 2)  # the slice the DDP process `rank` of 2 took
        trainer = L.Trainer(accelerator="cpu", devices=1, precision="bf16-mixed", logger=False,
                            limit_val_batches=2, enable_progress_bar=False, enable_model_summary=False)
        per_rank.append(trainer.validate(model, datamodule=dm, verbose=False)[0]["val/ppl"])
    joint = math.exp(sum(math.log(p) for p in per_rank) / 2)
    assert abs(per_rank[0] - joint) / joint > 5e-4  # otherwise this test could not tell them apart
    assert logged_ppl == pytest.approx(joint, rel=1e-4)


MASK_PROBE = '''
import lightning as L
import torch


class NextMask(L.Callback):
    """Saves the dropout mask this process would draw next, at its first training batch."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == 0:
            mask = torch.nn.functional.dropout(torch.ones(4096), 0.5, training=True) > 0
            torch.save(mask, f"mask-{trainer.world_size}-{trainer.global_rank}.pt")
'''


def test_ddp_processes_draw_different_dropout_masks_and_rank_0_keeps_the_one_process_stream(tmp_path: Path) -> None:
    (tmp_path / "mask_probe.py").write_text(MASK_PROBE)
    for devices in ("2", "1"):
        proc = run_regkit(
            "fit", "--config", str(RECIPES / "mlp_dropout.yaml"), *QUIET,
            "--trainer.accelerator", "cpu", "--trainer.devices", devices, "--trainer.strategy", "ddp",
            "--trainer.callbacks+", "mask_probe.NextMask", "--trainer.max_steps", "1",
            "--data.init_args.limit_train", "512", "--trainer.limit_val_batches", "1", "--test_after_fit", "false",
            timeout=300, env={"PYTHONPATH": with_pythonpath(tmp_path)},
        )
        assert proc.returncode == 0, proc.stderr[-4000:]
    rank0, rank1, alone = (torch.load(tmp_path / f"mask-{n}.pt") for n in ("2-0", "2-1", "1-0"))
    # Lightning seeds every process alike; regkit gives each rank its own stream.
    assert 0.4 < (rank0 == rank1).float().mean() < 0.6  # independent masks of rate 0.5 agree half the time
    assert torch.equal(rank0, alone)  # rank 0 draws what a one-process run draws


RATE_PROBE = '''
import json

import lightning as L
import torch


class Rates(L.Callback):
    """Writes, per process, the rate of every dropout module at the end of each training batch."""

    def __init__(self):
        self.seen = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.seen.append({name: float(m.p) for name, m in pl_module.named_modules() if 'Dropout' in type(m).__name__})

    def on_train_end(self, trainer, pl_module):
        with open(f"rates-{trainer.global_rank}.json", "w") as f:
            json.dump(self.seen, f)
'''


def test_a_schedule_gives_every_ddp_process_the_same_rate_at_each_step(tmp_path: Path) -> None:
    (tmp_path / "rate_probe.py").write_text(RATE_PROBE)
    proc = run_regkit(
        "fit", "--config", str(RECIPES / "mlp_dropout.yaml"), *QUIET,
        "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp",
        "--model.init_args.network.dropout", "{name: dropout, p: {schedule: linear, start: 0.0, end: 0.3}}",
        "--trainer.callbacks+", "rate_probe.Rates", "--trainer.max_steps", "4", "--trainer.log_every_n_steps", "1",
        "--data.init_args.limit_train", "1024", "--trainer.limit_val_batches", "1", "--test_after_fit", "false",
        timeout=300, env={"PYTHONPATH": with_pythonpath(tmp_path)},
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    import json

    rank0, rank1 = (json.loads((tmp_path / f"rates-{r}.json").read_text()) for r in (0, 1))
    assert rank0 == rank1 and len(rank0) == 4
    # the hidden dropouts follow the schedule (the value set at the start of step s, after s - 1 of 4 steps);
    # the input dropout keeps the recipe's constant rate
    scheduled = [sorted({p for p in step.values() if p != 0.2}) for step in rank0]
    assert scheduled == [[pytest.approx(0.3 * s / 4)] for s in range(4)], rank0
    assert "train/schedule/" in next(tmp_path.glob("logs/**/metrics.csv")).read_text().splitlines()[0]


@pytest.mark.parametrize("backend", [
    "aot_eager",  # AOTAutograd + functionalized RNG, no code generation: quick
    pytest.param("inductor", marks=pytest.mark.slow),  # torch.compile's default: C++ code generation on CPU
])
def test_ddp_with_compile_keeps_one_graph_under_a_rate_schedule(tmp_path: Path, backend: str) -> None:
    """DDP + torch.compile on 2 CPU processes (issue #27; pytorch/pytorch#196227: DDP + compile crashing
    on recompiled stochastic blocks): the scheduled dropout rate changes every step, yet nothing
    recompiles (the rate is a tensor buffer, not a Python float guarded by dynamo), both processes see
    the same rates, and the run ends with a checkpoint. Validation is off: its no_grad pass is a second
    graph by design (dynamo guards on grad mode), which would read as a recompile here."""
    (tmp_path / "rate_probe.py").write_text(RATE_PROBE)
    proc = run_regkit(
        "fit", "--config", str(RECIPES / "mlp_dropout.yaml"), *QUIET,
        "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp",
        "--model.init_args.compile", f"{{backend: {backend}, fullgraph: true}}",
        "--model.init_args.network.dropout", "{name: dropout, p: {schedule: linear, start: 0.0, end: 0.3}}",
        "--trainer.callbacks+", "rate_probe.Rates", "--trainer.max_steps", "4", "--trainer.log_every_n_steps", "1",
        "--data.init_args.limit_train", "1024", "--trainer.limit_val_batches", "0", "--test_after_fit", "false",
        timeout=900, env={"PYTHONPATH": with_pythonpath(tmp_path), "TORCH_LOGS": "recompiles"},
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "compile" in proc.stdout  # the run summary names the switch
    assert "Recompiling" not in proc.stderr, proc.stderr[-4000:]
    import json

    rank0, rank1 = (json.loads((tmp_path / f"rates-{r}.json").read_text()) for r in (0, 1))
    assert rank0 == rank1 and len(rank0) == 4
    assert len({p for step in rank0 for p in step.values()}) > 2  # the rate did change between steps
    ckpt = torch.load(next(tmp_path.glob("logs/**/checkpoints/last.ckpt")), weights_only=True)
    assert ckpt["global_step"] == 4
