"""Running a comparison's runs: each a ``regkit fit`` process in its own folder, ``jobs`` at a time,
finished ones kept (a stopped comparison resumes), the outcome of each in ``<run>/compare.json``.

A :class:`Runner` is one call of ``regkit compare``: it owns the processes it started and knows
whether it was stopped (Ctrl-C, SIGTERM), so nothing is shared between two calls in one process.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Iterator, Optional

from regkit.compare.grid import Run
from regkit.compare.results import final_values
from regkit.cli.commands import option_values
from regkit.cli.metrics_csv import read_metrics

RESULT_FILE = "compare.json"  # written into a run folder when its run has ended


def find_metrics_csv(run_dir: Path) -> Optional[Path]:
    """The run folder's ``metrics.csv`` (Lightning's CSVLogger), the newest if there are several."""
    found = sorted(run_dir.rglob("metrics.csv"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def fit_command(run: Run, passthrough: list[str], plugins: list[str] = []) -> list[str]:
    """The run's command line: ``--plugins`` of compare's own command line, then ``fit``."""
    options = ["--plugins", ",".join(plugins)] if plugins else []
    return [sys.executable, "-m", "regkit", *options, "fit", *run.fit_args(passthrough), "--run_dir", str(run.run_dir)]


def identity(run: Run, passthrough: list[str]) -> dict[str, Any]:
    """What makes a finished run reusable: its ``regkit fit`` arguments and the content of its
    recipe files (an edited recipe is a different run)."""
    args = run.fit_args(passthrough)
    digests: dict[str, Optional[str]] = {}
    for config in option_values(args, "--config"):
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


class Runner:
    """Runs one comparison's runs, ``jobs`` at a time, each ``regkit fit`` with ``passthrough`` (and
    ``--plugins``); stopped (Ctrl-C, or SIGTERM inside :meth:`stopped_by_sigterm`), it kills the runs
    it started and marks them interrupted."""

    def __init__(self, passthrough: list[str], jobs: int = 1, plugins: list[str] = []) -> None:
        self.passthrough = passthrough
        self.jobs = jobs
        self.plugins = list(plugins)
        self.running: set[subprocess.Popen] = set()  # the regkit fit processes now running
        self.stopping = threading.Event()  # set once this comparison is stopped
        self._lock = threading.Lock()

    def execute(self, run: Run, env: dict[str, str]) -> dict[str, Any]:
        """Run one ``regkit fit`` from a fresh folder, its output in ``<run_dir>/compare.log``; record
        the outcome and final metrics in ``<run_dir>/compare.json``."""
        previous = load_result(run)
        if previous.get("status") == "ok" and same_run(previous, run, self.passthrough):
            return previous  # finished meanwhile by another compare on the same folder
        if run.run_dir.exists():
            shutil.rmtree(run.run_dir)  # an unfinished attempt: start it again from scratch
        run.run_dir.mkdir(parents=True)
        command = fit_command(run, self.passthrough, self.plugins)
        start = time.time()
        with open(run.run_dir / "compare.log", "w") as log:
            with self._lock:
                if self.stopping.is_set():  # stopped while this run waited for its turn
                    return {"status": "interrupted"}
                process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
                self.running.add(process)
            returncode = process.wait()
            with self._lock:
                self.running.discard(process)
        result: dict[str, Any] = {
            "setting": run.setting,
            "values": run.values,
            "seed": run.seed,
            **identity(run, self.passthrough),
            "status": "ok" if returncode == 0 else "interrupted" if self.stopping.is_set() else "failed",
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

    def stop(self) -> None:
        """Mark the comparison stopped and kill the runs it started (they start afresh next time)."""
        with self._lock:
            self.stopping.set()
            for process in self.running:
                process.kill()

    @contextlib.contextmanager
    def stopped_by_sigterm(self) -> Iterator[None]:
        """Inside the block SIGTERM raises :class:`Stopped` (so :meth:`run_all` stops the runs too)."""

        def on_sigterm(*_: Any) -> None:
            raise Stopped

        previous = signal.signal(signal.SIGTERM, on_sigterm)
        try:
            yield
        finally:
            signal.signal(signal.SIGTERM, previous)

    def run_all(self, runs: list[Run]) -> None:
        """Run every run that has not finished yet, with a progress bar over runs."""
        from tqdm import tqdm

        todo = []
        for run in runs:
            previous = load_result(run)
            if previous.get("status") == "ok":
                if not same_run(previous, run, self.passthrough):
                    raise SystemExit(
                        f"regkit compare: {run.run_dir} holds a finished run made with another command or "
                        "another version of its recipe file:\n  " + " ".join(previous.get("command", []))
                        + "\nuse another --out (or delete that folder) to compare with the new options"
                    )
                run.result = previous
            else:
                todo.append(run)
        env = dict(os.environ)
        if self.jobs > 1 and "OMP_NUM_THREADS" not in env:  # share the cores instead of oversubscribing them
            env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // self.jobs))
        bar = tqdm(total=len(runs), initial=len(runs) - len(todo), unit="run", desc="regkit compare", file=sys.stderr)
        pool = ThreadPoolExecutor(max_workers=self.jobs)
        try:
            futures = {pool.submit(self.execute, run, env): run for run in todo}
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
            self.stop()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown()
        bar.close()
