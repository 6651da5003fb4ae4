"""regkit's self-attention (fused SDPA, attention-dropout as dropout_p) vs a naive
softmax(QKᵀ)V + nn.Dropout block with the same projections: forward+backward in training mode,
time and peak memory, sequence lengths 128 / 512 / 1024, in one run.

    python benchmarks/bench_attention.py            # markdown table
    python benchmarks/bench_attention.py --quick    # 128 / 512 only, fewer repeats

The issue's case is attention-dropout p = 0.1 in training mode. Rows marked "p=0" (full run only)
show the same blocks with attention-dropout off, where PyTorch's CPU SDPA has a fused (flash)
kernel; with dropout on, CPU SDPA runs its math path, which does what the naive block does.

Peak memory is the most memory allocated at once during one forward+backward, above what was
allocated before it: ``torch.cuda.max_memory_allocated`` on CUDA; on CPU the allocation events of
the torch profiler (``profile_memory=True``) summed in time order.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Callable

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_info, measure_interleaved, print_table, row  # noqa: E402

from regkit.components.attention import MultiHeadSelfAttention  # noqa: E402

BENCH = "self-attention fwd+bwd"


class NaiveSelfAttention(nn.Module):
    """The textbook block: scores materialized, softmax, nn.Dropout on the weights, then V."""

    def __init__(self, block: MultiHeadSelfAttention) -> None:
        super().__init__()
        self.num_heads = block.num_heads
        self.in_proj, self.out_proj = block.in_proj, block.out_proj  # same weights as regkit's
        self.dropout = nn.Dropout(block.attn_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        N, L, E = x.shape
        q, k, v = self.in_proj(x).view(N, L, 3, self.num_heads, E // self.num_heads).permute(2, 0, 3, 1, 4)
        weights = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(-1)
        out = self.dropout(weights) @ v
        return self.out_proj(out.transpose(1, 2).reshape(N, L, E))


def peak_memory_bytes(fn: Callable[[], None], device: torch.device) -> int:
    """Peak bytes allocated during ``fn`` above the level before it."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    current = peak = 0
    for e in sorted(events, key=lambda e: e.start_ns()):
        current += e.nbytes()
        peak = max(peak, current)
    return peak


def run(quick: bool = False) -> list[dict]:
    torch.manual_seed(0)
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    dtype = torch.bfloat16 if cuda else torch.float32  # flash kernels need half precision
    batch, embed, heads = (8, 512, 8) if cuda else (2, 256, 8)
    lengths = [128, 512] if quick else [128, 512, 1024]
    rates = [0.1] if quick else [0.1, 0.0]
    repeats = 3 if quick else 5
    baseline = "naive softmax(QK^T)V + nn.Dropout"
    memory_note = "torch.cuda.max_memory_allocated" if cuda else "CPU allocations (torch profiler)"
    rows = []
    for p in rates:
        block = MultiHeadSelfAttention(embed, heads, attn_dropout=p).to(device, dtype).train()
        naive = NaiveSelfAttention(block).to(device, dtype).train()
        where = f"{device.type}, {str(dtype).replace('torch.', '')}, N={batch} E={embed} H={heads}, p={p}"
        if p == rates[0]:  # same function: identical outputs with dropout off
            x = torch.randn(2, 16, embed, device=device, dtype=dtype)
            block.eval(), naive.eval()
            tol = 2e-2 if cuda else 1e-5
            torch.testing.assert_close(block(x), naive(x), atol=tol, rtol=tol)
            block.train(), naive.train()
        for L in lengths:
            x = torch.randn(batch, L, embed, device=device, dtype=dtype, requires_grad=True)

            def step(module: nn.Module) -> Callable[[], None]:
                def fn() -> None:
                    module(x).float().square().mean().backward()
                    x.grad = None
                    for param in module.parameters():
                        param.grad = None

                return fn

            case = f"L={L} ({where})"
            times = measure_interleaved({"regkit": step(block), "naive": step(naive)}, repeats=repeats, warmup=2)
            (t_fast, s_fast), (t_naive, _) = times["regkit"], times["naive"]
            note = "" if p > 0 else "dropout off: fused CPU kernel" if not cuda else "dropout off"
            rows.append(row(BENCH, case, "ms/step", t_fast, s_fast, baseline, t_naive, note=note, repeats=repeats))
            m_fast = peak_memory_bytes(step(block), device) / 2**20
            m_naive = peak_memory_bytes(step(naive), device) / 2**20
            rows.append(row(BENCH, case, "peak MiB", m_fast, 0.0, baseline, m_naive, note=memory_note))
    return rows


if __name__ == "__main__":
    for key, value in machine_info().items():
        print(f"- {key}: {value}")
    print()
    print_table(run(quick="--quick" in sys.argv))
