"""Timing helpers shared by the benchmarks: warmup, median of repeats, spread, markdown tables.

Conventions every ``bench_*.py`` follows (``benchmarks/run.py`` relies on them):

* ``run(quick: bool = False) -> list[dict]`` returns rows made by :func:`row`;
* a figure is the median over repeats, its spread the interquartile range (IQR) of the repeats;
* a baseline is measured in the same process and run, interleaved with the candidate where the
  benchmark can (:func:`measure_interleaved`), so that load from other processes on a shared
  machine hits both alike;
* ``ratio`` is the speed-up over the baseline (``baseline / value`` for times, > 1 = faster than
  the baseline); the tables also show ``value / baseline`` (for times: the cost ratio, < 1 = faster).
"""
from __future__ import annotations

import datetime
import os
import platform
import statistics
import time
from typing import Any, Callable

import torch


def _sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def median_iqr(samples: list[float]) -> tuple[float, float]:
    """Median and interquartile range of ``samples`` (IQR 0 for a single sample)."""
    if not samples:
        raise ValueError("no samples")
    if len(samples) < 2:
        return samples[0], 0.0
    q = statistics.quantiles(sorted(samples), n=4, method="inclusive")
    return statistics.median(samples), q[2] - q[0]


def measure(fn: Callable[[], Any], repeats: int = 7, warmup: int = 2, inner: int = 1) -> tuple[float, float]:
    """Median and interquartile range, in milliseconds per call, of ``inner`` calls of ``fn``."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        _sync()
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        _sync()
        samples.append((time.perf_counter() - start) * 1000 / inner)
    return median_iqr(samples)


def measure_interleaved(
    fns: dict[str, Callable[[], Any]], repeats: int = 7, warmup: int = 1, inner: int = 1
) -> dict[str, tuple[float, float]]:
    """Like :func:`measure` for several functions, run in turns (A B C A B C ...) so that a burst of
    load from elsewhere on the machine slows every case, not just the one running at the time.

    Returns ``{name: (median_ms, iqr_ms)}``.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            _sync()
            start = time.perf_counter()
            for _ in range(inner):
                fn()
            _sync()
            samples[name].append((time.perf_counter() - start) * 1000 / inner)
    return {name: median_iqr(s) for name, s in samples.items()}


def row(benchmark: str, case: str, metric: str, value: float, spread: float,
        baseline: str = "", baseline_value: float | None = None, higher_is_better: bool = False,
        **extra: Any) -> dict:
    """One result; ``ratio`` is the speed-up over the baseline (>1 is better) when there is one.

    ``extra`` keys (e.g. ``note``, ``repeats``) are kept in the row and shown by the tables.
    """
    ratio = None
    if baseline_value:
        ratio = value / baseline_value if higher_is_better else baseline_value / value
    return {"benchmark": benchmark, "case": case, "metric": metric, "value": value, "spread": spread,
            "baseline": baseline, "baseline_value": baseline_value, "ratio": ratio, **extra}


def _fmt(x: float | None, digits: int = 3) -> str:
    if x is None:
        return ""
    if x != 0 and (abs(x) >= 10 ** digits or abs(x) < 10 ** -(digits - 1)):
        return f"{x:.{digits - 1}e}"
    return f"{x:.{digits}g}"


def markdown_table(rows: list[dict]) -> str:
    """Rows as a markdown table: median ± IQR, the baseline, value/baseline and the speed-up."""
    head = ("| benchmark | case | metric | value (median ± IQR) | baseline | baseline value "
            "| value / baseline | speed-up (>1 = faster) | note |\n")
    head += "|---|---|---|---|---|---|---|---|---|\n"
    lines = []
    for r in rows:
        base_value = r.get("baseline_value")
        over = r["value"] / base_value if base_value else None
        ratio = f"{r['ratio']:.3f}×" if r.get("ratio") is not None else ""
        lines.append(
            f"| {r['benchmark']} | {r['case']} | {r['metric']} | {_fmt(r['value'])} ± {_fmt(r['spread'], 2)} "
            f"| {r.get('baseline', '')} | {_fmt(base_value)} | {'' if over is None else f'{over:.3f}'} "
            f"| {ratio} | {r.get('note', '')} |"
        )
    return head + "\n".join(lines) + "\n"


def cpu_model() -> str:
    """The CPU's marketing name (from /proc/cpuinfo on Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> str:
    """The CPU's vector and bf16 instruction-set flags that decide bf16 speed (from /proc/cpuinfo)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next(line for line in f if line.startswith("flags")).split()
    except (OSError, StopIteration):
        return "?"
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")
    return " ".join(f for f in wanted if f in flags) or "none of avx2/avx512/amx"


def machine_info() -> dict[str, str]:
    """What a reader needs to compare figures: CPU, cores, threads, GPU, OS and library versions."""
    import lightning

    info = {
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "cpu": cpu_model(),
        "cpu flags (vector / bf16)": cpu_flags(),
        "cores (os.cpu_count)": str(os.cpu_count()),
        "cores usable (sched_getaffinity)": str(len(os.sched_getaffinity(0))) if hasattr(os, "sched_getaffinity") else "?",
        "torch threads": str(torch.get_num_threads()),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": lightning.__version__,
    }
    try:
        import regkit

        info["regkit"] = regkit.__version__
    except ImportError:
        pass
    try:
        info["load average (1/5/15 min)"] = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        pass
    return info


def print_table(rows: list[dict]) -> None:
    """What a ``bench_*.py`` prints when run standalone."""
    print(markdown_table(rows))
