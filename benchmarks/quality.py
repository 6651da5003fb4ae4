"""Model quality: test error of the S1 and S3 recipes on full MNIST next to Srivastava et al. (2014).

    python benchmarks/quality.py              # trains both recipes (minutes each on a CPU)
    python benchmarks/quality.py --only S1

Each recipe is trained with the exact ``regkit fit`` command shown in the table (run from the
repository root; W&B offline), the test accuracy is read from the test run that ``test_after_fit``
starts, and the results go to ``benchmarks/quality.json``, from which ``benchmarks/run.py`` renders
the table in RESULTS.md (this script also updates that section of an existing RESULTS.md). Not a ``bench_*.py`` because it takes minutes: ``run.py`` runs it only with
``--quality``.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "quality.json"

RECIPES = {
    "S1": ("recipes/mlp_dropout.yaml", "ReLU MLP 784-1024-1024-10, dropout 0.2 input / 0.5 hidden, SGD + momentum"),
    "S3": ("recipes/mlp_batchnorm_dropout.yaml", "ReLU MLP 784-1024-1024-10, batch norm + dropout 0.3, Adam"),
}
# Flags that change nothing in the result, only what is printed / written.
QUIET = ["--trainer.enable_progress_bar", "false"]

# Srivastava, Hinton, Krizhevsky, Sutskever, Salakhutdinov (2014), "Dropout: A Simple Way to Prevent
# Neural Networks from Overfitting", JMLR 15:1929-1958, Table 2 (MNIST test error, %). The paper's
# "3 layers, 1024 units" nets were trained far longer (SGD with momentum, up to 10^6 updates).
PAPER = [
    ("Dropout NN, logistic, 3 layers, 1024 units", 1.35),
    ("Dropout NN, ReLU, 3 layers, 1024 units", 1.25),
    ("Dropout NN + max-norm constraint, ReLU, 3 layers, 1024 units", 1.06),
]

TEST_ACC = re.compile(r"test/acc\s*[│|┃]?\s*([0-9]*\.[0-9]+)")


def command(recipe: str) -> list[str]:
    return ["regkit", "fit", "--config", recipe, *QUIET]


def train(key: str) -> dict:
    recipe, what = RECIPES[key]
    cmd = command(recipe)
    if not (ROOT / recipe).exists():
        return {"id": key, "recipe": recipe, "what": what, "command": shlex.join(cmd), "error": "recipe missing"}
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "PYTHONWARNINGS": "ignore"}
    # Run from a scratch copy of nothing but the cwd: the recipe path is absolute, so runs/ and
    # checkpoints land in a temporary directory, not in the repository.
    with tempfile.TemporaryDirectory(prefix=f"regkit-quality-{key}-") as tmp:
        real = [sys.executable, "-m", "regkit.cli", "fit", "--config", str(ROOT / recipe), *QUIET]
        start = time.perf_counter()
        done = subprocess.run(real, capture_output=True, text=True, cwd=tmp, env=env)
        wall = time.perf_counter() - start
    found = TEST_ACC.findall(done.stdout + done.stderr)
    result = {"id": key, "recipe": recipe, "what": what, "command": shlex.join(cmd), "wall_s": round(wall, 1)}
    if done.returncode != 0 or not found:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-10:])
        result["error"] = f"exit code {done.returncode}; test/acc not found\n{tail}"
        return result
    acc = float(found[-1])
    epochs = re.search(r"max_epochs:\s*(\d+)", (ROOT / recipe).read_text())
    result.update(test_acc=acc, test_error_pct=round(100 * (1 - acc), 2),
                  epochs=int(epochs.group(1)) if epochs else None)
    return result


def quality_markdown(data: dict) -> str:
    lines = [
        f"Measured {data['date']} on {data['cpu']} ({data['cores']} cores, shared), "
        f"torch {data['torch']}, lightning {data['lightning']}, OMP_NUM_THREADS={data.get('threads', '?')} "
        f"(load average {data.get('load', '?')}); regenerate with `python benchmarks/quality.py`.",
        "",
        "| model | test error (%) | epochs | wall time | exact command |",
        "|---|---|---|---|---|",
    ]
    for r in data["runs"]:
        if "error" in r:
            lines.append(f"| {r['id']}: {r['what']} | FAILED: {r['error'].splitlines()[0]} | | | `{r['command']}` |")
        else:
            lines.append(f"| {r['id']}: {r['what']} | {r['test_error_pct']:.2f} | {r['epochs']} | "
                         f"{r['wall_s']:.0f} s | `{r['command']}` |")
    for name, err in PAPER:
        lines.append(f"| Srivastava et al. 2014, Table 2: {name} | {err:.2f} | paper | | |")
    lines += [
        "",
        "Single runs (seed 0, `seed_everything: 0` in the recipes), so a difference of about 0.1-0.2 points is",
        "within seed-to-seed variation. The recipes train for minutes with Adam; the paper's figures come from",
        "much longer SGD training (and 1.06% needs a max-norm constraint, which these two recipes do not use).",
        "",
    ]
    return "\n".join(lines)


def update_results(data: dict) -> None:
    """Replace the model-quality section of an existing RESULTS.md (the rest stays as run.py wrote it)."""
    results = HERE / "RESULTS.md"
    if not results.exists():
        return
    text = results.read_text()
    head = "## Model quality (full MNIST test set)"
    start = text.find(head)
    if start < 0:
        return
    end = text.find("\n## ", start + len(head))
    section = f"{head}\n\n{quality_markdown(data)}\n"
    results.write_text(text[:start] + section + (text[end + 1:] if end >= 0 else ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", choices=sorted(RECIPES), help="train only this recipe")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(HERE))
    from common import machine_info

    info = machine_info()
    previous = json.loads(OUT.read_text()) if OUT.exists() else {"runs": []}
    runs = {r["id"]: r for r in previous.get("runs", [])}
    for key in args.only or list(RECIPES):
        print(f"[quality] training {key}: {shlex.join(command(RECIPES[key][0]))}", flush=True)
        runs[key] = train(key)
        print(f"[quality] {key}: {runs[key]}", flush=True)
    data = {"date": info["date"], "load": info.get("load average (1/5/15 min)", "?"), "cpu": info["cpu"], "cores": info["cores (os.cpu_count)"],
            "torch": info["torch"], "lightning": info["lightning"],
            "threads": os.environ.get("OMP_NUM_THREADS", "torch default"),
            "runs": [runs[k] for k in RECIPES if k in runs]}
    OUT.write_text(json.dumps(data, indent=2) + "\n")
    print(quality_markdown(data))
    update_results(data)
    return 1 if any("error" in r for r in data["runs"]) else 0


if __name__ == "__main__":
    sys.exit(main())
