"""A run is a folder (regkit/cli/run_folder.py): concurrent fits never share a file, --ckpt_path last|auto,
what predict writes, metrics.csv + curves.png, options given next to a checkpoint apply, a checkpoint's
task rebuilt by `regkit test`."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import torch
import yaml

from conftest import RECIPES, regkit_main

QUICK = ["--model.init_args.network.hidden", "[32]", "--data.init_args.limit_train", "512",
         "--trainer.max_epochs", "2", "--trainer.limit_val_batches", "2", "--trainer.limit_test_batches", "2",
         "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
         "--trainer.log_every_n_steps", "1"]
MLP = ["--config", str(RECIPES / "mlp_dropout.yaml")]


def regkit_process(*args: str) -> subprocess.Popen:
    import os

    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    env.pop("WANDB_SERVICE", None)
    return subprocess.Popen([sys.executable, "-m", "regkit.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def test_two_concurrent_fits_of_one_recipe_write_two_disjoint_run_folders(tmp_path: Path) -> None:
    procs = [regkit_process("fit", *MLP, *QUICK, "--model.init_args.network.dropout.p", p) for p in ("0.1", "0.4")]
    outputs = [proc.communicate(timeout=600) for proc in procs]
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, err[-3000:]
    folders = sorted(tmp_path.glob("runs/mlp_dropout/*"))
    assert len(folders) == 2
    dropouts = set()
    for folder in folders:
        names = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
        assert {"config.yaml", "metrics.csv", "curves.png", "checkpoints/last.ckpt"} <= names
        config = yaml.safe_load((folder / "config.yaml").read_text())
        p = config["model"]["init_args"]["network"]["dropout"]["p"]
        ckpt = torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)
        assert ckpt["hyper_parameters"]["network"]["dropout"]["p"] == p  # the config describes its weights
        dropouts.add(p)
        header = (folder / "metrics.csv").read_text().splitlines()[0].split(",")
        assert {"epoch", "step", "train/loss", "val/loss", "val/acc", "test/acc"} <= set(header)
        assert (folder / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert dropouts == {0.1, 0.4}
    out = outputs[0][0]  # the end-of-fit summary: where things are, and the final metrics as a table
    assert re.search(r"run folder: +runs/mlp_dropout/\S+", out)
    # Every path as the run folder is printed: relative to the working directory it lies in.
    for label in ("best ckpt", "last ckpt", "metrics", "curves"):
        assert re.search(rf"^{label}: +runs/mlp_dropout/\S+", out, re.M), out
    assert "last ckpt:" in out and "metrics:" in out and "curves:" in out and "wandb sync" in out
    assert re.search(r"^val/acc +0\.\d{4}$", out, re.M) and re.search(r"^test/acc +0\.\d{4}$", out, re.M)


def test_ckpt_path_last_with_nothing_to_resume_fails_before_training(tmp_path: Path) -> None:
    proc = regkit_main("fit", *MLP, *QUICK, "--ckpt_path", "last")
    assert proc.returncode != 0
    assert "--ckpt_path last: nothing to resume" in proc.stderr and "--ckpt_path auto" in proc.stderr
    assert not (tmp_path / "runs").exists()  # nothing started


def test_gan_auto_starts_then_last_resumes_at_the_right_step_in_the_same_wandb_run(tmp_path: Path) -> None:
    gan = ["fit", "--config", str(RECIPES / "gan.yaml"), "--data.init_args.limit_train", "256",
           "--trainer.limit_val_batches", "1", "--model.init_args.metrics", "false",
           "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
    first = regkit_main(*gan, "--ckpt_path", "auto", "--trainer.max_steps", "4")  # nothing yet: starts
    assert first.returncode == 0, first.stderr[-3000:]
    (last,) = tmp_path.glob("runs/gan/*/checkpoints/last.ckpt")
    assert torch.load(last, weights_only=True)["global_step"] == 4
    second = regkit_main(*gan, "--ckpt_path", "last", "--trainer.max_steps", "8")
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"Restoring states from the checkpoint path at {last.relative_to(tmp_path)}" in second.stdout + second.stderr
    ckpt = torch.load(last, weights_only=True)
    assert ckpt["global_step"] == 8 and ckpt["gan_d_steps"] == 4  # one D and one G step per batch
    run_folder = last.parent.parent
    assert list(tmp_path.glob("runs/gan/*")) == [run_folder]
    wandb_runs = sorted((run_folder / "wandb").glob("offline-run-*"))
    assert len(wandb_runs) == 2 and all(p.name.endswith("-" + run_folder.name) for p in wandb_runs)
    assert list((run_folder / "samples").glob("epoch_*.png"))


def test_predict_writes_mc_predictions_and_options_next_to_a_checkpoint_apply(tmp_path: Path) -> None:
    fit = regkit_main("fit", *MLP, *QUICK, "--trainer.max_epochs", "1", "--test_after_fit", "false")
    assert fit.returncode == 0, fit.stderr[-3000:]
    (ckpt,) = tmp_path.glob("runs/mlp_dropout/*/checkpoints/last.ckpt")
    run_folder = ckpt.parent.parent
    config_before = (run_folder / "config.yaml").read_text()

    pred = regkit_main("predict", *MLP, "--ckpt_path", str(ckpt), "--model.init_args.mc_samples", "4",
                       "--trainer.limit_predict_batches", "2", "--trainer.enable_progress_bar", "false")
    assert pred.returncode == 0, pred.stderr[-3000:]
    (path,) = run_folder.glob("predict-*/predictions.pt")  # inside the checkpoint's run, its own folder
    assert f"predictions: {path}" in pred.stdout
    out = torch.load(path, weights_only=True)
    assert out["probs"].shape == (256, 10) and out["entropy"].shape == out["mutual_information"].shape == (256,)
    assert torch.allclose(out["probs"].sum(-1), torch.ones(256), atol=1e-4)
    assert (out["mutual_information"] >= -1e-6).all() and (out["mutual_information"] <= out["entropy"] + 1e-6).all()

    test = regkit_main("test", *MLP, "--ckpt_path", str(ckpt), "--model.init_args.mc_samples", "2",
                       "--trainer.limit_test_batches", "1", "--trainer.enable_progress_bar", "false")
    assert test.returncode == 0, test.stderr[-3000:]
    assert "test/mc_acc" in test.stdout  # the option given next to the checkpoint applied
    assert (run_folder / "config.yaml").read_text() == config_before  # the run's config is untouched
    assert len(list(run_folder.glob("test-*/config.yaml"))) == 1


def test_regkit_test_rebuilds_the_task_from_the_checkpoint(tmp_path):
    """`regkit test --config R --ckpt_path C`: the checkpoint's hyperparameters (with `_class_path`)
    replace the recipe's task, so a recipe with another network width still loads the weights."""
    recipe = str(RECIPES / "mlp_dropout.yaml")
    quick = ["--trainer.logger", "false", "--trainer.enable_progress_bar", "false"]  # run from tmp_path (conftest)
    fit = regkit_main("fit", "--config", recipe, "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
                      "--trainer.limit_val_batches", "1", "--data.init_args.limit_train", "256",
                      "--test_after_fit", "false", "--model.init_args.network.hidden", "[32]", *quick)
    assert fit.returncode == 0, fit.stderr[-3000:]
    ckpt = next(tmp_path.rglob("last.ckpt"))
    # a recipe with another width (options given on the command line would apply over the checkpoint)
    narrow = tmp_path / "narrow.yaml"
    narrow.write_text(Path(recipe).read_text().replace("hidden: [1024, 1024]", "hidden: [8]"))
    assert narrow.read_text() != Path(recipe).read_text()
    test = regkit_main("test", "--config", str(narrow), "--ckpt_path", str(ckpt),
                       "--trainer.limit_test_batches", "1", *quick)
    assert test.returncode == 0, test.stderr[-3000:]
    assert "test/acc" in test.stdout


def test_curves_show_every_loss_the_task_logs_the_gans_d_and_g_losses_too() -> None:
    from regkit.cli.run_summary import curve_keys

    gan = [{"epoch": 0, "step": 1, "train/d_loss": 1.2, "train/g_loss": 0.7, "train/d_real": 0.1},
           {"epoch": 0, "step": 2, "val/fid": 250.0, "val/score": 2.0, "val/d_real": 0.0}]
    assert curve_keys(gan) == [["train/d_loss"], ["train/g_loss"], ["train/d_real", "val/d_real"], ["val/fid"],
                               ["val/score"]]
    classifier = [{"epoch": 0, "step": 1, "train/loss_step": 2.3, "train/penalty/l2": 0.1},
                  {"epoch": 0, "step": 2, "train/loss_epoch": 2.2, "train/acc": 0.3, "val/loss": 2.1, "val/acc": 0.4,
                   "test/acc": 0.4}]
    assert curve_keys(classifier) == [["train/loss", "val/loss"], ["train/acc", "val/acc"]]
