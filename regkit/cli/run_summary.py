"""What a run shows: at the start of fit, a note on a speed switch that does not pay there; when fit
ends, ``curves.png`` from ``metrics.csv`` and a summary of the final metrics and where the run's
files are; validate and test of a checkpoint print the same summary."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, WandbLogger

from regkit.cli.metrics_csv import per_epoch, read_metrics
from regkit.cli.run_folder import run_dir
from regkit.tasks.speed import cpu_compile_note, describe_switches, optimizer_switches


def curve_keys(rows: list[dict[str, float]]) -> list[list[str]]:
    """Panels: each loss (``loss`` train/val, then the GAN's ``d_loss``, ``g_loss``, ...), then each
    task metric logged for validation (acc, ppl, fid, ...) with its training counterpart when there is one."""
    keys = {k.removesuffix("_epoch").removesuffix("_step") for row in rows for k in row}
    names = {k.split("/", 1)[1] for k in keys if k.startswith(("train/", "val/"))}
    losses = sorted((n for n in names if n.endswith("loss") and "/" not in n), key=lambda n: (n != "loss", n))
    metrics = sorted(k.split("/", 1)[1] for k in keys if k.startswith("val/") and k.split("/", 1)[1] not in losses)
    panels = [[k for k in (f"train/{name}", f"val/{name}") if k in keys] for name in [*losses, *metrics]]
    return [p for p in panels if p]


def plot_curves(metrics_csv: str | Path, out: str | Path) -> Optional[Path]:
    """``out``: one panel per quantity (loss, then each validation metric), train and validation
    per epoch, and the scheduled arguments over steps. None when there is nothing to plot."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = read_metrics(metrics_csv)
    panels = [p for p in curve_keys(rows) if any(per_epoch(rows, k) for k in p)]
    scheduled = sorted({k for row in rows for k in row if k.startswith("train/schedule/")})
    if not panels and not scheduled:
        return None
    fig = Figure(figsize=(4.2 * (len(panels) + bool(scheduled)), 3.2), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels) + bool(scheduled), squeeze=False)[0]
    if scheduled:  # the last panel: each scheduled argument over the training steps
        ax = axes[-1]
        for key in scheduled:
            points = [(row["step"], row[key]) for row in rows if key in row and "step" in row]
            ax.plot([s for s, _ in points], [v for _, v in points], label=key.removeprefix("train/schedule/"))
        ax.set_xlabel("step")
        ax.set_title("scheduled arguments")
        ax.legend(fontsize=7)
    for ax, keys in zip(axes, panels):
        for key in keys:
            points = per_epoch(rows, key)
            if points:
                ax.plot([e for e, _ in points], [v for _, v in points], marker="o", label=key)
        ax.set_xlabel("epoch")
        ax.set_title(keys[-1].split("/", 1)[1])
        ax.legend(fontsize=8)
    fig.savefig(out, dpi=80)
    return Path(out)


def final_metrics(trainer: L.Trainer) -> dict[str, float]:
    """The last value of every ``val/`` and ``test/`` metric the trainer holds."""
    out = {}
    for key, value in trainer.callback_metrics.items():
        if key.startswith(("val/", "test/")):
            try:
                out[key] = float(value)
            except (TypeError, ValueError):
                pass
    return dict(sorted(out.items()))


def shown(path: str | Path) -> str:
    """``path`` as the summary prints every path: relative to the working directory when it lies
    inside it, else absolute."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(Path(path).resolve())


def speed_switches(trainer: L.Trainer) -> list[str]:
    """The task's speed switches that are on (docs/speed.md) and the fused / foreach optimizers."""
    task = getattr(trainer, "lightning_module", None)
    shown = describe_switches(getattr(task, "compile_options", None), getattr(task, "channels_last", False))
    return shown + optimizer_switches(getattr(trainer, "optimizers", []))


def announce_start(trainer: L.Trainer, task: L.LightningModule) -> None:
    """On rank 0, before fit: one line when ``compile`` (inductor) is on for a CPU run, where the
    compiled program is slower than eager for some networks (docs/speed.md); nothing otherwise."""
    if not trainer.is_global_zero:
        return
    note = cpu_compile_note(task, trainer.strategy.root_device.type)
    if note:
        print(note, flush=True)


def summarize_run(
    trainer: L.Trainer, run: dict[str, Any], metrics: Optional[dict[str, float]] = None, evaluated: Optional[str] = None
) -> None:
    """On rank 0, after fit (``curves.png`` written) or after validate / test of the checkpoint
    ``evaluated`` ("" for none): print the final validation / test metrics and where the run's files are."""
    if not trainer.is_global_zero or getattr(trainer, "fast_dev_run", False) or not run:
        return
    folder = run_dir(trainer)
    csv_logger = next((lg for lg in trainer.loggers if isinstance(lg, CSVLogger)), None)
    metrics_csv = Path(csv_logger.log_dir) / "metrics.csv" if csv_logger is not None else None
    if csv_logger is not None:
        csv_logger.save()
    if metrics_csv is not None and not metrics_csv.is_file():
        metrics_csv = None
    curves = plot_curves(metrics_csv, folder / "curves.png") if metrics_csv and evaluated is None else None
    lines = ["", f"run folder:   {shown(folder)}"]
    switches = speed_switches(trainer)
    if switches:
        lines.append(f"speed:        {', '.join(switches)}")
    checkpoint = next((cb for cb in getattr(trainer, "callbacks", []) if isinstance(cb, ModelCheckpoint)), None)
    if evaluated is not None:
        lines.append(f"checkpoint:   {shown(evaluated) if evaluated else 'none (the initial weights)'}")
    elif checkpoint is not None:
        if checkpoint.best_model_path:
            lines.append(f"best ckpt:    {shown(checkpoint.best_model_path)}")
        last = Path(checkpoint.dirpath or folder / "checkpoints") / "last.ckpt"
        if last.is_file():
            lines.append(f"last ckpt:    {shown(last)}   (continue: --ckpt_path last)")
    if metrics_csv:
        lines.append(f"metrics:      {shown(metrics_csv)}")
    if curves:
        lines.append(f"curves:       {shown(curves)}")
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            wandb_dir = getattr(logger.experiment, "dir", None)  # .../wandb/offline-run-*/files
            if wandb_dir and getattr(logger.experiment.settings, "mode", "") in ("offline", "dryrun"):
                runs_of_id = Path(shown(Path(wandb_dir).parent.parent)) / f"offline-run-*-{logger.experiment.id}"
                lines.append(f"upload W&B:   wandb sync {runs_of_id}")
    metrics = final_metrics(trainer) if metrics is None else metrics
    if metrics:
        width = max(len(k) for k in metrics)
        lines += ["", f"{'metric':<{width}}  value", f"{'-' * width}  ----------"]
        lines += [f"{k:<{width}}  {v:.4f}" for k, v in metrics.items()]
    print("\n".join(lines))
