"""Timing helpers shared by the benchmarks: warmup, median of repeats, spread, markdown tables."""
from __future__ import annotations

import statistics
import time
from typing import Any, Callable

import torch


def measure(fn: Callable[[], Any], repeats: int = 7, warmup: int = 2, inner: int = 1) -> tuple[float, float]:
    """Median and interquartile range, in milliseconds per call, of ``inner`` calls of ``fn``."""
    for _ in range(warmup):
        fn()
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    samples = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        sync()
        samples.append((time.perf_counter() - start) * 1000 / inner)
    samples.sort()
    q = statistics.quantiles(samples, n=4) if len(samples) >= 2 else [samples[0]] * 3
    return statistics.median(samples), q[2] - q[0]


def row(benchmark: str, case: str, metric: str, value: float, spread: float,
        baseline: str = "", baseline_value: float | None = None, higher_is_better: bool = False) -> dict:
    """One result; ``ratio`` is the speed-up over the baseline (>1 is better) when there is one."""
    ratio = None
    if baseline_value:
        ratio = value / baseline_value if higher_is_better else baseline_value / value
    return {"benchmark": benchmark, "case": case, "metric": metric, "value": value, "spread": spread,
            "baseline": baseline, "baseline_value": baseline_value, "ratio": ratio}


def markdown_table(rows: list[dict]) -> str:
    head = "| benchmark | case | metric | value (median ± IQR) | baseline | baseline value | ratio |\n"
    head += "|---|---|---|---|---|---|---|\n"
    lines = []
    for r in rows:
        base = f"{r['baseline_value']:.3g}" if r.get("baseline_value") is not None else ""
        ratio = f"{r['ratio']:.2f}×" if r.get("ratio") is not None else ""
        lines.append(f"| {r['benchmark']} | {r['case']} | {r['metric']} | {r['value']:.3g} ± {r['spread']:.2g} "
                     f"| {r.get('baseline', '')} | {base} | {ratio} |")
    return head + "\n".join(lines) + "\n"
