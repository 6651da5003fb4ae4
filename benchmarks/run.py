"""Run every ``benchmarks/bench_*.py`` and write ``benchmarks/RESULTS.md`` and ``benchmarks/results.png``.

    python benchmarks/run.py                       # all benchmarks, full size (CPU: under 15 min)
    python benchmarks/run.py --quick               # smaller sizes, for checking that everything runs
    python benchmarks/run.py --only overhead       # one benchmark (repeatable: --only a --only b); the
                                                   # other sections of RESULTS.md are kept as they were
    python benchmarks/run.py --threads 1           # pin torch to N threads (OMP_NUM_THREADS) in every benchmark
    python benchmarks/run.py --quality             # also retrain S1/S3 on full MNIST (minutes; see quality.py)

Each benchmark runs in its own Python process (a crash, a hang past ``--timeout`` or an exception
is reported in RESULTS.md and the others still run; no benchmark's imports or threads leak into
the next). The model-quality table comes from ``benchmarks/quality.json`` (written by
``benchmarks/quality.py``), with the date and commands of the run that produced it.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import machine_info, markdown_table  # noqa: E402

RESULTS = HERE / "RESULTS.md"
CHART = HERE / "results.png"
QUALITY = HERE / "quality.json"
GPU_RESULTS = HERE / "GPU_RESULTS.md"  # written from benchmarks/gpu_checks.sh output on a lent GPU

GPU_PLACEHOLDER = [
    ("classifier (S1 MLP, recipes/mlp_dropout.yaml)", "bf16-mixed vs 32-true", "ms/step"),
    ("GAN (recipes/gan.yaml)", "bf16-mixed vs 32-true", "ms/step"),
    ("LSTM (bench_lstm)", "regkit vs baseline", "as in bench_lstm"),
    ("attention (bench_attention)", "regkit vs baseline", "as in bench_attention"),
]


def discover() -> dict[str, Path]:
    """``{name: path}`` for every ``bench_<name>.py`` next to this file."""
    return {p.stem.removeprefix("bench_"): p for p in sorted(HERE.glob("bench_*.py"))}


def run_child(path: Path, quick: bool, out: Path) -> None:
    """In the benchmark's own process: import it, call ``run(quick)`` and write its rows as JSON."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    start = time.perf_counter()
    rows = module.run(quick=quick)
    doc = (module.__doc__ or "").strip()
    out.write_text(json.dumps({"rows": rows, "doc": doc, "seconds": time.perf_counter() - start}))


def run_benchmark(name: str, path: Path, quick: bool, timeout: float, env: dict[str, str]) -> dict:
    """Run one benchmark in a subprocess; returns rows or the reason it failed."""
    with tempfile.TemporaryDirectory(prefix=f"regkit-bench-{name}-") as tmp:
        out = Path(tmp) / "rows.json"
        cmd = [sys.executable, str(HERE / "run.py"), "--child", str(path), "--child-out", str(out)]
        cmd += ["--quick"] if quick else []
        start = time.perf_counter()
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=tmp)
        except subprocess.TimeoutExpired:
            return {"name": name, "error": f"timed out after {timeout:.0f} s", "seconds": time.perf_counter() - start}
        seconds = time.perf_counter() - start
        if done.returncode != 0 or not out.exists():
            lines = (done.stderr or done.stdout or "(no output)").strip().splitlines()
            return {"name": name, "error": f"exit code {done.returncode}: {lines[-1]}\n" + "\n".join(lines[-15:]),
                    "seconds": seconds}
        result = json.loads(out.read_text())
        return {"name": name, "rows": result["rows"], "doc": result["doc"], "seconds": seconds}


def first_paragraph(doc: str) -> str:
    return " ".join(doc.split("\n\n")[0].split())


def quality_section() -> str:
    lines = ["## Model quality (full MNIST test set)", ""]
    if not QUALITY.exists():
        return "\n".join(lines + ["Not measured yet: `python benchmarks/quality.py` (or `run.py --quality`).", ""])
    from quality import quality_markdown  # noqa: E402  (same folder)

    return "\n".join(lines) + quality_markdown(json.loads(QUALITY.read_text())) + "\n"


def gpu_section(results: list[dict]) -> str:
    lines = ["## GPU", ""]
    has_gpu_rows = any(r.get("device", "").startswith("cuda") for res in results for r in res.get("rows", []))
    if has_gpu_rows:
        lines.append("GPU rows are in the benchmark tables above (the `device` is named in each note).")
    elif GPU_RESULTS.exists():
        lines += [
            "This run had no GPU. The last GPU measurements (LSTM, attention, precision, host-device syncs and",
            "S2 at paper size, by `bash benchmarks/gpu_checks.sh OUT`) are in [GPU_RESULTS.md](GPU_RESULTS.md).",
        ]
    else:
        lines += [
            "No GPU was lent for this run. On a CUDA machine `python benchmarks/run.py` measures the LSTM,",
            "attention and precision (bf16-mixed vs 32-true) rows on the GPU (those benchmarks use it when",
            "`torch.cuda.is_available()`); the CPU figures are in the sections above.",
            "",
            "| benchmark | case | metric | value |",
            "|---|---|---|---|",
        ]
        lines += [f"| {b} | {c} | {m} | not measured (no GPU lent) |" for b, c, m in GPU_PLACEHOLDER]
    return "\n".join(lines) + "\n"


def write_chart(results: list[dict], path: Path) -> bool:
    """Horizontal bars: each row's speed-up over its baseline (1 = parity)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for res in results for r in res.get("rows", []) if r.get("ratio")]
    if not rows:
        return False
    labels = [f"{r['benchmark']}: {r['case']} [{r['metric']}]" for r in rows]
    ratios = [r["ratio"] for r in rows]
    fig, ax = plt.subplots(figsize=(10, 0.42 * len(rows) + 1.4))
    colors = ["tab:green" if x >= 0.95 else "tab:orange" if x >= 0.8 else "tab:red" for x in ratios]
    ax.barh(range(len(rows)), ratios, color=colors)
    ax.axvline(1.0, color="black", lw=1)
    ax.axvline(1 / 1.05, color="grey", lw=1, ls="--", label="1/1.05 (5% slower)")
    for i, x in enumerate(ratios):
        ax.text(x, i, f" {x:.2f}×", va="center", fontsize=8)
    ax.set_yticks(range(len(rows)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("speed-up vs the baseline of the same run (log scale; >1 = faster)")
    ax.set_title("regkit benchmarks: ratio to baseline")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_xlim(min(0.5, min(ratios) * 0.8), max(2.0, max(ratios) * 1.6))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def previous_sections(path: Path) -> dict[str, str]:
    """``{benchmark name: its section}`` from an earlier RESULTS.md, each section starting with the
    line saying when and by which command it was measured (added here for files that predate it)."""
    if not path.exists():
        return {}
    text = path.read_text()
    generated = re.search(r"Generated by `([^`]*)` on ([^(]*?) in", text)
    sections = {}
    for chunk in re.split(r"^## ", text, flags=re.MULTILINE)[1:]:
        name, _, body = chunk.partition("\n")
        if not body.lstrip().startswith("Measured") and generated:
            body = f"\nMeasured on {generated.group(2)} by `{generated.group(1)}`.\n" + body
        sections[name.strip()] = f"## {name}\n{body}".rstrip() + "\n"
    return sections


def section_machine(info: dict[str, str]) -> str:
    """The machine a section was measured on, in the words of its "Measured on" line (the Machine table
    at the top describes the last run only; sections kept from earlier runs may come from another CPU)."""
    cpu = info.get("cpu", "?")
    flags = info.get("cpu flags (vector / bf16)", "")
    gpu = info.get("gpu", "none")
    where = f"{cpu} ({flags})" if flags else cpu
    if gpu and gpu != "none":
        where += f", GPU {gpu}"
    return f"{where}, {info.get('cores (os.cpu_count)', '?')} cores, torch {info.get('torch', '?')}"


def write_results(results: list[dict], info: dict[str, str], args: argparse.Namespace, seconds: float) -> str:
    repeats = os.environ.get("REGKIT_BENCH_REPEATS")  # the overhead benchmark's repeats, when set
    command = (f"REGKIT_BENCH_REPEATS={repeats} " if repeats else "") + "python benchmarks/run.py"
    command += " --quick" if args.quick else ""
    command += "".join(f" --only {n}" for n in args.only or [])
    command += f" --threads {args.threads}" if args.threads else ""
    load = info.get("load average (1/5/15 min)", "?")
    out = [
        "# regkit benchmark results",
        "",
        (f"Last generated by `{command}` on {info['date']} in {seconds:.0f} s "
         f"({'quick sizes' if args.quick else 'full sizes'}). Each section says when and by which command it"),
        "was measured; `python benchmarks/run.py` regenerates all of them.",
        "",
        "Every figure is the **median over repeats ± interquartile range (IQR)** of those repeats. Each baseline is",
        "measured in the same run and process as the figure it is compared with, in alternating turns where",
        "the benchmark allows, so that load from elsewhere on the machine affects both. `value / baseline` is",
        "the cost ratio for times (1.05 = 5% slower than the baseline); `speed-up` is its inverse (>1 = faster).",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in info.items()],
        "",
    ]
    if info.get("load average (1/5/15 min)"):
        out += ["The load average above was read at the start; on a shared machine the spreads show how much",
                "other work disturbed the timings.", ""]
    failures = [r for r in results if "error" in r]
    kept = previous_sections(args.out) if args.only else {}
    ran = {res["name"]: res for res in results}
    for name in discover():
        if name not in ran:
            if name in kept:
                out += [kept[name]]
            continue
        res = ran[name]
        out += [f"## {res['name']}", "",
                f"Measured on {info['date']} by `{command}` (load average at the start: {load}; "
                f"{section_machine(info)}).", ""]
        if "error" in res:
            out += [f"**FAILED** after {res['seconds']:.0f} s (the other benchmarks still ran):", "", "```",
                    res["error"], "```", ""]
            continue
        if res.get("doc"):
            out += [first_paragraph(res["doc"]), ""]
        out += [markdown_table(res["rows"]), f"({res['seconds']:.0f} s)", ""]
    if failures:
        out += ["## Failures", "", *[f"- `{r['name']}`: {r['error'].splitlines()[0]}" for r in failures], ""]
    out += [quality_section(), gpu_section(results)]
    if args.chart_written:
        chart = os.path.relpath(args.chart.resolve(), args.out.resolve().parent)
        scope = f" (the benchmarks of the last run only: {', '.join(args.only)})" if args.only else ""
        out += ["## Chart", "", f"![speed-up over baseline per benchmark]({chart}){scope}", ""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller sizes and fewer repeats")
    parser.add_argument("--only", action="append", metavar="NAME",
                        help="run only bench_NAME.py (repeatable; 'bench_' prefix optional)")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads in every benchmark")
    parser.add_argument("--timeout", type=float, default=420, help="seconds before a benchmark is stopped")
    parser.add_argument("--quality", action="store_true", help="also run quality.py first (S1/S3 on full MNIST)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="markdown file to write")
    parser.add_argument("--chart", type=Path, default=CHART, help="PNG chart to write")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        run_child(args.child, args.quick, args.child_out)
        return 0

    found = discover()
    names = list(found)
    if args.only:
        wanted = [n.removeprefix("bench_").removesuffix(".py") for n in args.only]
        unknown = [n for n in wanted if n not in found]
        if unknown:
            parser.error(f"unknown benchmark(s) {', '.join(unknown)}; found: {', '.join(found)}")
        names = wanted
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "PYTHONWARNINGS": "ignore"}
    if args.threads:
        env.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
        os.environ.update(OMP_NUM_THREADS=str(args.threads))
        import torch

        torch.set_num_threads(args.threads)
    info = machine_info()
    start = time.perf_counter()
    if args.quality:
        import quality

        quality.main([])
    results = []
    for name in names:
        print(f"[run.py] {name} ...", flush=True)
        res = run_benchmark(name, found[name], args.quick, args.timeout, env)
        status = "FAILED: " + res["error"].splitlines()[0] if "error" in res else f"{len(res['rows'])} rows"
        print(f"[run.py] {name}: {status} ({res['seconds']:.0f} s)", flush=True)
        results.append(res)
    try:
        args.chart_written = write_chart(results, args.chart)
    except Exception:  # a chart problem must not lose the table
        traceback.print_exc()
        args.chart_written = False
    text = write_results(results, info, args, time.perf_counter() - start)
    args.out.write_text(text)
    print(text)
    print(f"[run.py] wrote {args.out}" + (f" and {args.chart}" if args.chart_written else ""))
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
