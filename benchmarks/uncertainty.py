"""Uncertainty, measured (issue #28 item 3): is MC dropout's uncertainty useful on shipped data?

For each seed, the S1 dropout MLP (recipes/mlp_dropout.yaml) is trained on MNIST by ``regkit fit``
(a subprocess), its ``last.ckpt`` loaded with ``regkit.tasks.Classifier.load_from_checkpoint``, and

- **OOD detection**: MNIST test images (in-distribution, negatives) against Fashion-MNIST test images
  (out-of-distribution, positives), AUROC of three scores: 1 - max softmax of the deterministic
  (eval-mode) network, the predictive entropy of MC dropout and its mutual information (T = 30
  passes, :func:`regkit.components.mc_dropout.mc_predict`);
- **calibration** on the MNIST test set: expected calibration error (15 equal-width bins) of the
  deterministic and of the MC predictions, and a reliability diagram pooled over seeds.

Fashion-MNIST images go through the MNIST model's normalization (MNIST's mean and std): the model
sees them exactly as it would see any other input. The claim "MC dropout's uncertainty detects
Fashion-MNIST inputs better than the deterministic max-softmax" gets a Welch 95 % interval of the
AUROC differences over seeds (benchmarks/claim_stats.py) and the verdict that follows.

Run from the repository root::

    python benchmarks/uncertainty.py [--seeds 5] [--epochs 5] [--out runs/uncertainty]

Writes benchmarks/uncertainty.json, docs/uncertainty_section.md and docs/images/uncertainty_reliability.png.
Resumable: a seed whose metrics are in its run folder (``metrics.json``) is neither retrained nor
re-evaluated. The metric functions below import without training anything (tests/test_uncertainty.py).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

import torch
from torchmetrics.functional.classification import binary_auroc, multiclass_calibration_error

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))  # benchmarks/claim_stats.py, also when imported by the tests
try:
    from claim_stats import Comparison, combine, interval_text, paired, welch
finally:
    sys.path.remove(str(HERE))

BINS = 15
SAMPLES = 30
FIRST_SEEDS = 5  # the planned seed count; a longer run reports the verdict these seeds gave too
RECIPE = "recipes/mlp_dropout.yaml"
CLAIM = "MC dropout's uncertainty detects Fashion-MNIST inputs better than the deterministic max-softmax"
# metric key -> (label in the table, higher is better)
METRICS = {
    "auroc_max_softmax": ("OOD AUROC, 1 - max softmax (deterministic)", True),
    "auroc_mc_entropy": ("OOD AUROC, predictive entropy (MC, T = 30)", True),
    "auroc_mc_mutual_information": ("OOD AUROC, mutual information (MC, T = 30)", True),
    "ece_deterministic": ("ECE on MNIST test, deterministic (15 bins)", False),
    "ece_mc": ("ECE on MNIST test, MC mean (15 bins)", False),
    "acc_deterministic": ("MNIST test accuracy, deterministic", True),
    "acc_mc": ("MNIST test accuracy, MC mean", True),
}
DIFFERENCES = [("auroc_mc_entropy", "MC entropy - max-softmax"),
               ("auroc_mc_mutual_information", "MC mutual information - max-softmax")]


# ---------------------------------------------------------------- metric functions (no training)

def ood_auroc(in_scores: torch.Tensor, out_scores: torch.Tensor) -> float:
    """AUROC of telling out-of-distribution inputs (positives) from in-distribution ones (negatives)
    by a score that is higher for what the model finds more uncertain; 0.5 = chance, 1 = perfect."""
    scores = torch.cat([in_scores, out_scores]).double()
    labels = torch.cat([torch.zeros(len(in_scores)), torch.ones(len(out_scores))]).long()
    return float(binary_auroc(scores, labels))


def expected_calibration_error(probs: torch.Tensor, targets: torch.Tensor, bins: int = BINS) -> float:
    """ECE (L1, ``bins`` equal-width confidence bins) of predictive probabilities (N, C)."""
    return float(multiclass_calibration_error(probs.float(), targets.long(), num_classes=probs.shape[-1],
                                              n_bins=bins, norm="l1"))


def reliability(probs: torch.Tensor, targets: torch.Tensor, bins: int = BINS) -> dict[str, list[float]]:
    """Per confidence bin: the examples' count, mean confidence and accuracy (NaN where empty),
    the points of a reliability diagram; the bins are torchmetrics' (right-closed, equal width)."""
    confidence, predicted = probs.float().max(-1)
    correct = (predicted == targets).float()
    edges = torch.linspace(0, 1, bins + 1)
    index = (torch.bucketize(confidence, edges, right=False) - 1).clamp(0, bins - 1)
    count = torch.bincount(index, minlength=bins).float()
    conf_sum = torch.bincount(index, weights=confidence, minlength=bins)
    acc_sum = torch.bincount(index, weights=correct, minlength=bins)
    empty = count == 0
    mean_conf = torch.where(empty, torch.nan, conf_sum / count.clamp_min(1))
    accuracy = torch.where(empty, torch.nan, acc_sum / count.clamp_min(1))
    return {"count": count.tolist(), "confidence": mean_conf.tolist(), "accuracy": accuracy.tolist()}


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """Entropy in nats over the last axis."""
    return -(probs * probs.clamp_min(1e-12).log()).sum(-1)


def uncertainty_scores(samples: torch.Tensor) -> dict[str, torch.Tensor]:
    """From MC probabilities (T, N, C): predictive entropy (of the mean) and mutual information
    (entropy of the mean minus mean entropy of the samples; 0 when every sample agrees)."""
    mean = samples.mean(0)
    total = entropy(mean)
    return {"entropy": total, "mutual_information": (total - entropy(samples).mean(0)).clamp_min(0.0)}


def mean_std(values: list[float]) -> tuple[float, float, int]:
    return (statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0, len(values))


def difference(records: list[dict[str, Any]], metric: str, baseline: str = "auroc_max_softmax") -> Comparison:
    """``metric`` minus ``baseline`` over the seeds' records (positive = metric better): both come from
    the same network on the same images, so the interval is the paired one (claim_stats.paired)."""
    return paired([r["metrics"][metric] - r["metrics"][baseline] for r in records])


def welch_difference(records: list[dict[str, Any]], metric: str, baseline: str = "auroc_max_softmax") -> Comparison:
    """The same difference as two independent samples (Welch), shown beside the paired one for reading."""
    a = mean_std([r["metrics"][metric] for r in records])
    b = mean_std([r["metrics"][baseline] for r in records])
    return welch(a[0], a[1], a[2], b[0], b[1], b[2])


def verdict(entropy_gain: Comparison) -> str:
    """The claim's verdict, decided (as fixed before the runs) by MC dropout's standard OOD score,
    the predictive entropy: reproduced / refuted / inconclusive from its interval; too few seeds
    for an interval is inconclusive. The mutual information is reported beside it, not voted."""
    return entropy_gain.outcome if entropy_gain.outcome in ("reproduced", "refuted") else "inconclusive"


# ---------------------------------------------------------------- training and evaluation

def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {os.cpu_count()} cores, {gpu}, torch {torch.__version__}"


def fit_command(seed: int, epochs: int, run_dir: Path) -> list[str]:
    return [sys.executable, "-m", "regkit", "fit", "--config", RECIPE,
            "--trainer.max_epochs", str(epochs), "--model.init_args.lr_scheduler.init_args.T_max", str(epochs),
            "--trainer.logger", "null", "--trainer.enable_progress_bar", "false", "--test_after_fit", "false",
            "--seed_everything", str(seed), "--run_dir", str(run_dir)]


def test_images() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """MNIST and Fashion-MNIST test images, both normalized with MNIST's mean and std."""
    from regkit.data import FashionMNISTDataModule, MNISTDataModule

    mean, std = MNISTDataModule.mean, MNISTDataModule.std
    out = {}
    for name, module in (("mnist", MNISTDataModule()), ("fashion", FashionMNISTDataModule())):
        raw = module.load_raw()
        x = (raw["test_images"].float().div(255.0).unsqueeze(1) - mean) / std
        out[name] = (x, raw["test_labels"].long())
    return out


@torch.no_grad()
def predict(model: torch.nn.Module, x: torch.Tensor, samples: int, batch: int = 2000) -> dict[str, torch.Tensor]:
    """Deterministic probabilities and MC dropout's mean, entropy and mutual information for ``x``."""
    from regkit.components.mc_dropout import mc_predict

    model.eval()
    parts: dict[str, list[torch.Tensor]] = {"det": [], "mc": [], "entropy": [], "mutual_information": []}
    for chunk in x.split(batch):
        parts["det"].append(model(chunk).float().softmax(-1))
        mc = mc_predict(model, chunk, samples=samples)
        parts["mc"].append(mc.mean)
        parts["entropy"].append(mc.entropy)
        parts["mutual_information"].append(mc.mutual_information)
    return {k: torch.cat(v) for k, v in parts.items()}


def evaluate(checkpoint: Path, data: dict[str, tuple[torch.Tensor, torch.Tensor]], samples: int) -> dict[str, Any]:
    from regkit.tasks import Classifier

    model = Classifier.load_from_checkpoint(checkpoint, map_location="cpu", weights_only=True)
    ind = predict(model, data["mnist"][0], samples)
    ood = predict(model, data["fashion"][0], samples)
    y = data["mnist"][1]
    metrics = {
        "auroc_max_softmax": ood_auroc(1 - ind["det"].max(-1).values, 1 - ood["det"].max(-1).values),
        "auroc_mc_entropy": ood_auroc(ind["entropy"], ood["entropy"]),
        "auroc_mc_mutual_information": ood_auroc(ind["mutual_information"], ood["mutual_information"]),
        "ece_deterministic": expected_calibration_error(ind["det"], y),
        "ece_mc": expected_calibration_error(ind["mc"], y),
        "acc_deterministic": float((ind["det"].argmax(-1) == y).float().mean()),
        "acc_mc": float((ind["mc"].argmax(-1) == y).float().mean()),
    }
    diagram = {"deterministic": reliability(ind["det"], y), "mc": reliability(ind["mc"], y)}
    return {"metrics": metrics, "reliability": diagram}


def run_seed(seed: int, epochs: int, out: Path, samples: int,
             data: Optional[dict[str, tuple[torch.Tensor, torch.Tensor]]]) -> dict[str, Any]:
    """Train (unless the checkpoint is there) and evaluate one seed; its record is kept in the run folder."""
    run_dir = out / f"seed{seed}"
    result = run_dir / "metrics.json"
    if result.exists():
        return json.loads(result.read_text())
    command = fit_command(seed, epochs, run_dir.relative_to(ROOT) if run_dir.is_relative_to(ROOT) else run_dir)
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    train_s = 0.0
    if not checkpoint.exists():
        env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"}
        start = time.perf_counter()
        with open(out / f"seed{seed}.log", "w") as log:
            done = subprocess.run(["nice", "-n", "5", *command], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        train_s = time.perf_counter() - start
        if done.returncode != 0 or not checkpoint.exists():
            raise SystemExit(f"seed {seed}: regkit fit failed (exit {done.returncode}); see {out / f'seed{seed}.log'}")
    start = time.perf_counter()
    evaluation = evaluate(checkpoint, data if data is not None else test_images(), samples)
    record = {
        "seed": seed, "epochs": epochs, "mc_samples": samples, **evaluation,
        "command": shlex.join(["regkit", *command[3:]]),
        "train_wall_s": round(train_s, 1), "eval_wall_s": round(time.perf_counter() - start, 1),
        "machine": machine(), "load_average": round(os.getloadavg()[0], 1),
        "written": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
    result.write_text(json.dumps(record, indent=1) + "\n")
    return record


# ---------------------------------------------------------------- report

def pooled_diagram(records: list[dict[str, Any]], kind: str) -> tuple[list[float], list[float], list[float]]:
    """Count-weighted confidence and accuracy per bin over the seeds."""
    conf, acc, total = [0.0] * BINS, [0.0] * BINS, [0.0] * BINS
    for r in records:
        d = r["reliability"][kind]
        for i, n in enumerate(d["count"]):
            if n:
                conf[i] += n * d["confidence"][i]
                acc[i] += n * d["accuracy"][i]
                total[i] += n
    keep = [i for i in range(BINS) if total[i]]
    return [conf[i] / total[i] for i in keep], [acc[i] / total[i] for i in keep], [total[i] for i in keep]


def plot(records: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, hist) = plt.subplots(2, 1, figsize=(5, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], "k:", label="perfect calibration")
    for kind, label, marker in (("deterministic", "deterministic (eval mode)", "o"),
                                ("mc", f"MC dropout mean (T = {records[0]['mc_samples']})", "s")):
        conf, acc, count = pooled_diagram(records, kind)
        ece = statistics.fmean(r["metrics"][f"ece_{'mc' if kind == 'mc' else 'deterministic'}"] for r in records)
        line, = ax.plot(conf, acc, marker=marker, label=f"{label}, ECE {100 * ece:.2f} %")
        hist.plot(conf, [c / sum(count) for c in count], marker=marker, color=line.get_color())
    ax.set_ylabel("accuracy")
    ax.set_title(f"MNIST test, 15 bins, pooled over {len(records)} seeds")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    hist.set_yscale("log")
    hist.set_ylabel("share of images")
    hist.set_xlabel("confidence (mean per bin)")
    hist.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def section(records: list[dict[str, Any]], image: Path, argv: list[str]) -> str:
    n = len(records)
    rows = []
    for key, (label, higher) in METRICS.items():
        mean, std, _ = mean_std([r["metrics"][key] for r in records])
        scale = 100.0 if key.startswith(("ece", "acc")) else 1.0
        unit = " %" if scale == 100.0 else ""
        digits = 2 if scale == 100.0 else 4
        rows.append(f"| {label} | {mean * scale:.{digits}f} ± {std * scale:.{digits}f}{unit} | "
                    f"{'higher' if higher else 'lower'} |")
    comparisons = [difference(records, key) for key, _ in DIFFERENCES]
    lines = [f"- AUROC {name}: {interval_text(c, digits=4)}: **{c.outcome}**"
             for (_, name), c in zip(DIFFERENCES, comparisons)]
    ece = paired([r["metrics"]["ece_deterministic"] - r["metrics"]["ece_mc"] for r in records])
    calibrated = {"reproduced": "the MC mean is better calibrated",
                  "refuted": "the deterministic network is better calibrated"}.get(ece.outcome, "no clear difference")
    lines.append(f"- ECE gain of the MC mean over the deterministic network (points, positive = MC better "
                 f"calibrated): {interval_text(ece, scale=100.0, digits=2)}: **{calibrated}** (beside the claim)")
    conf, acc, count = pooled_diagram(records, "mc")
    under = sum(c for a, f, c in zip(acc, conf, count) if a > f) / sum(count)
    lines.append(f"- The MC mean's confidence lies below its accuracy for {100 * under:.0f} % of the MNIST test images "
                 "(pooled bins): averaging dropout samples makes it " + ("under" if under > 0.5 else "over")
                 + "confident (the deterministic network's reliability curve is the reference in the picture).")
    independent = [welch_difference(records, key) for key, _ in DIFFERENCES]
    welch_text = "; ".join(f"{name} {interval_text(c, digits=4)}: {c.outcome}"
                           for (_, name), c in zip(DIFFERENCES, independent))
    outcome = verdict(comparisons[0])
    first, first_welch = difference(records[:FIRST_SEEDS], DIFFERENCES[0][0]), welch_difference(
        records[:FIRST_SEEDS], DIFFERENCES[0][0])
    extended = (f" The run was planned with {FIRST_SEEDS} seeds and first read with Welch's interval, which gave "
                f"**{verdict(first_welch)}** ({interval_text(first_welch, digits=4)}); the seeds were then extended to "
                f"{n}. The paired interval, the right one for two scores of the same network, decides the "
                f"{FIRST_SEEDS} planned seeds already: **{verdict(first)}** ({interval_text(first, digits=4)})."
                if n > FIRST_SEEDS else "")
    train = [r["train_wall_s"] for r in records if r["train_wall_s"]]
    evals = [r["eval_wall_s"] for r in records]
    epochs = records[0]["epochs"]
    total_min = (sum(train) + sum(evals)) / 60
    rel = os.path.relpath(image, ROOT / "docs")
    command = "python " + shlex.join(["benchmarks/uncertainty.py", *argv])
    return "\n".join([
        "## Uncertainty: MC dropout as an out-of-distribution detector (MNIST vs Fashion-MNIST)",
        "",
        f"Claim: {CLAIM} (Gal & Ghahramani, 2016). The S1 dropout MLP (`{RECIPE}`: 784-1024-1024-10, "
        f"input dropout 0.2, hidden dropout 0.5, SGD + momentum, cosine rate over {epochs} epochs on 55k MNIST images) "
        f"is trained once per seed; then on the 10k MNIST test images (in-distribution) and the 10k Fashion-MNIST "
        "test images (out-of-distribution, normalized with MNIST's mean and std, as the model sees any input) "
        "each of three scores ranks the inputs: 1 - max softmax of the deterministic network (eval mode), and the "
        f"predictive entropy and mutual information of MC dropout (T = {records[0]['mc_samples']} passes, "
        "`regkit.components.mc_dropout.mc_predict`). AUROC treats Fashion-MNIST as positive (torchmetrics "
        "`binary_auroc`); ECE is torchmetrics' L1 calibration error with 15 bins on the MNIST test set. "
        f"± is the standard deviation over {n} seeds ({', '.join(str(r['seed']) for r in records)}).",
        "",
        "| metric | mean ± std | better |",
        "|---|---|---|",
        *rows,
        "",
        "Differences (paired: the mean of the per-seed differences with its 95 % Student t interval, "
        "`claim_stats.paired`; both scores come from the same network on the same images, so the seed-to-seed "
        "spread they share cancels; positive = MC better):",
        "",
        *lines,
        "",
        f"Read as independent samples instead (Welch, for comparison only; it counts the spread the two scores "
        f"share): {welch_text}.",
        "",
        f"**Verdict: {outcome}** ({n} seeds) for \"{CLAIM}\", decided by the predictive entropy (MC dropout's "
        "standard OOD score): reproduced when the interval of its AUROC gain lies above zero, refuted when below. "
        f"The mutual information's gain, reported beside it: **{comparisons[1].outcome}**; read as a claim that "
        f"both MC scores beat max-softmax (`claim_stats.combine`), the verdict would be **{combine([c.outcome for c in comparisons])}**."
        + extended,
        "",
        f"![reliability diagram]({rel})",
        "",
        "Records: [benchmarks/uncertainty.json](../benchmarks/uncertainty.json) (one per seed: metrics, reliability "
        f"bins, command, wall times, machine). Command (from the repository root): `{command}`; each seed runs "
        f"`{records[0]['command']}` (seed and run folder changed) with `nice -n 5`, OMP_NUM_THREADS=1. "
        f"Wall time: {total_min:.1f} min for the {n} seeds "
        + (f"({statistics.fmean(train):.0f} s training, " if train else "(")
        + f"{statistics.fmean(evals):.0f} s evaluating per seed) on {records[0]['machine']}, one torch thread, "
        "on a shared machine (load average "
        f"{min(r['load_average'] for r in records):.0f}-{max(r['load_average'] for r in records):.0f}).",
        "",
    ])


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0 .. N-1")
    parser.add_argument("--epochs", type=int, default=5, help="training epochs per seed")
    parser.add_argument("--samples", type=int, default=SAMPLES, help="MC dropout passes T")
    parser.add_argument("--out", type=Path, default=Path("runs/uncertainty"), help="run folders")
    parser.add_argument("--json", type=Path, default=HERE / "uncertainty.json")
    parser.add_argument("--section", type=Path, default=ROOT / "docs" / "uncertainty_section.md")
    parser.add_argument("--image", type=Path, default=ROOT / "docs" / "images" / "uncertainty_reliability.png")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    out = args.out if args.out.is_absolute() else ROOT / args.out
    out.mkdir(parents=True, exist_ok=True)
    data = test_images()
    records = []
    for seed in range(args.seeds):
        record = run_seed(seed, args.epochs, out, args.samples, data)
        records.append(record)
        m = record["metrics"]
        print(f"seed {seed}: AUROC max-softmax {m['auroc_max_softmax']:.4f} entropy {m['auroc_mc_entropy']:.4f} "
              f"MI {m['auroc_mc_mutual_information']:.4f}; ECE det {m['ece_deterministic']:.4f} mc {m['ece_mc']:.4f}",
              flush=True)
        # the outputs are rewritten after every seed, so an interrupted run still leaves its results
        args.json.write_text(json.dumps({"claim": CLAIM, "records": records}, indent=1) + "\n")
        plot(records, args.image)
        args.section.write_text(section(records, args.image, argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
