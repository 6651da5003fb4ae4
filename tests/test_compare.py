"""``regkit compare``: the grid it plans, the sweep file it writes, and (slow) a real 2 settings x 2
seeds comparison through ``regkit fit`` subprocesses, resumed after one run is lost."""
from __future__ import annotations

import csv
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from regkit.compare import grid as compare_grid, runner
from regkit.compare import main as compare
from regkit.compare.main import parse_args

ROOT = Path(__file__).resolve().parents[1]
DROPOUT_NAME = "model.init_args.network.dropout.name"
DROPOUT = "model.init_args.network.dropout"
TINY = [
    "--config", str(ROOT / "recipes" / "mlp_dropout.yaml"),
    "--trainer.max_epochs", "2",
    "--trainer.limit_train_batches", "2",
    "--trainer.limit_val_batches", "1",
    "--trainer.limit_test_batches", "1",
    "--data.init_args.batch_size", "16",
]


def test_vary_values_split_on_top_level_commas_only():
    assert compare_grid.split_values("dropout,gaussian_dropout") == ["dropout", "gaussian_dropout"]
    assert compare_grid.split_values("null,{name: dropout, p: 0.5},[1, 2]") == ["null", "{name: dropout, p: 0.5}", "[1, 2]"]
    assert compare_grid.parse_vary(["--a.b=1,2", "c=x"]) == {"a.b": ["1", "2"], "c": ["x"]}
    with pytest.raises(SystemExit, match="KEY=V1,V2"):
        compare_grid.parse_vary(["a.b"])


def test_grid_is_every_combination_times_every_seed(tmp_path):
    grid = compare_grid.parse_vary([f"{DROPOUT_NAME}=dropout,gaussian_dropout", "model.init_args.optimizer.init_args.lr=0.1,0.2,0.3"])
    runs = compare_grid.plan_runs(grid, [0, 1], tmp_path)
    assert len(runs) == 2 * 3 * 2
    assert len({run.run_dir for run in runs}) == len(runs)
    first = runs[0]
    assert first.setting == "dropout.name=dropout,lr=0.1" and runs[1].setting == "dropout.name=dropout,lr=0.2"
    assert [run.seed for run in runs[:6]] == [0] * 6
    assert first.fit_args(["--config", "r.yaml"]) == [
        "--config", "r.yaml", f"--{DROPOUT_NAME}", "dropout", "--model.init_args.optimizer.init_args.lr", "0.1",
        "--seed_everything", "0"]


def test_a_varied_recipe_file_comes_before_the_other_options(tmp_path):
    runs = compare_grid.plan_runs(compare_grid.parse_vary(["config=a.yaml,b.yaml"]), [3], tmp_path)
    assert [run.setting for run in runs] == ["config=a", "config=b"]
    assert runs[0].fit_args(["--trainer.max_epochs", "2"]) == [
        "--config", "a.yaml", "--trainer.max_epochs", "2", "--seed_everything", "3"]
    assert runs[1].fit_args(["--config", "base.yaml", "--trainer.max_epochs", "2"]) == [
        "--config", "base.yaml", "--config", "b.yaml", "--trainer.max_epochs", "2", "--seed_everything", "3"]


def test_compare_options_are_taken_and_the_rest_passed_to_fit():
    options, rest = parse_args(["--vary", "a=1,2", "--seeds", "2", "--config", "r.yaml", "--trainer.max_epochs", "3"])
    assert options.vary == ["a=1,2"] and compare_grid.parse_seeds(options.seeds) == [0, 1]
    assert rest == ["--config", "r.yaml", "--trainer.max_epochs", "3"]


def test_wandb_sweep_file_holds_the_same_grid(tmp_path):
    sweep = tmp_path / "sweep.yaml"
    # (the slot itself, not its name: `dropout.name=null` is a setting `regkit fit` refuses, which
    # compare now finds before it writes anything)
    argv = ["--vary", f"{DROPOUT}=dropout,null", "--seeds", "3", "--metric", "test/acc",
            "--wandb-sweep", str(sweep), *TINY]
    assert compare(argv) == 0
    config = yaml.safe_load(sweep.read_text())
    assert config["method"] == "grid"
    assert config["metric"] == {"name": "test/acc", "goal": "maximize"}
    assert config["parameters"][DROPOUT]["values"] == ["dropout", "null"]  # --KEY=null, not None
    assert config["parameters"]["seed_everything"]["values"] == [0, 1, 2]
    assert config["command"] == ["regkit", "fit", *TINY[:2], "${args}", *TINY[2:]]  # recipe, grid point, options


def _compare(out: Path, *extra: str) -> subprocess.CompletedProcess:
    argv = ["--vary", f"{DROPOUT}=null,gaussian_dropout", "--seeds", "2", "--out", str(out), *TINY, *extra]
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    return subprocess.run([sys.executable, "-m", "regkit", "compare", *argv], capture_output=True, text=True,
                          env=env, timeout=3600)


@pytest.mark.slow
def test_compare_runs_the_grid_through_regkit_fit_and_resumes(tmp_path):
    out = tmp_path / "cmp"
    done = _compare(out, "--jobs", "2")
    assert done.returncode == 0, done.stderr[-3000:]

    results = [json.loads(p.read_text()) for p in sorted(out.glob("runs/*/seed*/compare.json"))]
    assert len(results) == 4 and all(r["status"] == "ok" for r in results)
    assert {(r["values"][DROPOUT], r["seed"]) for r in results} == {
        (name, seed) for name in ("null", "gaussian_dropout") for seed in (0, 1)}
    # null really switched the slot off: the resolved recipe of that run has no dropout there
    saved = yaml.safe_load((out / "runs" / "dropout=null" / "seed0" / "config.yaml").read_text())
    assert saved["model"]["init_args"]["network"]["dropout"] is None
    for result in results:
        assert 0.0 <= result["final"]["test/acc"] <= 1.0

    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and {row["seed"] for row in rows} == {"0", "1"}
    table = (out / "summary.md").read_text()
    assert "| dropout=null | 2 |" in table and "| dropout=gaussian_dropout | 2 |" in table
    assert (out / "summary.png").stat().st_size > 10_000

    # Resume: one run lost its result (as if it had been stopped); only that one runs again.
    lost = out / "runs" / "dropout=gaussian_dropout" / "seed1"
    (lost / "compare.json").unlink()
    kept = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/seed*/compare.json")}
    again = _compare(out)
    assert again.returncode == 0, again.stderr[-3000:]
    assert all(p.stat().st_mtime_ns == mtime for p, mtime in kept.items())
    assert json.loads((lost / "compare.json").read_text())["status"] == "ok"
    assert "4/4 runs finished" in again.stdout

    # Finished runs made with other options are not silently mixed with new ones.
    changed = _compare(out, "--trainer.max_epochs", "1")
    assert changed.returncode != 0 and "another command" in changed.stderr


def test_a_finished_run_is_reused_only_with_the_same_options_and_recipe_content(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("trainer: {max_epochs: 1}\n")
    run = compare_grid.plan_runs({}, [0], tmp_path)[0]
    passthrough = ["--config", str(recipe)]
    finished = runner.identity(run, passthrough)
    assert runner.same_run(finished, run, passthrough)
    assert not runner.same_run(finished, run, [*passthrough, "--trainer.max_epochs", "2"])
    recipe.write_text("trainer: {max_epochs: 2}\n")
    assert not runner.same_run(finished, run, passthrough)


@pytest.mark.slow
def test_plugins_given_to_regkit_reach_every_fit_that_compare_starts(tmp_path):
    example = ROOT / "examples" / "my_components.py"
    argv = ["--plugins", str(example), "compare", "--vary", f"{DROPOUT}={{name: my_noise, sigma: 0.1}}",
            "--seeds", "1", "--out", str(tmp_path / "cmp"), *TINY, "--trainer.max_epochs", "1"]
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    env.pop("REGKIT_PLUGINS", None)
    done = subprocess.run([sys.executable, "-m", "regkit", *argv], capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    (result,) = [json.loads(p.read_text()) for p in (tmp_path / "cmp").glob("runs/*/seed*/compare.json")]
    assert result["status"] == "ok"


@pytest.mark.parametrize("stop, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_or_kill_stops_compare_and_its_runs_without_a_traceback(tmp_path, stop, code):
    out = tmp_path / "cmp"
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    argv = [sys.executable, "-m", "regkit", "compare", "--seeds", "1", "--out", str(out), *TINY,
            "--trainer.max_epochs", "100000"]
    # restore_signals / a fresh SIGINT handler: a background job of a non-interactive shell ignores SIGINT
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 300
    while not list(out.glob("runs/*/seed0/metrics.csv")):  # the run is training
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.5)
    process.send_signal(stop)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == code, stderr[-2000:]
    assert "stopped with 0 of 1 runs finished; the same command continues" in stderr
    assert "Traceback" not in stderr
    (result,) = [json.loads(p.read_text()) for p in out.glob("runs/*/seed0/compare.json")]
    assert result["status"] == "interrupted"


def test_plugins_reach_each_fit_on_its_command_line_not_through_the_environment(tmp_path, monkeypatch, capsys):
    """`regkit --plugins X compare`: every run's `regkit fit` gets `--plugins X` (as a DDP process
    started by Lightning would see it), and regkit does not write REGKIT_PLUGINS (documented as read,
    never written)."""
    from regkit import cli, registry

    monkeypatch.delenv("REGKIT_PLUGINS", raising=False)
    example = str(ROOT / "examples" / "my_components.py")
    argv = ["--plugins", example, "compare", "--vary", f"{DROPOUT}={{name: my_noise, sigma: 0.1}},dropout",
            "--seeds", "2", "--out", str(tmp_path / "cmp"), "--dry-run", *TINY]
    try:
        assert cli.main(argv) == 0
    finally:
        registry.unregister("regularizer", "my_noise")
        registry.unregister("penalty", "my_weight_decay")
    commands = [shlex.split(line) for line in capsys.readouterr().out.splitlines()]
    assert len(commands) == 4
    assert all(command[:4] == ["regkit", "--plugins", example, "fit"] for command in commands), commands
    assert os.environ.get("REGKIT_PLUGINS") is None


def test_a_runs_curves_and_compares_curves_count_epochs_alike(tmp_path):
    """curves.png (regkit/cli/run_summary.py) and compare's summary.png (regkit/compare/results.py)
    read metrics.csv through one per-epoch reader, which puts the first epoch at 1 (the CSVLogger's
    epoch column counts from 0)."""
    from regkit.cli import metrics_csv, run_summary
    from regkit.compare import results

    path = tmp_path / "metrics.csv"
    path.write_text(  # CSVLogger's layout: a row per logging call, the cells of other calls empty
        "epoch,step,train/loss_epoch,train/loss_step,val/loss\n"
        "0,1,,2.5,\n0,3,,2.1,\n0,3,,,1.5\n0,3,2.3,,\n"
        "1,5,,1.9,\n1,7,,1.7,\n1,7,,,1.2\n1,7,1.8,,\n"
    )
    rows = metrics_csv.read_metrics(path)
    assert metrics_csv.per_epoch(rows, "val/loss") == [(1.0, 1.5), (2.0, 1.2)]
    assert metrics_csv.per_epoch(rows, "train/loss") == [(1.0, 2.3), (2.0, 1.8)]  # the epoch-level value
    assert run_summary.per_epoch is metrics_csv.per_epoch and results.per_epoch is metrics_csv.per_epoch
    assert run_summary.read_metrics is metrics_csv.read_metrics and runner.read_metrics is metrics_csv.read_metrics


def test_a_stopped_comparison_starts_no_more_runs_and_leaves_the_next_one_alone(tmp_path):
    """Each call of compare is one Runner: once stopped it starts nothing; a later Runner in the same
    process (its stop flag its own) reports a run that fails as failed, not interrupted."""
    passthrough = ["--config", str(tmp_path / "missing.yaml")]  # regkit fit exits 2 before importing Lightning
    run = compare_grid.plan_runs({}, [0], tmp_path / "cmp")[0]
    stopped = runner.Runner(passthrough)
    stopped.stop()
    assert stopped.execute(run, dict(os.environ))["status"] == "interrupted" and not stopped.running
    assert not (run.run_dir / runner.RESULT_FILE).exists()
    result = runner.Runner(passthrough).execute(run, dict(os.environ))
    assert (result["status"], result["returncode"]) == ("failed", 2), result
    assert "missing.yaml" in (run.run_dir / "compare.log").read_text()
