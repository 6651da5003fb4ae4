"""Startup: wall time of ``regkit --help`` and ``regkit list`` against ``python -c "import lightning"``.

Each command runs in a fresh subprocess (so nothing is cached in the interpreter; the OS file cache
is warm after the first run, which is what a user sees from the second command on). The commands
are run in turns, median of the repeats. ``regkit`` is the installed console script if it is on
PATH, else ``python -m regkit.cli`` (the same code).

Also reported: the import time of ``regkit`` and of ``regkit.cli`` alone, and the modules that
``regkit list`` imports beyond ``import lightning`` (does the registry pull in every plugin,
W&B, ...?), from ``python -X importtime``.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import median_iqr, print_table, row  # noqa: E402

BENCHMARK = "startup"


def regkit_command() -> list[str]:
    exe = shutil.which("regkit")
    return [exe] if exe else [sys.executable, "-m", "regkit.cli"]


def commands() -> dict[str, list[str]]:
    regkit = regkit_command()
    py = sys.executable
    return {
        "python -c 'import lightning'": [py, "-c", "import lightning"],
        "python -c 'import torch'": [py, "-c", "import torch"],
        "python -c 'import regkit'": [py, "-c", "import regkit"],
        "regkit --help": [*regkit, "--help"],
        "regkit list": [*regkit, "list"],
    }


def _env() -> dict[str, str]:
    return {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "PYTHONWARNINGS": "ignore"}


def wall_ms(cmd: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env(), text=True)
    elapsed = (time.perf_counter() - start) * 1000
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {done.returncode}: {done.stderr[-2000:]}")
    return elapsed


def imported_modules(code: str) -> dict[str, float]:
    """``{module: self import ms}`` for every module ``python -X importtime -c code`` imports."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True,
                          env=_env())
    found: dict[str, float] = {}
    for line in done.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+\d+ \|\s*(\S+)", line)
        if m:
            found[m.group(2)] = int(m.group(1)) / 1000
    return found


LIST_CODE = ("import contextlib, io\nfrom regkit.cli import main\n"
             "with contextlib.redirect_stdout(io.StringIO()): main(['list'])")


def extra_imports_note() -> str:
    """Packages ``regkit list`` imports that ``import lightning`` does not, by their own import time."""
    base = imported_modules("import lightning")
    listing = imported_modules(LIST_CODE)
    by_package: dict[str, float] = {}
    for module, ms in listing.items():
        if module not in base:
            top = module.split(".")[0]
            by_package[top] = by_package.get(top, 0.0) + ms
    extra = sorted(((ms, name) for name, ms in by_package.items() if ms >= 10), reverse=True)
    return ", ".join(f"{name} {ms:.0f} ms" for ms, name in extra[:6]) or "none over 10 ms"


def run(quick: bool = False) -> list[dict]:
    repeats = 2 if quick else 5
    cmds = commands()
    wall_ms(cmds["regkit list"])  # warms the file cache (torch, lightning, regkit); fails early if broken
    samples: dict[str, list[float]] = {name: [] for name in cmds}
    for _ in range(repeats):
        for name, cmd in cmds.items():
            samples[name].append(wall_ms(cmd))
    base_name = "python -c 'import lightning'"
    base, base_iqr = median_iqr(samples[base_name])
    rows = [row(BENCHMARK, base_name, "ms", base, base_iqr, note=f"median of {repeats} fresh processes")]
    note_list = f"imports beyond `import lightning` (self time): {extra_imports_note()}"
    for name in cmds:
        if name == base_name:
            continue
        value, spread = median_iqr(samples[name])
        rows.append(row(BENCHMARK, name, "ms", value, spread, base_name, base,
                        note=note_list if name == "regkit list" else ""))
    return rows


if __name__ == "__main__":
    print_table(run(quick="--quick" in sys.argv))
