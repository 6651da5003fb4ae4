"""The claim recipes compare like with like, and benchmarks/claims.py writes the claims page and
its JSON from the runs there are (slow: from a real tiny-budget run of one claim)."""
from __future__ import annotations

import datetime
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
    assert all(f"| attn_dropout={p} | 2 |" in page for p in ("0.0", "0.1", "0.3"))
    assert (tmp_path / "docs" / "images" / "claims_S0.png").exists()
    assert page.count("Not measured in this session") == 6
    records = json.loads((tmp_path / "claims.json").read_text())["records"]
    assert {(r["claim"], r["setting"], r["seed"]) for r in records} == {
        ("S0", f"attn_dropout={p}", seed) for p in ("0.0", "0.1", "0.3") for seed in (0, 1)}
    assert all(0 <= r["metrics"]["test/acc"] <= 1 for r in records)


def _s3_rows(after: float, before: float, alone: float, std: float = 0.0003) -> dict:
    return {setting: {"test/acc": (acc, std, 3)} for setting, acc in (
        ("order=[norm, act, dropout]", after), ("order=[dropout, norm, act]", before), ("order=[norm, act]", alone))}


@pytest.mark.parametrize("after, before, alone, verdict", [
    (0.9858, 0.9850, 0.9858, "**reproduced**"),      # the shift costs; dropout after BN costs nothing
    (0.9858, 0.9850, 0.9870, "**refuted**"),          # BN alone better: its interval above zero
    (0.9850, 0.9858, 0.9850, "**refuted**"),          # dropout before BN is the better one
    (0.9852, 0.9850, 0.9852, "**inconclusive**"),    # within the spread
])
def test_s3_verdict_reads_no_worse_than_bn_alone_as_the_claim_says(after, before, alone, verdict):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import claims
    finally:
        sys.path.pop(0)
    assert claims.verdict_s3(_s3_rows(after, before, alone)).startswith(verdict)


def _claims_module():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import claim_stats
        import claims
    finally:
        sys.path.pop(0)
    return claims, claim_stats


@pytest.mark.parametrize("df, quantile", [(1, 12.7062), (2, 4.3027), (4, 2.7764), (10, 2.2281), (1000, 1.9623)])
def test_t_quantile_matches_the_tables(df, quantile):
    _, stats = _claims_module()
    assert abs(stats.t_quantile(0.975, df) - quantile) < 1e-4


def test_welch_interval_matches_a_worked_example_and_reads_the_direction():
    _, stats = _claims_module()
    a, b = [1.0, 2.0, 3.0, 4.0], [2.0, 3.0, 5.0, 7.0]  # scipy.stats.ttest_ind(a, b, equal_var=False): [-5.0843, 1.5843]
    mean_a, mean_b = sum(a) / 4, sum(b) / 4
    std_a = (sum((x - mean_a) ** 2 for x in a) / 3) ** 0.5
    std_b = (sum((x - mean_b) ** 2 for x in b) / 3) ** 0.5
    higher = stats.welch(mean_a, std_a, 4, mean_b, std_b, 4)
    assert (round(higher.low, 4), round(higher.high, 4), higher.outcome) == (-5.0843, 1.5843, "inconclusive")
    lower = stats.welch(mean_a, std_a, 4, mean_b, std_b, 4, lower_is_better=True)  # A's gain is B - A
    assert (round(lower.gain, 4), round(lower.low, 4)) == (1.75, -1.5843)
    assert stats.welch(0.99, 0.001, 5, 0.98, 0.001, 5).outcome == "reproduced"
    assert stats.welch(0.98, 0.001, 5, 0.99, 0.001, 5).outcome == "refuted"
    assert stats.welch(0.99, 0.0, 3, 0.99, 0.0, 3).outcome == "inconclusive"  # identical runs: no gain
    assert stats.welch(0.99, 0.0, 1, 0.98, 0.01, 3).outcome == "too few seeds"
    assert stats.welch(float("nan"), 0.0, 0, 0.98, 0.01, 3).outcome == "not measured"


@pytest.mark.parametrize("outcomes, verdict", [
    (["reproduced", "reproduced"], "reproduced"), (["reproduced", "inconclusive"], "inconclusive"),
    (["reproduced", "refuted"], "refuted"), (["refuted", "too few seeds"], "inconclusive"),
    (["reproduced", "not measured"], "incomplete"), ([], "incomplete"),
])
def test_a_claim_is_reproduced_only_when_every_comparison_it_asserts_is(outcomes, verdict):
    _, stats = _claims_module()
    assert stats.combine(outcomes) == verdict


def _size_rows(gains: dict[int, float], std: float = 0.002, seeds: int = 4) -> dict:
    rows = {}
    for n, gain in gains.items():
        rows[f"n={n}: config=mlp_no_dropout"] = {"test/acc": (0.95, std, seeds), "train/acc": (1.0, 0.0, seeds)}
        rows[f"n={n}: config=mlp_dropout"] = {"test/acc": (0.95 + gain, std, seeds), "train/acc": (0.99, 0.0, seeds)}
    return rows


@pytest.mark.parametrize("gains, verdict", [
    ({1000: 0.02, 5000: 0.01}, "**reproduced**"),
    ({1000: 0.02, 5000: 0.001}, "**inconclusive**"),  # 0.1 points at 4 seeds of std 0.2: within the interval
    ({1000: 0.02, 5000: -0.01}, "**refuted**"),
])
def test_s1_verdict_judges_every_training_set_size(gains, verdict):
    claims, _ = _claims_module()
    text = claims.verdict_s1(_size_rows(gains))
    assert text.startswith(verdict), text
    assert "at n=1000 images dropout" in text and "training error 0.0 %, test 5.0 %" in text


def test_s4_verdict_reads_the_fid_curve_of_the_regime():
    claims, _ = _claims_module()
    rows = {"dropout.p=0.0": {"val/fid": (60.0, 2.0, 4)}, "dropout.p=0.3": {"val/fid": (50.0, 2.0, 4)}}
    rising = {"dropout.p=0.0": {"val/fid": [(25.0, 90.0), (50.0, 55.0), (75.0, 58.0), (100.0, 60.0)]}}
    text = claims.verdict_s4(rows, rising)
    assert text.startswith("**reproduced**") and "lowest at epoch 50" in text and "rises again" in text
    flat = {"dropout.p=0.0": {"val/fid": [(25.0, 90.0), (50.0, 61.0), (75.0, 60.5), (100.0, 60.0)]}}
    assert "stopped falling" in claims.verdict_s4(rows, flat)
    # D overfitting, read from its logits: training images pull away from held-out ones
    apart = {"dropout.p=0.0": {**flat["dropout.p=0.0"], "train/d_real": [(12.5, 0.2), (25.0, 0.3), (87.5, 2.4)],
                               "val/d_real": [(25.0, 0.1), (100.0, 0.4)]}}
    text = claims.verdict_s4(rows, apart)
    # each gap uses the mean of the train/d_real values logged since the previous validation
    assert "from +0.15 at epoch 25 to +2.00 at epoch 100: D overfits" in text, text
    assert "With dropout" not in text
    both = {**apart, "dropout.p=0.3": {"train/d_real": [(50.0, 1.0), (90.0, 0.6)], "val/d_real": [(25.0, 0.0), (100.0, 0.1)]}}
    assert "With dropout 0.3 in D the gap ends at +0.70" in claims.verdict_s4(rows, both)
    together = {"dropout.p=0.0": {**apart["dropout.p=0.0"], "val/d_real": [(25.0, 0.1), (100.0, 2.2)]}}
    assert "to +0.20 at epoch 100: no sign that D overfits" in claims.verdict_s4(rows, together)
    assert "D overfits" not in claims.verdict_s4(rows, flat)  # no logit curves: nothing said


def test_s2_verdict_reads_overfitting_and_early_stopping_from_each_runs_curve():
    claims, _ = _claims_module()
    # no dropout overfits (its validation curve turns up), standard dropout keeps falling
    none_curves = [{"val/ppl": [(1.0, 500.0 + s), (2.0, 300.0 + s), (3.0, 330.0 + s), (4.0, 360.0 + s)]} for s in range(4)]
    std_curves = [{"val/ppl": [(1.0, 520.0 - s), (2.0, 320.0 - s), (3.0, 290.0 - s), (4.0, 285.0 - s)]} for s in range(4)]
    results = [{"setting": setting, "seed": seed, "status": "ok", "curves": curve,
                "final": {"test/ppl": curve["val/ppl"][-1][1] - 10, "val/ppl": curve["val/ppl"][-1][1],
                          "train/ppl": 150.0}}
               for setting, curves in (("config=lstm_ptb_no_dropout", none_curves),
                                       ("config=lstm_ptb_standard", std_curves),
                                       ("config=lstm_ptb_variational", std_curves)) for seed, curve in enumerate(curves)]
    rows = claims.summarise(results)
    # early stopping's pick: the lowest point of each run, a max for accuracies
    assert rows["config=lstm_ptb_no_dropout"]["best val/ppl"][:1] == (301.5,)
    assert claims.best_along_training({"curves": {"val/acc": [(1.0, 0.5), (2.0, 0.9), (3.0, 0.8)],
                                                  "train/acc": [(1.0, 1.0)]}}) == {"best val/acc": 0.9}
    text = claims.verdict_s2(rows, claims.mean_curves(results))
    # two claims, two verdicts: standard beats none; variational = standard is not separated
    assert text.startswith("**reproduced** (standard dropout) / **inconclusive** (variational vs standard): "), text
    assert "standard dropout beats no dropout (test/ppl 273.5 vs 351.5" in text, text
    assert "falls to 301.5 at epoch 2, rises again to 361.5 at epoch 4 (it overfits) and ends there." in text, text
    turning = {**claims.mean_curves(results), "config=lstm_ptb_no_dropout": {"val/ppl": [
        (1.0, 500.0), (2.0, 300.0), (3.0, 330.0), (4.0, 290.0)]}}
    assert "rises again to 330.0 at epoch 3 (it overfits) and ends at 290.0 as the learning rate decays." in \
        claims.verdict_s2(rows, turning)
    falling = {**turning, "config=lstm_ptb_no_dropout": {"val/ppl": [(1.0, 500.0), (2.0, 300.0), (3.0, 299.0)]}}
    assert "falls all along, to 299.0." in claims.verdict_s2(rows, falling)
    # with early stopping the gap shrinks to 301.5 - 283.5 = 18 points, judged on its own interval
    assert "With early stopping" in text and "standard dropout beats no dropout (best val/ppl 283.5 vs 301.5" in text
    # 290 -> 285 in the last epoch (1.7 %): not settled; a curve that no longer moves is
    assert "standard and variational dropout still fell by more than 1 % in the last epoch" in text
    settled = {**claims.mean_curves(results), "config=lstm_ptb_variational": {"val/ppl": [
        (1.0, 520.0), (2.0, 320.0), (3.0, 286.0), (4.0, 285.0)]}}
    text = claims.verdict_s2(rows, settled)
    assert "standard dropout still fell" in text and "Both dropout models have settled" not in text
    settled["config=lstm_ptb_standard"] = settled["config=lstm_ptb_variational"]
    assert "Both dropout models have settled" in claims.verdict_s2(rows, settled)


def test_s1_and_s4_pictures_are_drawn_from_the_records(tmp_path):
    claims, _ = _claims_module()
    by_size = [{"setting": f"n={n}: config={name}", "seed": seed, "status": "ok", "final": {"test/acc": 0.9 + 0.01 * seed}}
               for n in (1000, 5000) for name in ("mlp_no_dropout", "mlp_dropout") for seed in (0, 1)]
    assert claims.figure_by_size(by_size, tmp_path / "s1.png", "S1") and (tmp_path / "s1.png").stat().st_size > 1000
    curves = [{"setting": f"dropout.p={p}", "seed": seed, "status": "ok", "final": {"val/fid": 50.0},
               "curves": {"val/fid": [[25.0, 90.0], [50.0, 60.0 + seed]]}} for p in ("0.0", "0.3") for seed in (0, 1)]
    assert claims.figure_curves("val/fid")(curves, tmp_path / "s4.png", "S4") and (tmp_path / "s4.png").exists()
    for r in curves:
        r["curves"].update({"val/d_real": [[25.0, 0.1], [50.0, 0.2]], "train/d_real": [[25.0, 0.3], [50.0, 1.0]]})
    beside = claims.figure_curves("val/fid", beside=("val/d_real", "train/d_real"))
    assert beside(curves, tmp_path / "s4b.png", "S4")
    from PIL import Image

    assert Image.open(tmp_path / "s4b.png").width > Image.open(tmp_path / "s4.png").width  # the second panel
    assert not claims.figure_curves("val/fid")(by_size, tmp_path / "none.png", "S4")  # no curves: nothing drawn


def test_s1_gives_dropout_and_max_norm_their_own_verdicts():
    claims, _ = _claims_module()
    rows = _size_rows({1000: 0.02, 5000: 0.01})
    rows["max-norm n=5000 lr=0.1: config=mlp_dropout_maxnorm"] = {"test/acc": (0.92, 0.002, 4), "train/acc": (0.9, 0.0, 4)}
    rows["max-norm n=5000 lr=0.1: config=mlp_dropout"] = {"test/acc": (0.098, 0.0, 4), "train/acc": (0.098, 0.0, 4)}
    text = claims.verdict_s1(rows)
    assert text.startswith("**reproduced** (dropout) / **refuted** (max-norm):"), text
    assert "dropout alone at lr 0.1 ends at 90.20 % test error" in text


def test_a_part_can_run_its_own_number_of_seeds():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import claims

    s4 = next(claim for claim in claims.CLAIMS if claim.id == "S4")
    dropout, r1 = claims.parts_of(s4, "cpu")
    assert claims.seeds_of(s4, "cpu", dropout) == 8 and claims.seeds_of(s4, "cpu", r1) == 3
    assert claims.planned_runs(s4, "cpu") == 8 * 2 + 3 * 1  # two dropout rates, one R1 setting
    args = claims.compare_args(s4, "cpu", Path("runs"), 1, r1)
    assert args[args.index("--seeds") + 1] == "3"
    assert claims.seeds_of(s4, "tiny", r1) == claims.SEEDS["tiny"]  # a check of the machinery stays tiny


def _planned(claims, claim, part, seeds, root):
    """(run, passthrough) of each run ``part`` of ``claim`` makes for ``seeds``."""
    from regkit.compare.grid import parse_vary, plan_runs
    from regkit.compare.main import parse_args

    options, passthrough = parse_args(claims.compare_args(claim, "cpu", root, 2, part, seeds))
    return [(run, passthrough) for run in plan_runs(parse_vary(options.vary), seeds, Path(options.out))]


def _recorded(claims, claim, seeds, root, command=None):
    """claims.json's records (as earlier_records reads them) of every S4 setting for ``seeds``."""
    from regkit.compare.runner import identity

    return [{"setting": f"{part.label}: {run.setting}", "seed": run.seed, "status": "ok", "wall_s": 300.0,
             "command": command or identity(run, passthrough)["command"], "final": {"val/fid": 80.0 + run.seed},
             "written": "2026-12-06 23:09 UTC", "curves": {}, "machine": "machine A"}
            for part in claims.parts_of(claim, "cpu") for run, passthrough in _planned(claims, claim, part, seeds, root)]


def test_claims_json_fills_in_the_seeds_runs_lack_and_the_page_says_where_each_was_measured(tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import claims
    from regkit.compare.runner import RESULT_FILE, identity

    monkeypatch.chdir(ROOT)  # recipes are named from the repository root, as claims.py runs them
    monkeypatch.setattr(claims, "utc_now", lambda: "2026-12-07 15:00 UTC")  # the page's writing, fixed
    s4 = next(claim for claim in claims.CLAIMS if claim.id == "S4")
    recorded = _recorded(claims, s4, [0, 1, 2], tmp_path)
    stale = _recorded(claims, s4, [4], tmp_path, command=["regkit", "fit", "--trainer.max_epochs", "1200"])
    dropout = claims.parts_of(s4, "cpu")[0]
    for run, passthrough in _planned(claims, s4, dropout, [3], tmp_path):  # seed 3 of both rates ran now
        run.run_dir.mkdir(parents=True)
        (run.run_dir / RESULT_FILE).write_text(json.dumps({
            "setting": run.setting, "values": run.values, "seed": 3, **identity(run, passthrough),
            "status": "ok", "returncode": 0, "wall_s": 900.0, "final": {"val/fid": 70.0}}))
        ended = datetime.datetime(2026, 12, 7, 14, 40, tzinfo=datetime.timezone.utc).timestamp()
        os.utime(run.run_dir / RESULT_FILE, (ended, ended))  # the run ended before the page is written
    report = claims.run_claim(s4, "cpu", tmp_path, 2, execute=False,
                              earlier=("cpu", recorded + stale, "2026-12-06 23:09 UTC"))
    got = sorted((r["setting"], r["seed"], r["final"]["val/fid"]) for r in report["results"])
    assert len(got) == 9 + 2 and ("n=256: dropout.p=0.3", 3, 70.0) in got
    assert all(seed != 4 for _, seed, _ in got)  # a record of another command is another experiment
    assert report["rows"]["n=256: dropout.p=0.3"]["val/fid"][2] == 4  # seeds 0-3
    commands = report["command"].splitlines()
    assert commands[:6] == [
        "# seeds 0, 1, 2: measured 2026-12-06 23:09 UTC (records in claims.json)", commands[1],
        "# seed 3: measured 2026-12-07 14:40 UTC (runs/)", commands[3],  # when its runs ended, not the page
        "# seeds 4, 5, 6, 7: not measured yet (`python benchmarks/claims.py --only S4 --keep-earlier` runs only these)",
        commands[5]]
    assert "--seeds 0,1,2 " in commands[1] and "--seeds 3, " in commands[3] and "--seeds 4,5,6,7 " in commands[5]
    lines = claims.measured_on(report["results"])
    assert lines[0].startswith("**Measured 2 times**: seeds 0, 1, 2 measured 2026-12-06 23:09 UTC on machine A (5.0 min")
    assert "; seed 3 measured 2026-12-07 14:40 UTC on " in lines[0] and "(15.0 min per run)" in lines[0]

    # claims.json written from this page keeps each record's own date and machine for the next rewrite
    docs, saved = tmp_path / "docs" / "claims.md", tmp_path / "claims.json"
    claims.write_docs([report], docs, saved, {})
    again = claims.earlier_records(saved)["S4"][1]
    stamps = {(r["seed"], r["written"], r["machine"]) for r in again}
    assert {(seed, "2026-12-06 23:09 UTC", "machine A") for seed in (0, 1, 2)} <= stamps
    assert {(seed, written, where) for seed, written, where in stamps if seed == 3} == {
        (3, "2026-12-07 14:40 UTC", claims.machine())}
    assert "**Measured 2 times**" in docs.read_text()


def test_keep_earlier_runs_none_of_the_seeds_claims_json_holds(tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import dataclasses

    import claims

    monkeypatch.chdir(ROOT)
    s4 = dataclasses.replace(next(claim for claim in claims.CLAIMS if claim.id == "S4"), seeds={"cpu": 3})
    recorded = _recorded(claims, s4, [0, 1, 2], tmp_path)

    def no_run(*args, **kwargs):
        raise AssertionError(f"ran {args}")

    monkeypatch.setattr(claims.subprocess, "run", no_run)  # a run here would be hours of GAN training
    report = claims.run_claim(s4, "cpu", tmp_path, 2, execute=True, earlier=("cpu", recorded, "2026-12-06 23:09 UTC"),
                              keep_earlier=True)  # every planned seed is recorded: nothing runs
    assert not (tmp_path / "cpu").exists() and len(report["results"]) == 9
    assert report["measured_when"] == "2026-12-06 23:09 UTC"


def test_keep_earlier_runs_exactly_the_seeds_claims_json_lacks(tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import dataclasses

    import claims

    monkeypatch.chdir(ROOT)
    s4 = dataclasses.replace(next(claim for claim in claims.CLAIMS if claim.id == "S4"), seeds={"cpu": 4})
    recorded = _recorded(claims, s4, [0, 1, 2, 3], tmp_path)
    recorded = [r for r in recorded if not (r["seed"] == 3 and r["setting"] == "n=256: dropout.p=0.3")]  # half a seed
    ran = []
    monkeypatch.setattr(claims.subprocess, "run", lambda command, **kwargs: ran.append(command))
    claims.run_claim(s4, "cpu", tmp_path, 2, execute=True, earlier=("cpu", recorded, "2026-12-06 23:09 UTC"),
                     keep_earlier=True)
    assert len(ran) == 1  # R1's 3 seeds are all recorded
    assert ran[0][ran[0].index("--seeds") + 1] == "3,"  # seed 3 alone ("3" would be seeds 0-2)
