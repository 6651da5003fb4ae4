"""Lightning's own callbacks, loggers and Trainer flags, added to a regkit recipe by class path on the
command line or in YAML, run for a few steps (in-process through ``regkit.cli.main``); where one
cannot work with a task (the GAN's manual optimization) the run stops with exit 2 before its folder
exists."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Callable

import pytest
import yaml

from conftest import regkit_main

QUICK = ["--trainer.max_steps", "4", "--trainer.limit_val_batches", "2", "--trainer.val_check_interval", "2",
         "--test_after_fit", "false", "--trainer.enable_progress_bar", "false", "--data.init_args.limit_train", "1024"]
CB = "lightning.pytorch.callbacks"

USER_CHECKPOINT = f"""\
trainer:
  callbacks:
    - class_path: {CB}.ModelCheckpoint
      init_args: {{monitor: val/loss, filename: "best-{{step}}", save_top_k: 1, mode: min}}
"""


def csv_columns(run: Path) -> set[str]:
    with open(run / "metrics.csv") as f:
        return set(next(csv.reader(f)))


def tensorboard_events(run: Path) -> bytes:
    """The bytes of the run's one TensorBoard event file (its scalars' tags are plain strings in it)."""
    (events,) = run.glob("events.out.tfevents.*")
    return events.read_bytes()


def ran(run: Path) -> dict:
    return yaml.safe_load((run / "config.yaml").read_text())


CASES: list[tuple[str, list[str], Callable[[Path], None]]] = [
    ("early_stopping_on_a_regkit_metric",
     [f"--trainer.callbacks+={CB}.EarlyStopping", "--trainer.callbacks.monitor=val/loss", "--trainer.callbacks.patience=1"],
     lambda run: ran(run)["trainer"]["callbacks"][0]["init_args"]["monitor"] == "val/loss"),
    ("learning_rate_monitor",
     [f"--trainer.callbacks+={CB}.LearningRateMonitor", "--trainer.log_every_n_steps=1"],
     lambda run: any(c.startswith("lr-") for c in csv_columns(run))),
    ("stochastic_weight_averaging",
     [f"--trainer.callbacks+={CB}.StochasticWeightAveraging", "--trainer.callbacks.swa_lrs=0.01"],
     lambda run: (run / "checkpoints" / "last.ckpt").is_file()),
    ("csv_logger_instead_of_wandb",
     ["--trainer.logger=lightning.pytorch.loggers.CSVLogger"],
     lambda run: "val/loss" in csv_columns(run) and not (run / "wandb").exists()),
    ("csv_logger_beside_wandb",
     # Lightning's CSVLogger requires a save_dir; regkit writes it into the run folder all the same
     ["--trainer.logger+=lightning.pytorch.loggers.CSVLogger", "--trainer.logger.save_dir=runs"],
     lambda run: "val/loss" in csv_columns(run) and (run / "wandb").is_dir()),
    ("tensorboard_logger_instead_of_wandb",
     # TensorBoardLogger requires a save_dir too; its event file lands in the run folder itself
     ["--trainer.logger=lightning.pytorch.loggers.TensorBoardLogger", "--trainer.logger.save_dir=runs"],
     lambda run: b"val/loss" in tensorboard_events(run) and not (run / "wandb").exists()),
    ("tensorboard_logger_beside_wandb",
     ["--trainer.logger+=lightning.pytorch.loggers.TensorBoardLogger", "--trainer.logger.save_dir=runs"],
     lambda run: b"val/loss" in tensorboard_events(run) and (run / "wandb").is_dir() and "val/loss" in csv_columns(run)),
    ("users_model_checkpoint_without_dirpath_goes_in_the_run_folder",
     ["--config", "user_checkpoint.yaml"],
     lambda run: len(list((run / "checkpoints").glob("best-step=*.ckpt"))) == 1),
    ("accumulate_grad_batches", ["--trainer.accumulate_grad_batches=2"],
     lambda run: ran(run)["trainer"]["accumulate_grad_batches"] == 2),
    ("gradient_clip_val", ["--trainer.gradient_clip_val=0.5"],
     lambda run: ran(run)["trainer"]["gradient_clip_val"] == 0.5),
    ("deterministic", ["--trainer.deterministic=true"], lambda run: ran(run)["trainer"]["deterministic"] is True),
    ("profiler", ["--trainer.profiler=simple"], lambda run: ran(run)["trainer"]["profiler"] == "simple"),
]


@pytest.mark.parametrize("args, works", [pytest.param(a, w, id=name) for name, a, w in CASES])
def test_a_lightning_part_runs_with_a_regkit_recipe(args: list[str], works: Callable[[Path], None]) -> None:
    Path("user_checkpoint.yaml").write_text(USER_CHECKPOINT)
    result = regkit_main("fit", "--config", "mlp_dropout", *args, "--run_dir", "run", *QUICK)
    assert result.returncode == 0, result.stderr[-3000:]
    assert works(Path("run"))
    assert not Path("lightning_logs").exists() and not Path("checkpoints").exists()  # nothing outside the run


@pytest.mark.parametrize("args, key", [
    pytest.param(["--trainer.gradient_clip_val", "1.0"], "trainer.gradient_clip_val", id="gradient_clip_val"),
    pytest.param(["--trainer.accumulate_grad_batches", "2"], "trainer.accumulate_grad_batches", id="accumulate"),
    pytest.param([f"--trainer.callbacks+={CB}.StochasticWeightAveraging", "--trainer.callbacks.swa_lrs=0.01"],
                 "trainer.callbacks", id="swa"),
])
def test_what_the_gans_manual_optimization_cannot_take_exits_2_before_the_run(
        args: list[str], key: str) -> None:
    result = regkit_main("fit", "--config", "gan", *args, "--run_dir", "run", *QUICK)
    err = result.stderr
    assert result.returncode == 2, err[-3000:]
    assert f"error: {key}: GAN optimizes by hand (manual optimization" in err and "remove it" in err
    assert not Path("run").exists()
