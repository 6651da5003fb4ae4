"""W&B: a real short `regkit fit` logs offline; the run file is read back and holds the metrics, the
full resolved recipe, the versions and the git revision, and never the API key."""
from __future__ import annotations

import importlib.util
import json
import struct
import subprocess
from pathlib import Path

import pytest

import regkit
from conftest import RECIPES, ROOT, regkit_main
from regkit.loggers import resolve_offline

SECRET = "0123456789abcdef0123456789abcdef01234567"  # looks like a W&B API key (40 hex digits)


def read_wandb_records(path: Path) -> list:
    """Records of a ``.wandb`` run file: W&B's LevelDB-style log (7-byte header ``:W&B`` + magic +
    version, then 32 KiB blocks of chunks with a 7-byte header: crc32, length, type full/first/
    middle/last) holding wandb's own protobuf ``Record`` messages."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, block = path.read_bytes(), 32768
    assert data[:4] == b":W&B"
    pos, pending, records = 7, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # too little room left for a header: the block is padded
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind == 0:
            break
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


def offline_run(tmp_path: Path) -> tuple[dict, list[dict], dict]:
    """(config, history rows, summary) of the single offline run under ``tmp_path``."""
    (run_file,) = tmp_path.glob("**/offline-run-*/run-*.wandb")
    config: dict = {}
    history: list[dict] = []
    summary: dict = {}
    for record in read_wandb_records(run_file):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            config.update({item.key: json.loads(item.value_json) for item in record.run.config.update})
        elif kind == "config":
            config.update({item.key: json.loads(item.value_json) for item in record.config.update})
        elif kind == "history":
            history.append({"/".join(i.nested_key) or i.key: json.loads(i.value_json) for i in record.history.item})
        elif kind == "summary":
            summary.update({"/".join(i.nested_key) or i.key: json.loads(i.value_json) for i in record.summary.update})
    unwrap = lambda v: v["value"] if isinstance(v, dict) and set(v) == {"value"} else v  # noqa: E731
    return {k: unwrap(v) for k, v in config.items()}, history, summary


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd,
                          capture_output=True, text=True, check=True).stdout.strip()


def test_offline_run_holds_metrics_recipe_versions_and_git_revision(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")  # the user's project is a git checkout
    (tmp_path / "notes.txt").write_text("experiment\n")
    git(tmp_path, "add", "notes.txt")
    git(tmp_path, "commit", "-q", "-m", "start")
    (tmp_path / "notes.txt").write_text("experiment, edited\n")  # an uncommitted change
    proc = regkit_main(
        "fit", "--config", str(RECIPES / "mlp_dropout.yaml"),
        "--data.init_args.limit_train", "512", "--trainer.max_epochs", "2", "--trainer.limit_val_batches", "2",
        "--trainer.log_every_n_steps", "1", "--trainer.enable_progress_bar", "false", "--test_after_fit", "false",
        "--model.init_args.network.dropout.p", "0.25",
        env={"WANDB_API_KEY": SECRET, "WANDB_MODE": "offline"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    config, history, summary = offline_run(tmp_path)

    # the full resolved recipe, with the command-line override applied
    recipe = config["recipe"]
    assert recipe["model"]["class_path"] == "regkit.tasks.Classifier"
    assert recipe["model"]["init_args"]["network"]["dropout"] == {"name": "dropout", "p": 0.25}
    assert recipe["trainer"]["max_epochs"] == 2 and recipe["data"]["init_args"]["limit_train"] == 512
    (run_dir,) = tmp_path.glob("runs/mlp_dropout/*")  # the run folder: runs/<recipe>/<run id>/
    assert recipe["checkpoint"]["dirpath"] == str(run_dir.relative_to(tmp_path) / "checkpoints")
    assert config["versions"] and (run_dir / "config.yaml").is_file() and (run_dir / "metrics.csv").is_file()
    # versions, plugin packages and git revisions
    versions = config["versions"]
    assert versions["regkit"] == regkit.__version__ and versions["torch"].startswith("2.")
    for module, dist in [("regkit_concrete_dropout", "regkit-concrete-dropout"), ("regkit_cutout", "regkit-cutout")]:
        if importlib.util.find_spec(module) is not None:
            assert versions[dist] == "0.1.0"
    assert versions["git_revision"] == git(tmp_path, "rev-parse", "HEAD") + "+dirty"
    if (ROOT / ".git").exists():
        recorded = versions["regkit_git_revision"].split("+")[0]
        # others may commit while the test runs: the recorded commit is HEAD or one of its ancestors
        git(ROOT, "merge-base", "--is-ancestor", recorded, "HEAD")  # raises if it is not
    # metrics: per-step training loss, per-epoch validation, the summary holds the last values
    losses = [row["train/loss"] for row in history if "train/loss" in row]
    assert len(losses) == 8 and all(0 < v < 5 for v in losses)  # 2 epochs x 4 steps
    val = [row["val/acc"] for row in history if "val/acc" in row]
    assert len(val) == 2 and all(0 <= v <= 1 for v in val)
    assert summary["val/acc"] == val[-1] and summary["trainer/global_step"] == 7
    # the API key is nowhere in what the run wrote
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written and not any(SECRET.encode() in p.read_bytes() for p in written)


def test_offline_unless_logged_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    assert resolve_offline(None) is True  # no key anywhere: offline
    (tmp_path / "netrc").write_text("machine api.wandb.ai\n  login user\n  password x\n")
    assert resolve_offline(None) is False  # `wandb login` wrote ~/.netrc: online
    (tmp_path / "netrc").unlink()
    monkeypatch.setenv("WANDB_API_KEY", SECRET)
    assert resolve_offline(None) is False
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert resolve_offline(None) is True  # WANDB_MODE wins over the key
    assert resolve_offline(False) is False  # and an explicit choice wins over everything
