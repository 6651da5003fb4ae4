"""``regkit compare``: one recipe under a grid of command-line overrides x seeds, each setting and
seed a real ``regkit fit`` in its own process and run folder, summarised as a CSV, a markdown table
(mean +- std over seeds) and a picture (final metric with error bars, validation curves with a band).

    regkit compare --config recipes/mlp_dropout.yaml \\
        --vary model.init_args.network.dropout.name=dropout,gaussian_dropout --seeds 3 \\
        --trainer.max_epochs 3

``--vary KEY=V1,V2`` (repeatable: the settings are the grid of all of them) becomes ``--KEY V`` on
each run's command line; ``null`` switches a slot off; ``--vary config=a.yaml,b.yaml`` lays a recipe
file over the base recipe per setting. Every option compare does not know is passed to each
``regkit fit`` unchanged. Finished runs are skipped, so a stopped comparison resumes where it was;
``--wandb-sweep FILE`` writes the same grid as a W&B sweep for ``wandb agent`` on many machines.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import itertools
import json
import math
import os
import re
import shlex
import signal
import shutil
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

RESULT_FILE = "compare.json"  # written into a run folder when its run has ended
RUNNING: set[subprocess.Popen] = set()  # the regkit fit processes now running, stopped with compare
STOPPING = threading.Event()  # set when compare itself is stopped (Ctrl-C, SIGTERM): its runs are interrupted
PREFERRED_METRICS = ("test/acc", "test/ppl", "test/fid", "val/fid", "val/acc", "val/ppl", "val/loss")
LOWER_IS_BETTER = ("loss", "ppl", "fid", "err", "nll", "ece", "kid")

USAGE = """\
regkit compare --config RECIPE [--vary KEY=V1,V2 ...] [--seeds N] [options] [regkit fit options]

Runs RECIPE once per (setting, seed), each a `regkit fit` in its own run folder under --out, and
writes results.csv, summary.md and summary.png there. Options not listed below go to every run."""


@dataclass
class Run:
    """One (setting, seed): the overrides it adds to the shared command line, and where it runs."""

    setting: str
    values: dict[str, str]
    seed: int
    run_dir: Path
    result: dict[str, Any] = field(default_factory=dict)

    def fit_args(self, passthrough: list[str]) -> list[str]:
        """``passthrough`` with this run's ``--KEY VALUE`` overrides and seed after it; a varied
        ``config`` goes right after the base recipe instead, so later options still override it."""
        args = list(passthrough)
        if "config" in self.values:
            ends = [i + 2 for i, a in enumerate(args) if a == "--config"] + [
                i + 1 for i, a in enumerate(args) if a.startswith("--config=")]
            at = max(ends, default=0)
            args[at:at] = ["--config", self.values["config"]]
        for key, value in self.values.items():
            if key != "config":
                args += [f"--{key}", value]
        return args + ["--seed_everything", str(self.seed)]


def split_values(text: str) -> list[str]:
    """``a,b,[1,2],{p: 0.5, q: 1}`` -> ``['a', 'b', '[1,2]', '{p: 0.5, q: 1}']``: commas inside
    brackets, braces or quotes stay."""
    values, depth, quote, current = [], 0, "", ""
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "[{(":
            depth += 1
        elif char in "]})":
            depth -= 1
        elif char == "," and depth == 0:
            values.append(current.strip())
            current = ""
            continue
        current += char
    values.append(current.strip())
    return [v for v in values if v]


def parse_vary(specs: list[str]) -> dict[str, list[str]]:
    """``['KEY=V1,V2', ...]`` -> ``{KEY: [V1, V2], ...}`` (KEY may start with ``--``)."""
    grid: dict[str, list[str]] = {}
    for spec in specs:
        key, sep, values = spec.partition("=")
        key = key.strip().lstrip("-")
        if not sep or not key or not split_values(values):
            raise SystemExit(f"regkit compare: --vary wants KEY=V1,V2,..., got {spec!r}")
        if key in grid:
            raise SystemExit(f"regkit compare: --vary {key} is given twice")
        grid[key] = split_values(values)
    return grid


def short_keys(keys: list[str]) -> dict[str, str]:
    """The shortest dotted suffix naming each key uniquely, at least two parts when the last is a
    generic word (``...dropout.name`` -> ``dropout.name``, ``...init_args.lr`` -> ``lr``)."""
    generic = {"name", "p", "class_path", "init_args", "value"}
    short = {}
    for key in keys:
        parts = key.split(".")
        n = 2 if parts[-1] in generic and len(parts) > 1 else 1
        while n < len(parts) and any(o != key and o.split(".")[-n:] == parts[-n:] for o in keys):
            n += 1
        if parts[-n:-n + 1] == ["init_args"] and n < len(parts):
            n += 1
        short[key] = ".".join(parts[-n:])
    return short


def setting_label(values: dict[str, str], short: dict[str, str]) -> str:
    def show(key: str, value: str) -> str:
        return Path(value).stem if key == "config" else value

    return ",".join(f"{short[k]}={show(k, v)}" for k, v in values.items()) or "recipe"


def folder_name(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=,+-]+", "_", label)[:120]


def parse_seeds(text: str) -> list[int]:
    """``3`` -> ``[0, 1, 2]``; ``1,5`` -> ``[1, 5]``."""
    if "," in text:
        return [int(s) for s in text.split(",") if s]
    return list(range(int(text)))


def plan_runs(grid: dict[str, list[str]], seeds: list[int], out: Path) -> list[Run]:
    short = short_keys(list(grid))
    runs = []
    settings = [dict(zip(grid, combo)) for combo in itertools.product(*grid.values())] if grid else [{}]
    for seed in seeds:  # seed by seed, so a comparison stopped early has every setting at n seeds
        for values in settings:
            label = setting_label(values, short)
            runs.append(Run(label, values, seed, out / "runs" / folder_name(label) / f"seed{seed}"))
    return runs


# ---------------------------------------------------------------- metrics.csv of a finished run


def find_metrics_csv(run_dir: Path) -> Optional[Path]:
    """The run folder's ``metrics.csv`` (Lightning's CSVLogger), the newest if there are several."""
    found = sorted(run_dir.rglob("metrics.csv"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def read_metrics(path: Path) -> list[dict[str, float]]:
    """Rows of a CSVLogger ``metrics.csv`` with the empty cells left out."""
    rows = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            parsed = {}
            for key, value in row.items():
                if value not in ("", None):
                    try:
                        parsed[key] = float(value)
                    except ValueError:
                        pass
            rows.append(parsed)
    return rows


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


def curve(rows: list[dict[str, float]], metric: str) -> list[tuple[float, float]]:
    """``(epoch, value)`` for each epoch in which ``metric`` was logged (its mean in that epoch)."""
    per_epoch: dict[float, list[float]] = {}
    for row in rows:
        if metric in row:
            per_epoch.setdefault(row.get("epoch", 0.0) + 1, []).append(row[metric])
    return sorted((epoch, statistics.fmean(values)) for epoch, values in per_epoch.items())


# ---------------------------------------------------------------- running


def fit_command(run: Run, passthrough: list[str]) -> list[str]:
    return [sys.executable, "-m", "regkit", "fit", *run.fit_args(passthrough), "--run_dir", str(run.run_dir)]


def identity(run: Run, passthrough: list[str]) -> dict[str, Any]:
    """What makes a finished run reusable: its ``regkit fit`` arguments and the content of its
    recipe files (an edited recipe is a different run)."""
    args = run.fit_args(passthrough)
    configs = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "--config"]
    configs += [a.split("=", 1)[1] for a in args if a.startswith("--config=")]
    digests = {}
    for config in configs:
        try:
            digests[config] = hashlib.sha256(Path(config).read_bytes()).hexdigest()[:16]
        except OSError:
            digests[config] = None
    return {"command": ["regkit", "fit", *args], "recipes": digests}


def same_run(result: dict[str, Any], run: Run, passthrough: list[str]) -> bool:
    wanted = identity(run, passthrough)
    return result.get("command") == wanted["command"] and result.get("recipes", wanted["recipes"]) == wanted["recipes"]


def load_result(run: Run) -> dict[str, Any]:
    try:
        return json.loads((run.run_dir / RESULT_FILE).read_text())
    except (OSError, ValueError):
        return {}


def execute(run: Run, passthrough: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run one ``regkit fit`` from a fresh folder, its output in ``<run_dir>/compare.log``; record
    the outcome and final metrics in ``<run_dir>/compare.json``."""
    previous = load_result(run)
    if previous.get("status") == "ok" and same_run(previous, run, passthrough):
        return previous  # finished meanwhile by another compare on the same folder
    if run.run_dir.exists():
        shutil.rmtree(run.run_dir)  # an unfinished attempt: start it again from scratch
    run.run_dir.mkdir(parents=True)
    command = fit_command(run, passthrough)
    start = time.time()
    with open(run.run_dir / "compare.log", "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        RUNNING.add(process)
        returncode = process.wait()
        RUNNING.discard(process)
    result: dict[str, Any] = {
        "setting": run.setting,
        "values": run.values,
        "seed": run.seed,
        **identity(run, passthrough),
        "status": "ok" if returncode == 0 else "interrupted" if STOPPING.is_set() else "failed",
        "returncode": returncode,
        "wall_s": round(time.time() - start, 1),
    }
    metrics_csv = find_metrics_csv(run.run_dir)
    if metrics_csv is not None:
        result["metrics_csv"] = str(metrics_csv.relative_to(run.run_dir))
        result["final"] = final_values(read_metrics(metrics_csv))
    elif returncode == 0:
        result["status"] = "failed"
        result["error"] = "the run wrote no metrics.csv (fast_dev_run turns loggers off)"
    (run.run_dir / RESULT_FILE).write_text(json.dumps(result, indent=1))
    return result


def log_tail(run: Run, lines: int = 15) -> str:
    """The last lines of a run's output (progress-bar redraws split into lines)."""
    try:
        text = (run.run_dir / "compare.log").read_text(errors="replace")
    except OSError:
        return ""
    kept = [line for line in text.replace("\r", "\n").splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


class Stopped(Exception):
    """compare got SIGTERM (``kill``, a scheduler's time limit): handled like Ctrl-C."""


def _stop_on_sigterm(*_: Any) -> None:
    raise Stopped


def run_all(runs: list[Run], passthrough: list[str], jobs: int) -> None:
    """Run every run that has not finished yet, ``jobs`` at a time, with a progress bar over runs."""
    from tqdm import tqdm

    STOPPING.clear()  # a stop of an earlier call in this process does not mark this call's failures

    todo = []
    for run in runs:
        previous = load_result(run)
        if previous.get("status") == "ok":
            if not same_run(previous, run, passthrough):
                raise SystemExit(
                    f"regkit compare: {run.run_dir} holds a finished run made with another command or "
                    "another version of its recipe file:\n  " + " ".join(previous.get("command", []))
                    + "\nuse another --out (or delete that folder) to compare with the new options"
                )
            run.result = previous
        else:
            todo.append(run)
    env = dict(os.environ)
    if jobs > 1 and "OMP_NUM_THREADS" not in env:  # share the cores instead of oversubscribing them
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // jobs))
    bar = tqdm(total=len(runs), initial=len(runs) - len(todo), unit="run", desc="regkit compare", file=sys.stderr)
    pool = ThreadPoolExecutor(max_workers=jobs)
    try:
        futures = {pool.submit(execute, run, passthrough, env): run for run in todo}
        for future in as_completed(futures):
            run = futures[future]
            run.result = future.result()
            if run.result["status"] != "ok":
                bar.write(
                    f"FAILED {run.setting} seed {run.seed} (exit {run.result['returncode']}); "
                    f"log: {run.run_dir / 'compare.log'}\n{log_tail(run)}"
                )
            bar.set_postfix_str(f"last: {run.setting} seed {run.seed} {run.result['wall_s']:.0f}s")
            bar.update()
    except BaseException:  # Ctrl-C or SIGTERM: stop the runs too; they start afresh on the next call
        STOPPING.set()
        pool.shutdown(wait=False, cancel_futures=True)
        for process in list(RUNNING):
            process.kill()
        raise
    pool.shutdown()
    bar.close()


# ---------------------------------------------------------------- summary


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
            curves = [c for c in (curve(rows, curve_name) for rows in tables) if c]
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


# ---------------------------------------------------------------- W&B sweep


def sweep_config(grid: dict[str, list[str]], seeds: list[int], passthrough: list[str], metric: str,
                 name: str) -> dict[str, Any]:
    """The same grid as a W&B grid sweep: ``wandb sweep FILE`` then ``wandb agent ID`` on each
    machine; the agent runs ``regkit fit <options> --KEY=VALUE ...`` per (setting, seed)."""
    import yaml

    def value(text: str) -> Any:
        parsed = yaml.safe_load(text)
        # the agent writes --KEY=VALUE with Python's str(): keep null and structures as recipe text
        return parsed if isinstance(parsed, (str, int, float, bool)) else text

    configs, rest, i = [], [], 0
    while i < len(passthrough):
        if passthrough[i] == "--config" and i + 1 < len(passthrough):
            configs += passthrough[i:i + 2]
            i += 2
            continue
        (configs if passthrough[i].startswith("--config=") else rest).append(passthrough[i])
        i += 1
    parameters = {key: {"values": [value(v) for v in values]} for key, values in grid.items()}
    parameters["seed_everything"] = {"values": seeds}
    goal = "minimize" if any(word in metric for word in LOWER_IS_BETTER) else "maximize"
    return {
        "name": name,
        "method": "grid",
        "metric": {"name": metric, "goal": goal},
        "parameters": parameters,
        # the recipe first, then the grid point (a varied recipe file overrides the base recipe),
        # then the other options (which override both), as each `regkit compare` run has them
        "command": ["regkit", "fit", *configs, "${args}", *rest],
    }


# ---------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="regkit compare", usage=USAGE, allow_abbrev=False,
        epilog="Example: regkit compare --config recipes/mlp_dropout.yaml "
        "--vary model.init_args.network.dropout.name=dropout,gaussian_dropout --seeds 3 --trainer.max_epochs 3",
    )
    parser.add_argument("--vary", action="append", default=[], metavar="KEY=V1,V2",
                        help="values of one recipe key (repeat for a grid; null switches a slot off; "
                        "config=a.yaml,b.yaml lays a recipe file over the base recipe)")
    parser.add_argument("--seeds", default="3", help="N (seeds 0..N-1) or a list 0,5,7 (default 3)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at the same time (default 1)")
    parser.add_argument("--out", help="output folder (default runs/compare/<recipe name>)")
    parser.add_argument("--metric", action="append", default=[],
                        help="metric(s) for the table, the first also for the picture (default: test/acc, "
                        "test/ppl or the FID, whichever the runs log)")
    parser.add_argument("--curve", action="append", default=[],
                        help="per-epoch metric(s) for the curves (default: the val/ twin of --metric)")
    parser.add_argument("--title", help="title of the picture and table")
    parser.add_argument("--wandb-sweep", metavar="FILE", help="write the grid as a W&B sweep file and stop")
    parser.add_argument("--dry-run", action="store_true", help="print the runs' commands and stop")
    parser.add_argument("--report", action="store_true",
                        help="only write results.csv, summary.md and summary.png from the finished runs")
    return parser


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """compare's own options, and the rest (passed to every ``regkit fit``)."""
    return build_parser().parse_known_args(argv)


def recipe_name(passthrough: list[str]) -> str:
    configs = [passthrough[i + 1] for i, a in enumerate(passthrough[:-1]) if a == "--config"]
    configs += [a.split("=", 1)[1] for a in passthrough if a.startswith("--config=")]
    return Path(configs[0]).stem if configs else "recipe"


def main(argv: list[str]) -> int:
    options, passthrough = parse_args(argv)
    if options.jobs < 1:
        raise SystemExit("regkit compare: --jobs must be >= 1")
    if any(a in ("fit", "validate", "test", "predict") for a in passthrough[:1]):
        passthrough = passthrough[1:]  # `regkit compare fit --config ...` reads the same
    grid = parse_vary(options.vary)
    seeds = parse_seeds(options.seeds)
    name = recipe_name(passthrough)
    out = Path(options.out or Path("runs", "compare", name))
    runs = plan_runs(grid, seeds, out)
    if options.wandb_sweep:
        import yaml

        config = sweep_config(grid, seeds, passthrough, (options.metric or ["val/loss"])[0], name)
        Path(options.wandb_sweep).write_text(yaml.safe_dump(config, sort_keys=False))
        print(f"wrote {options.wandb_sweep}: {len(runs)} runs; start it with\n"
              f"  wandb sweep {options.wandb_sweep}    # prints the sweep id\n"
              f"  wandb agent ENTITY/PROJECT/SWEEP_ID  # on each machine, as often as you like")
        return 0
    if options.dry_run:
        for run in runs:
            print("regkit " + shlex.join(fit_command(run, passthrough)[3:]))
        return 0
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    if options.report:
        for run in runs:
            result = load_result(run)
            run.result = result if same_run(result, run, passthrough) else {}
    else:
        previous = signal.signal(signal.SIGTERM, _stop_on_sigterm)  # so that the runs stop as well
        try:
            run_all(runs, passthrough, options.jobs)
        except (KeyboardInterrupt, Stopped) as stop:
            finished = sum(load_result(run).get("status") == "ok" for run in runs)
            print(f"\nregkit compare: stopped with {finished} of {len(runs)} runs finished; the same command "
                  "continues (the unfinished runs start again from their beginning)", file=sys.stderr)
            return 143 if isinstance(stop, Stopped) else 130
        finally:
            signal.signal(signal.SIGTERM, previous)
    metrics = choose_metrics(runs, options.metric)
    summary = summarise(runs, metrics)
    title = options.title or f"regkit compare {name}: {len(summary)} settings x {len(seeds)} seeds"
    command = "regkit compare " + " ".join(argv)
    table = markdown_table(summary, metrics)
    (out / "summary.md").write_text(f"# {title}\n\n{table}\n\n`{command}`\n")
    write_csv(runs, out / "results.csv")
    (out / "results.json").write_text(json.dumps([run.result for run in runs if run.result], indent=1))
    if metrics:
        plot(runs, summary, metrics[0], curve_metrics(runs, metrics[0], options.curve), out / "summary.png", title)
    failed = [r for r in runs if r.result.get("status") != "ok"]
    print(f"\n{table}\n")
    print(f"{len(runs) - len(failed)}/{len(runs)} runs finished ({time.time() - started:.0f} s this time); "
          f"results in {out}/: results.csv, summary.md, summary.png, runs/")
    return 1 if failed else 0
