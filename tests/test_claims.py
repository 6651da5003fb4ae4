"""The claim recipes compare like with like, and benchmarks/claims.py writes the claims page and
its JSON from the runs there are (slow: from a real tiny-budget run of one claim)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"
SLOTS = {"input_dropout", "dropout", "layer_dropout", "output_dropout", "embedding_dropout", "weight_drop"}


def _without_regularizers(name: str) -> dict:
    recipe = yaml.safe_load((RECIPES / name).read_text())
    recipe["trainer"]["logger"]["init_args"].pop("name")
    init = recipe["model"]["init_args"]
    init.pop("constraints", None)
    for slot in SLOTS:
        init["network"].pop(slot, None)
    return recipe


@pytest.mark.parametrize("names", [
    ("mlp_no_dropout.yaml", "mlp_dropout.yaml", "mlp_dropout_maxnorm.yaml"),
    ("lstm_ptb_no_dropout.yaml", "lstm_ptb_standard.yaml", "lstm_ptb_variational.yaml"),
])
def test_claim_recipes_differ_only_in_their_regularizers(names):
    first, *others = [_without_regularizers(name) for name in names]
    for other in others:
        assert other == first


def test_s1_recipes_train_with_sgd_and_momentum_as_the_paper():
    for name in ("mlp_no_dropout.yaml", "mlp_dropout.yaml", "mlp_dropout_maxnorm.yaml"):
        optimizer = yaml.safe_load((RECIPES / name).read_text())["model"]["init_args"]["optimizer"]
        assert optimizer["class_path"] == "torch.optim.SGD" and optimizer["init_args"]["momentum"] >= 0.9


def _claims(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    return subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "claims.py"), "--runs", str(tmp_path / "runs"),
         "--docs", str(tmp_path / "docs" / "claims.md"), "--json", str(tmp_path / "claims.json"), *args],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=3600,
    )


def test_claims_page_says_not_measured_with_the_command_when_nothing_ran(tmp_path):
    done = _claims(tmp_path, "--report-only")
    assert done.returncode == 0, done.stderr[-3000:]
    page = (tmp_path / "docs" / "claims.md").read_text()
    for claim in ("S0", "S1", "S2", "S3", "S4", "E1", "E2"):
        assert f"## {claim}:" in page
    assert page.count("Not measured in this session") == 7
    assert "python benchmarks/claims.py --only S1" in page
    assert "regkit compare --vary config=recipes/mlp_no_dropout.yaml," in page
    assert json.loads((tmp_path / "claims.json").read_text())["records"] == []


@pytest.mark.slow
def test_claims_tiny_budget_writes_table_picture_and_records(tmp_path):
    done = _claims(tmp_path, "--budget", "tiny", "--only", "S0")
    assert done.returncode == 0, done.stderr[-3000:]
    page = (tmp_path / "docs" / "claims.md").read_text()
    assert "| attn_dropout=0.0 | 2 |" in page and "| attn_dropout=0.1 | 2 |" in page
    assert (tmp_path / "docs" / "images" / "claims_S0.png").exists()
    assert page.count("Not measured in this session") == 6
    records = json.loads((tmp_path / "claims.json").read_text())["records"]
    assert {(r["claim"], r["setting"], r["seed"]) for r in records} == {
        ("S0", f"attn_dropout={p}", seed) for p in ("0.0", "0.1") for seed in (0, 1)}
    assert all(0 <= r["metrics"]["test/acc"] <= 1 for r in records)


def _s3_rows(after: float, before: float, alone: float, std: float = 0.0003) -> dict:
    return {setting: {"test/acc": (acc, std, 3)} for setting, acc in (
        ("order=[norm, act, dropout]", after), ("order=[dropout, norm, act]", before), ("order=[norm, act]", alone))}


@pytest.mark.parametrize("after, before, alone, verdict", [
    (0.9858, 0.9850, 0.9858, "**reproduced**"),      # the shift costs; dropout after BN costs nothing
    (0.9858, 0.9850, 0.9870, "**not reproduced**"),  # BN alone better by more than the spread
    (0.9850, 0.9858, 0.9850, "**not reproduced**"),  # dropout before BN is the better one
    (0.9852, 0.9850, 0.9852, "**inconclusive**"),    # within the spread
])
def test_s3_verdict_reads_no_worse_than_bn_alone_as_the_claim_says(after, before, alone, verdict):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import claims
    finally:
        sys.path.pop(0)
    assert claims.verdict_s3(_s3_rows(after, before, alone)).startswith(verdict)
