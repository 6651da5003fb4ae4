"""Components against their papers' formulas and independent implementations, written out here
(timm's drop_path, Merity's embedded_dropout, Keras' SpatialDropout / GaussianDropout /
AlphaDropout, naive softmax attention, a direct ECE) and torch built-ins, so the comparisons that
passed when regkit was checked stay true. No dependency beyond regkit's own.

Statistical checks are seeded and their tolerances are derived from the standard deviation of the
estimate (5 sigma: a false failure about once in 1.7 million runs, were the seed to change).
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import regkit
import regkit.tasks
from regkit.components.activation_penalties import ActivationRegularization, TemporalActivationRegularization
from regkit.components.attention import AdditiveAttention, AttentionPooling, MultiHeadSelfAttention
from regkit.gan.losses import Hinge, NonSaturating, Wasserstein
from regkit.gan.penalties import R1, WGANGradientPenalty
from regkit.components.penalties import L1, L2
from regkit.components.regularizers.drop_path import drop_path
from regkit.components.regularizers.dropout import AlphaDropout, Dropout, GaussianDropout
from regkit.components.regularizers.recurrent import EmbeddingDropout
from regkit.components.regularizers.spatial import SpatialDropout

SIGMAS = 5.0


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def within_binomial(fraction: float, p: float, n: int) -> bool:
    return abs(fraction - p) <= SIGMAS * math.sqrt(p * (1 - p) / n)


# ---- dropout family -----------------------------------------------------------------------------


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_is_torch_functional_dropout_in_distribution(p: float) -> None:
    """On the CPU regkit draws the mask from uniform numbers (faster than F.dropout's bernoulli_), so
    the masks differ from F.dropout's under one seed; what both must share is tested: the mask is
    ``u < 1 - p`` for the next uniform draws of the seeded stream, the drop rate is p within the
    binomial spread, kept units are x / (1 - p) exactly, and F.dropout's own output has the same
    rate and scaling."""
    x = torch.randn(256, 512)
    torch.manual_seed(1)
    ours = Dropout(p).train()(x)
    torch.manual_seed(1)
    torch.testing.assert_close(ours, x * (torch.rand(x.shape) < 1 - p).float().div_(1 - p), rtol=0, atol=0)
    theirs = F.dropout(x, p, True)
    for out in (ours, theirs):
        dropped = out == 0
        assert within_binomial(dropped.float().mean().item(), p, x.numel())
        torch.testing.assert_close(out[~dropped], x[~dropped] / (1 - p))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_dropout_of_half_precision_inputs_keeps_dtype_and_rate(dtype: torch.dtype) -> None:
    x = torch.ones(512, 512, dtype=dtype)
    out = Dropout(0.3).train()(x)
    assert out.dtype == dtype
    assert within_binomial((out == 0).float().mean().item(), 0.3, x.numel())
    assert set(out.unique().tolist()) == {0.0, torch.tensor(1 / 0.7, dtype=dtype).item()}


def test_dropout_scales_float64_exactly_and_keeps_channels_last() -> None:
    out = Dropout(0.1).train()(torch.ones(256, 256, dtype=torch.float64))
    assert out.dtype == torch.float64 and set(out.unique().tolist()) == {0.0, 1 / 0.9}  # not 1/0.9 rounded to float32
    maps = torch.randn(16, 8, 6, 6).contiguous(memory_format=torch.channels_last)
    assert Dropout(0.3).train()(maps).is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("default", [torch.bfloat16, torch.float64])
def test_dropout_masks_do_not_follow_the_default_dtype(default: torch.dtype) -> None:
    """Lightning's bf16-true sets a bfloat16 default dtype while the model runs: the mask's uniform draws
    stay float32 (bfloat16 draws would bias the rate by ~0.002 at p = 0.1), and a float32 input gives
    a float32 output under a float64 default."""
    x = torch.ones(2048, 2048)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(default)
    try:
        out = Dropout(0.1).train()(x)
    finally:
        torch.set_default_dtype(previous)
    assert out.dtype == torch.float32
    assert within_binomial((out == 0).float().mean().item(), 0.1, x.numel())


def timm_drop_path(x: torch.Tensor, drop_prob: float, training: bool = True, scale_by_keep: bool = True) -> torch.Tensor:
    """timm.layers.drop.drop_path, written out."""
    if drop_prob == 0.0 or not training:
        return x
    keep_prob = 1 - drop_prob
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    random_tensor = x.new_empty(shape).bernoulli_(keep_prob)
    if keep_prob > 0.0 and scale_by_keep:
        random_tensor.div_(keep_prob)
    return x * random_tensor


@pytest.mark.parametrize("scale_by_keep", [True, False])
def test_drop_path_is_bit_identical_to_timm(scale_by_keep: bool) -> None:
    x = torch.randn(64, 8, 5, 5)
    torch.manual_seed(3)
    ours = drop_path(x, 0.3, True, scale_by_keep)
    torch.manual_seed(3)
    assert torch.equal(ours, timm_drop_path(x, 0.3, True, scale_by_keep))


def merity_embedded_dropout(embed: nn.Embedding, words: torch.Tensor, dropout: float) -> torch.Tensor:
    """embed_regularize.embedded_dropout of salesforce/awd-lstm-lm, written out (scale=None)."""
    mask = embed.weight.data.new().resize_((embed.weight.size(0), 1)).bernoulli_(1 - dropout).expand_as(
        embed.weight) / (1 - dropout)
    masked_embed_weight = mask * embed.weight
    return F.embedding(words, masked_embed_weight, embed.padding_idx, embed.max_norm, embed.norm_type,
                       embed.scale_grad_by_freq, embed.sparse)


def test_embedding_dropout_is_bit_identical_to_merity() -> None:
    emb, words = nn.Embedding(500, 16), torch.randint(500, (12, 35))
    torch.manual_seed(4)
    ours = EmbeddingDropout(0.1).train().embed(emb, words)
    torch.manual_seed(4)
    assert torch.equal(ours, merity_embedded_dropout(emb, words, 0.1))


def test_spatial_dropout_matches_keras_noise_shape_statistics() -> None:
    """Keras SpatialDropout2D is Dropout with noise_shape (N, 1, 1, C): one draw per sample and
    channel; here channel-first (N, C, H, W), and (N, T, C) with channels_last as SpatialDropout1D."""
    p, n, c = 0.3, 512, 64
    out = SpatialDropout(p).train()(torch.ones(n, c, 4, 4))
    per_channel = out[:, :, :1, :1]
    assert torch.equal(out, per_channel.expand_as(out))  # constant over H, W
    kept = per_channel[per_channel != 0]
    torch.testing.assert_close(kept, torch.full_like(kept, 1 / (1 - p)))
    assert within_binomial((per_channel == 0).float().mean().item(), p, n * c)
    seq = SpatialDropout(p, channels_last=True).train()(torch.ones(n, 7, c))
    assert torch.equal(seq, seq[:, :1].expand_as(seq))  # constant over T
    assert within_binomial((seq[:, 0] == 0).float().mean().item(), p, n * c)


@pytest.mark.parametrize("p", [0.2, 0.5])
def test_gaussian_dropout_matches_keras_noise(p: float) -> None:
    """Keras GaussianDropout: x * N(1, rate / (1 - rate))."""
    n = 1_000_000
    noise = GaussianDropout(p).train()(torch.ones(n, dtype=torch.float64))
    std = math.sqrt(p / (1 - p))
    assert abs(noise.mean().item() - 1) <= SIGMAS * std / math.sqrt(n)
    assert abs(noise.std().item() - std) <= SIGMAS * std / math.sqrt(2 * n)


KERAS_ALPHA, KERAS_SCALE = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946


@pytest.mark.parametrize("feature", [False, True])
def test_alpha_dropout_matches_keras_formula(feature: bool) -> None:
    """Keras AlphaDropout: kept x -> a x + b, dropped -> a alpha' + b, alpha' = -scale * alpha,
    a = ((1 - rate) (1 + rate alpha'^2))^-1/2, b = -a alpha' rate; mean and variance kept."""
    p = 0.2
    alpha_p = -KERAS_ALPHA * KERAS_SCALE
    a = ((1 - p) * (1 + p * alpha_p**2)) ** -0.5
    b = -a * alpha_p * p
    x = torch.randn(200, 64, 8, 8, dtype=torch.float64)
    out = AlphaDropout(p, feature=feature).train()(x)
    kept = torch.isclose(out, a * x + b, rtol=0, atol=1e-9)
    dropped = torch.isclose(out, torch.full_like(out, a * alpha_p + b), rtol=0, atol=1e-9)
    assert torch.all(kept | dropped)
    draws = kept[:, :, 0, 0].numel() if feature else kept.numel()
    assert within_binomial(dropped.double().mean().item(), p, draws)
    if feature:
        assert torch.equal(dropped, dropped[:, :, :1, :1].expand_as(dropped))
    # the affine map keeps N(0, 1) inputs at mean 0 and variance 1
    elements = x.numel() if not feature else draws
    assert abs(out.mean().item()) <= SIGMAS * math.sqrt(2 / elements) + 1e-3
    assert abs(out.var().item() - 1) <= SIGMAS * math.sqrt(8 / elements) + 1e-3


# ---- attention ------------------------------------------------------------------------------------


def naive_attention(q, k, v, allowed=None):
    """softmax(q k^T / sqrt(d)) v, one query at a time; a query with nothing allowed gets zeros."""
    out = torch.zeros(*q.shape[:-1], v.shape[-1], dtype=q.dtype)
    for idx in torch.cartesian_prod(*[torch.arange(s) for s in q.shape[:-1]]).tolist():
        *lead, i = idx
        scores = torch.stack([(q[tuple(idx)] * k[(*lead, j)]).sum() for j in range(k.shape[-2])]) / math.sqrt(q.shape[-1])
        if allowed is not None:
            ok = allowed[tuple(idx)]
            if not ok.any():
                continue
            scores = scores.masked_fill(~ok, float("-inf"))
        weights = scores.exp() / scores.exp().sum()
        out[tuple(idx)] = (weights[:, None] * v[tuple(lead)]).sum(0)
    return out


@pytest.mark.parametrize("causal", [False, True])
def test_self_attention_equals_naive_softmax_attention(causal: bool) -> None:
    N, L, E, H = 2, 5, 8, 2
    attn = MultiHeadSelfAttention(E, H, attn_dropout=0.5, causal=causal).double().eval()
    x = torch.randn(N, L, E, dtype=torch.float64)
    padding = torch.zeros(N, L, dtype=torch.bool)
    padding[1, 3:] = True
    qkv = (x @ attn.in_proj.weight.T + attn.in_proj.bias).view(N, L, 3, H, E // H).permute(2, 0, 3, 1, 4)
    allowed = (~padding)[:, None, None, :].expand(N, H, L, L)
    if causal:
        allowed = allowed & torch.ones(L, L, dtype=torch.bool).tril()
    heads = naive_attention(qkv[0], qkv[1], qkv[2], allowed)  # (N, H, L, d)
    expected = heads.transpose(1, 2).reshape(N, L, E) @ attn.out_proj.weight.T + attn.out_proj.bias
    torch.testing.assert_close(attn(x, padding), expected, rtol=0, atol=1e-6)


def test_attention_pooling_equals_naive_softmax_attention() -> None:
    N, L, E, H = 3, 6, 8, 2
    pool = AttentionPooling(E, H, attn_dropout=0.5).double().eval()
    x = torch.randn(N, L, E, dtype=torch.float64)
    heads = lambda t: t.view(N, L, H, E // H).transpose(1, 2)  # noqa: E731
    q = pool.query.expand(N, -1, -1, -1)
    expected = naive_attention(q, heads(pool.key_proj(x)), heads(x)).reshape(N, E)
    torch.testing.assert_close(pool(x), expected, rtol=0, atol=1e-6)


def test_additive_attention_equals_bahdanau_formula() -> None:
    N, Tq, Tk, D = 2, 3, 5, 6
    attn = AdditiveAttention(D, attn_dropout=0.5).double().eval()
    q, v = torch.randn(N, Tq, D, dtype=torch.float64), torch.randn(N, Tk, D, dtype=torch.float64)
    expected = torch.zeros(N, Tq, D, dtype=torch.float64)
    for n in range(N):
        for i in range(Tq):
            scores = torch.stack([attn.v(torch.tanh(attn.query_proj(q[n, i]) + attn.key_proj(v[n, j]))).squeeze()
                                  for j in range(Tk)])
            expected[n, i] = (scores.softmax(0)[:, None] * v[n]).sum(0)
    torch.testing.assert_close(attn(q, v), expected, rtol=0, atol=1e-6)


# ---- GAN losses and gradient penalties ----------------------------------------------------------------


def test_gan_losses_equal_their_formulas() -> None:
    real, fake = torch.randn(64, dtype=torch.float64), torch.randn(64, dtype=torch.float64)
    sig = torch.sigmoid
    smooth = 0.9
    ns_d = -(smooth * sig(real).log() + (1 - smooth) * (1 - sig(real)).log()).mean() - (1 - sig(fake)).log().mean()
    torch.testing.assert_close(NonSaturating(smooth).d_loss(real, fake).double(), ns_d)
    torch.testing.assert_close(NonSaturating().g_loss(fake).double(), -sig(fake).log().mean())
    hinge_d = torch.clamp(1 - real, min=0).mean() + torch.clamp(1 + fake, min=0).mean()
    torch.testing.assert_close(Hinge().d_loss(real, fake).double(), hinge_d)
    torch.testing.assert_close(Hinge().g_loss(fake).double(), -fake.mean())
    torch.testing.assert_close(Wasserstein().d_loss(real, fake).double(), fake.mean() - real.mean())
    torch.testing.assert_close(Wasserstein().g_loss(fake).double(), -fake.mean())


class Quadratic(nn.Module):
    """D(x) = 0.5 c * sum(x^2) + w . x: its input gradient c x + w is known in closed form."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.c = nn.Parameter(torch.tensor(1.5))
        self.w = nn.Parameter(torch.randn(shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (0.5 * self.c * x.pow(2) + self.w * x).flatten(1).sum(1)


def test_r1_equals_its_closed_form() -> None:
    real = torch.randn(8, 1, 4, 4)
    d = Quadratic((1, 4, 4))
    grad = (d.c * real + d.w).detach()
    expected = 0.5 * 10.0 * grad.pow(2).flatten(1).sum(1).mean()
    torch.testing.assert_close(R1(10.0)(d, real=real), expected)


def test_gradient_penalty_equals_its_closed_form() -> None:
    real, fake = torch.randn(8, 1, 4, 4), torch.randn(8, 1, 4, 4)
    d = Quadratic((1, 4, 4))
    torch.manual_seed(5)
    value = WGANGradientPenalty(10.0)(d, real=real, fake=fake)
    torch.manual_seed(5)
    e = torch.rand(8, 1, 1, 1)  # the same interpolation draw
    x_hat = e * real + (1 - e) * fake
    norm = (d.c * x_hat + d.w).detach().flatten(1).norm(dim=1)
    torch.testing.assert_close(value, 10.0 * (norm - 1).pow(2).mean())


# ---- activation and weight penalties -------------------------------------------------------------------


def test_ar_and_tar_equal_merity_formulas() -> None:
    """AR = alpha * mean(h^2) on dropped outputs; TAR = beta * mean((h_t - h_{t-1})^2) (Merity et al., 2017)."""
    h = torch.randn(4, 9, 6, dtype=torch.float64)
    ar = sum(float(v) ** 2 for v in h.flatten()) / h.numel()
    diffs = [float(h[n, t, j] - h[n, t - 1, j]) ** 2 for n in range(4) for t in range(1, 9) for j in range(6)]
    assert ActivationRegularization(2.0)(None, dropped_outputs=h).item() == pytest.approx(2.0 * ar, rel=1e-12)
    assert TemporalActivationRegularization(1.0)(None, outputs=h).item() == pytest.approx(sum(diffs) / len(diffs), rel=1e-12)


def test_l1_and_l2_sum_over_weight_matrices_only() -> None:
    net = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.Conv1d(4, 3, 2), nn.Linear(3, 2))
    weights = [net[0].weight.detach(), net[2].weight.detach(), net[3].weight.detach()]  # not biases, norm scales
    l2 = sum(float(w) ** 2 for t in weights for w in t.flatten())
    l1 = sum(abs(float(w)) for t in weights for w in t.flatten())
    assert L2(0.1)(net).item() == pytest.approx(0.1 * l2, rel=1e-5)
    assert L1(0.01)(net).item() == pytest.approx(0.01 * l1, rel=1e-5)


# ---- calibration ---------------------------------------------------------------------------------------


def direct_ece(probs: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> float:
    """Expected calibration error (Guo et al., 2017): sum over equal-width confidence bins of
    |bin| / n * |accuracy(bin) - confidence(bin)|, bins (k/B, (k+1)/B]."""
    conf, pred = probs.max(1)
    total = 0.0
    for k in range(bins):
        inside = (conf > k / bins) & (conf <= (k + 1) / bins)
        if inside.any():
            acc = (pred[inside] == labels[inside]).double().mean()
            total += inside.double().mean().item() * abs(acc.item() - conf[inside].double().mean().item())
    return total


def test_classifier_ece_equals_direct_computation() -> None:
    task = regkit.tasks.Classifier(network={"name": "mlp", "in_features": 4, "hidden": [8], "out_features": 5},
                                   num_classes=5)
    probs = torch.randn(2000, 5).mul(2).softmax(-1)
    labels = torch.multinomial(probs, 1).squeeze(1)  # roughly calibrated, so the ECE is small but not 0
    task.test_ece.update(probs, labels)
    assert task.test_ece.compute().item() == pytest.approx(direct_ece(probs, labels), abs=1e-6)
