"""The metrics of benchmarks/uncertainty.py (MC dropout as an OOD detector, calibration) on synthetic
inputs whose answer is known; nothing is trained."""
from __future__ import annotations

import math
import sys

import pytest
import torch
from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
try:
    import uncertainty
finally:
    sys.path.pop(0)


def test_auroc_is_one_for_separated_scores_and_a_half_for_identical_ones() -> None:
    in_scores, out_scores = torch.rand(500) * 0.4, 0.6 + torch.rand(300) * 0.4
    assert uncertainty.ood_auroc(in_scores, out_scores) == pytest.approx(1.0)
    assert uncertainty.ood_auroc(out_scores, in_scores) == pytest.approx(0.0)  # a score ranking backwards
    assert uncertainty.ood_auroc(torch.full((500,), 0.3), torch.full((300,), 0.3)) == pytest.approx(0.5)


def test_auroc_of_overlapping_gaussians_matches_the_closed_form() -> None:
    # AUROC of N(0,1) negatives vs N(d,1) positives is Phi(d / sqrt 2)
    g = torch.Generator().manual_seed(0)
    d = 1.0
    auroc = uncertainty.ood_auroc(torch.randn(20000, generator=g), d + torch.randn(20000, generator=g))
    assert auroc == pytest.approx(0.5 * (1 + math.erf(d / 2)), abs=0.01)


def _predictor(n: int, overconfident: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Two-class predictions with confidence c ~ U(0.5, 1): calibrated when the top class is right with
    probability c; overconfident when it claims c but is right only at (c + 0.5) / 2."""
    g = torch.Generator().manual_seed(1)
    confidence = 0.5 + 0.5 * torch.rand(n, generator=g)
    p_right = (confidence + 0.5) / 2 if overconfident else confidence
    right = torch.rand(n, generator=g) < p_right
    probs = torch.stack([confidence, 1 - confidence], dim=1)
    targets = torch.where(right, 0, 1)
    return probs, targets


def test_ece_is_near_zero_for_a_calibrated_predictor_and_large_for_an_overconfident_one() -> None:
    calibrated = uncertainty.expected_calibration_error(*_predictor(100_000, overconfident=False))
    overconfident = uncertainty.expected_calibration_error(*_predictor(100_000, overconfident=True))
    assert calibrated < 0.01
    assert overconfident == pytest.approx(0.125, abs=0.01)  # mean of c - (c + 0.5) / 2 over U(0.5, 1)


def test_reliability_bins_hold_every_example_and_match_the_ece() -> None:
    probs, targets = _predictor(20_000, overconfident=True)
    bins = uncertainty.reliability(probs, targets)
    counts = torch.tensor(bins["count"])
    assert counts.sum() == len(targets)
    filled = counts > 0
    gap = (torch.tensor(bins["confidence"]) - torch.tensor(bins["accuracy"]))[filled].abs()
    ece = float((counts[filled] / counts.sum() * gap).sum())
    assert ece == pytest.approx(uncertainty.expected_calibration_error(probs, targets), abs=1e-5)


def test_mutual_information_is_zero_when_every_mc_sample_agrees_and_positive_when_they_disagree() -> None:
    one = torch.softmax(torch.randn(8, 10), -1)
    same = uncertainty.uncertainty_scores(one.expand(30, 8, 10))
    assert torch.allclose(same["mutual_information"], torch.zeros(8), atol=1e-6)
    assert torch.allclose(same["entropy"], uncertainty.entropy(one))
    # two confident samples that disagree: entropy of the mean log 2, each sample's entropy ~ 0
    a, b = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    split = uncertainty.uncertainty_scores(torch.stack([a, b]))
    assert split["mutual_information"].item() == pytest.approx(math.log(2), abs=1e-6)


def test_regkit_mc_predict_agrees_with_the_benchmark_scores() -> None:
    from regkit.components.mc_dropout import mc_predict

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 32), torch.nn.ReLU(), torch.nn.Dropout(0.5), torch.nn.Linear(32, 4))
    pred = mc_predict(model, torch.randn(16, 6), samples=20, keep_samples=True)
    scores = uncertainty.uncertainty_scores(pred.samples)
    assert torch.allclose(scores["entropy"], pred.entropy, atol=1e-6)
    assert torch.allclose(scores["mutual_information"], pred.mutual_information, atol=1e-6)
    assert (pred.mutual_information > 0).any()


def _records(gains: list[float], base: float = 0.9) -> list[dict]:
    return [{"metrics": {"auroc_max_softmax": base + 0.001 * i, "auroc_mc_entropy": base + 0.001 * i + g}}
            for i, g in enumerate(gains)]


@pytest.mark.parametrize("gains, outcome", [
    ([0.02, 0.021, 0.019, 0.02, 0.022], "reproduced"),
    ([-0.02, -0.021, -0.019, -0.02, -0.022], "refuted"),
    ([0.02, -0.02, 0.01, -0.01, 0.0], "inconclusive"),
    ([0.02], "inconclusive"),  # one seed gives no interval
])
def test_verdict_follows_the_paired_interval_of_the_entropy_auroc_gain(gains: list[float], outcome: str) -> None:
    comparison = uncertainty.difference(_records(gains), "auroc_mc_entropy")
    assert uncertainty.verdict(comparison) == outcome


def test_paired_interval_sees_a_constant_gain_that_welch_finds_inside_the_seed_spread() -> None:
    records = [{"metrics": {"auroc_max_softmax": b, "auroc_mc_entropy": b + 0.004 + 0.0005 * (i % 2)}}
               for i, b in enumerate([0.90, 0.93, 0.95, 0.91, 0.94])]
    comparison = uncertainty.difference(records, "auroc_mc_entropy")
    assert comparison.gain == pytest.approx(0.0042) and 0 < comparison.low < comparison.gain < comparison.high
    assert comparison.outcome == "reproduced"
    assert uncertainty.welch_difference(records, "auroc_mc_entropy").outcome == "inconclusive"
