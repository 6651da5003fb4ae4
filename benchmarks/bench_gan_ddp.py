"""GAN gradient averaging under DDP: one flat all-reduce after each backward (what ``regkit.tasks.GAN``
does) vs DistributedDataParallel's own bucketed reduction overlapped with the backward pass.

Two CPU processes (gloo), the recipe's DCGAN (``recipes/gan.yaml``: G width 32 with batch norm, D
width 32 with dropout 0.3, latent 64, batch 64 per process, non-saturating loss, Adam). One step is
a D step and a G step, each network's parameters alone requiring gradients during its step (as
Lightning's ``toggle_optimizer`` does). Cases, interleaved in the same two processes:

* ``flat``: G and D in one DDP wrapper; each backward under ``no_sync()``; then the stepping
  network's gradients are concatenated into one buffer, all-reduced once, averaged and copied back.
* ``ddp buckets``: the same wrapper with ``find_unused_parameters=True`` (the other network's
  parameters get no gradient in each backward), so DDP's reducer all-reduces 25 MiB buckets as
  gradients become ready, overlapping communication with the rest of the backward.

Both start from the same weights and draw the same random numbers; the largest parameter
difference between them after the timed steps is reported (they must agree to float precision).
"""
from __future__ import annotations

import os
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import median_iqr, print_table, row  # noqa: E402

BENCHMARK = "gan_ddp"
BATCH = 64
WORLD = 2


class Pair(torch.nn.Module):
    """G and D in one module, as Lightning wraps the whole task in one DDP."""

    def __init__(self) -> None:
        super().__init__()
        from regkit.registry import DiscriminatorSpec, GanLossSpec, GeneratorSpec

        self.g = GeneratorSpec.parse({"name": "dcgan_generator", "latent_dim": 64, "width": 32,
                                      "norm": "batch_norm", "activation": "relu"}).build()
        self.d = DiscriminatorSpec.parse({"name": "dcgan_discriminator", "width": 32,
                                          "dropout": {"name": "dropout", "p": 0.3}}).build()
        self.loss = GanLossSpec.parse("non_saturating").build()

    def forward(self, which: str, real: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        n = real.shape[0]
        if which == "d":
            with torch.no_grad():
                fake = self.g(z)
            logits = self.d(torch.cat([real, fake]))
            return self.loss.d_loss(logits[:n], logits[n:])
        return self.loss.g_loss(self.d(self.g(z)))


def average_flat(params: list[torch.nn.Parameter]) -> None:
    """The GAN task's averaging: one all-reduce over all gradients concatenated."""
    import torch.distributed as dist

    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    for p, synced in zip(params, flat.split([g.numel() for g in grads])):
        p.grad = synced.view_as(p)


def step(model: Any, pair: Pair, opts: dict[str, torch.optim.Optimizer], real: torch.Tensor, flat: bool) -> None:
    for which in ("d", "g"):
        net = pair.d if which == "d" else pair.g
        other = pair.g if which == "d" else pair.d
        other.requires_grad_(False)  # toggle_optimizer
        z = torch.randn(real.shape[0], 64)
        opts[which].zero_grad(set_to_none=True)
        if flat:
            with model.no_sync():
                model(which, real, z).backward()
            average_flat(list(net.parameters()))
        else:
            model(which, real, z).backward()
        opts[which].step()
        other.requires_grad_(True)


def worker(rank: int, port: int, steps: int, warmup: int, repeats: int, out: str) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    torch.manual_seed(0)
    init = Pair().state_dict()
    cases = {}
    for name, find_unused in (("flat", False), ("ddp buckets", True)):
        pair = Pair()
        pair.load_state_dict(init)
        model = DDP(pair, find_unused_parameters=find_unused)
        opts = {k: torch.optim.Adam(getattr(pair, k).parameters(), lr=5e-4, betas=(0.5, 0.999)) for k in "dg"}
        cases[name] = (model, pair, opts)
    real = torch.rand(BATCH, 1, 28, 28) * 2 - 1
    times: dict[str, list[float]] = {k: [] for k in cases}
    for r in range(repeats + 1):
        for name, (model, pair, opts) in cases.items():
            torch.manual_seed(1000 * r + rank)
            for _ in range(warmup):
                step(model, pair, opts, real, name == "flat")
            dist.barrier()
            start = time.perf_counter()
            for _ in range(steps):
                step(model, pair, opts, real, name == "flat")
            dist.barrier()
            if r:  # the first round warms both up
                times[name].append((time.perf_counter() - start) * 1000 / steps)
    a, b = (dict(cases[k][1].named_parameters()) for k in cases)
    diff = max((a[k] - b[k]).abs().max().item() for k in a)
    if rank == 0:
        torch.save({"times": times, "diff": diff}, out)
    dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(quick: bool = False) -> list[dict]:
    import torch.multiprocessing as mp

    steps, warmup, repeats = (5, 2, 2) if quick else (10, 2, 5)
    out = os.path.join(tempfile.mkdtemp(prefix="regkit-bench-gan-ddp-"), "result.pt")
    mp.spawn(worker, args=(free_port(), steps, warmup, repeats, out), nprocs=WORLD, join=True)
    result = torch.load(out)
    flat, flat_iqr = median_iqr(result["times"]["flat"])
    rows = [row(BENCHMARK, "flat all-reduce after each backward (regkit GAN)", "ms/step", flat, flat_iqr,
                note=f"{WORLD} CPU processes (gloo, 1 thread each), DCGAN of recipes/gan.yaml, batch {BATCH}/process, "
                f"median of {repeats} x {steps} steps (D + G)")]
    ddp, ddp_iqr = median_iqr(result["times"]["ddp buckets"])
    rows.append(row(BENCHMARK, "DDP bucketed reduction (find_unused_parameters=True)", "ms/step", ddp, ddp_iqr,
                    "flat all-reduce", flat, note=f"max abs parameter difference vs flat: {result['diff']:.1e}"))
    return rows


if __name__ == "__main__":
    print_table(run(quick="--quick" in sys.argv))
