"""What a comparison reports: each run's final metrics, mean +- std per setting as a markdown table
and a CSV, and the picture (final metric per setting, validation curves with a band)."""
from __future__ import annotations

import csv
import math
import statistics
from pathlib import Path
from typing import Any

from regkit.cli.metrics_csv import per_epoch, read_metrics
from regkit.compare.grid import Run

PREFERRED_METRICS = ("test/acc", "test/ppl", "test/fid", "val/fid", "val/acc", "val/ppl", "val/loss")
LOWER_IS_BETTER = ("loss", "ppl", "fid", "err", "nll", "ece", "kid")


def final_values(rows: list[dict[str, float]]) -> dict[str, float]:
    """Each metric's value at the end of training: the mean of its values in the last epoch in
    which it was logged (one value for test and per-epoch metrics; the last epoch's mean for
    metrics logged every step)."""
    by_metric: dict[str, dict[float, list[float]]] = {}
    for row in rows:
        epoch = row.get("epoch", 0.0)
        for key, value in row.items():
            if key not in ("epoch", "step"):
                by_metric.setdefault(key, {}).setdefault(epoch, []).append(value)
    return {key: statistics.fmean(epochs[max(epochs)]) for key, epochs in by_metric.items()}


def choose_metrics(runs: list[Run], asked: list[str]) -> list[str]:
    available = {k for run in runs for k in run.result.get("final", {})}
    if asked:
        return asked
    for metric in PREFERRED_METRICS:
        if metric in available:
            return [metric]
    fids = sorted(k for k in available if k.startswith("val/") and "fid" in k.lower())
    if fids:
        return fids[:1]
    tests = sorted(k for k in available if k.startswith("test/"))
    return tests[:1] or sorted(available)[:1]


def mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarise(runs: list[Run], metrics: list[str]) -> list[dict[str, Any]]:
    """One row per setting (in grid order): n finished seeds, mean and std of each metric."""
    rows = []
    for setting in dict.fromkeys(run.setting for run in runs):
        done = [r for r in runs if r.setting == setting and r.result.get("status") == "ok"]
        row: dict[str, Any] = {"setting": setting, "n": len(done), "seeds": [r.seed for r in done]}
        for metric in metrics:
            values = [r.result["final"][metric] for r in done if metric in r.result.get("final", {})]
            row[metric] = mean_std(values) + (len(values),)
        row["wall_s"] = statistics.fmean([r.result["wall_s"] for r in done]) if done else math.nan
        rows.append(row)
    return rows


def fmt(value: float) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:.4g}" if abs(value) < 1000 else f"{value:.0f}"


def markdown_table(summary: list[dict[str, Any]], metrics: list[str]) -> str:
    header = "| setting | n | " + " | ".join(f"{m} (mean ± std)" for m in metrics) + " | wall s / run |"
    lines = [header, "|" + "---|" * (len(metrics) + 3)]
    for row in summary:
        cells = []
        for metric in metrics:
            mean, std, n = row[metric]
            cells.append("-" if not n else f"{fmt(mean)} ± {fmt(std)}" + ("" if n == row["n"] else f" (n={n})"))
        lines.append(f"| {row['setting']} | {row['n']} | " + " | ".join(cells) + f" | {fmt(row['wall_s'])} |")
    return "\n".join(lines)


def write_csv(runs: list[Run], path: Path) -> None:
    metric_names = sorted({k for run in runs for k in run.result.get("final", {})})
    keys = list(dict.fromkeys(k for run in runs for k in run.values))
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["setting", *keys, "seed", "status", "wall_s", "run_dir", *metric_names])
        for run in runs:
            final = run.result.get("final", {})
            writer.writerow(
                [run.setting, *(run.values.get(k, "") for k in keys), run.seed, run.result.get("status", "not run"),
                 run.result.get("wall_s", ""), str(run.run_dir), *(final.get(m, "") for m in metric_names)]
            )


def curve_metrics(runs: list[Run], metric: str, asked: list[str]) -> list[str]:
    """The metrics drawn per epoch: those asked for, else the ``val/`` twin of ``metric``."""
    if asked:
        return asked
    for name in (f"val/{metric.split('/', 1)[-1]}", metric):
        if any(name in r.result.get("final", {}) for r in runs):
            return [name]
    return []


def plot(runs: list[Run], summary: list[dict[str, Any]], metric: str, curve_names: list[str], path: Path,
         title: str) -> None:
    """Left: ``metric`` per setting, each seed a dot, mean +- std as an error bar. Right: each of
    ``curve_names`` per setting over epochs (one line style per metric), mean over seeds with a
    +- std band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [1, 1.3]})
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, row in enumerate(summary):
        color = colors[i % len(colors)]
        values = [r.result["final"][metric] for r in runs
                  if r.setting == row["setting"] and metric in r.result.get("final", {})]
        if values:
            left.scatter([i] * len(values), values, color=color, alpha=0.45, s=18)
            mean, std, _ = row[metric]
            left.errorbar([i], [mean], yerr=[std], color=color, marker="o", markersize=8, capsize=6, lw=2)
        done = [r for r in runs if r.setting == row["setting"] and r.result.get("metrics_csv")]
        tables = [read_metrics(r.run_dir / r.result["metrics_csv"]) for r in done]
        for curve_name, style in zip(curve_names, ("-", "--", ":", "-.")):
            curves = [c for c in (per_epoch(rows, curve_name) for rows in tables) if c]
            if not curves:
                continue
            xs = sorted(set.intersection(*(set(x for x, _ in c) for c in curves)))
            ys = [[dict(c)[x] for c in curves] for x in xs]
            means = [statistics.fmean(y) for y in ys]
            stds = [statistics.stdev(y) if len(y) > 1 else 0.0 for y in ys]
            name = f"{row['setting']}" + (f" {curve_name}" if len(curve_names) > 1 else "") + f" (n={len(curves)})"
            right.plot(xs, means, style, color=color, marker="." if len(xs) < 30 else None, label=name)
            right.fill_between(xs, [m - s for m, s in zip(means, stds)], [m + s for m, s in zip(means, stds)],
                               color=color, alpha=0.2)
    left.set_xticks(range(len(summary)))
    left.set_xticklabels([row["setting"] for row in summary], rotation=20, ha="right", fontsize=8)
    left.set_xlim(-0.5, len(summary) - 0.5)
    left.set_ylabel(metric)
    left.set_title(f"{metric}: seeds (dots), mean ± std")
    left.grid(alpha=0.3)
    if curve_names:
        from matplotlib.ticker import MaxNLocator

        right.xaxis.set_major_locator(MaxNLocator(integer=True))
        right.set_xlabel("epoch")
        right.set_ylabel(", ".join(curve_names))
        right.set_title(f"{' and '.join(curve_names)} per epoch: mean ± std over seeds")
        if any("ppl" in name for name in curve_names):
            right.set_yscale("log")
        right.grid(alpha=0.3)
        right.legend(fontsize=8)
    else:
        right.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
