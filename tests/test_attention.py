"""Attention blocks: equality with naive references, attention-dropout only in training, masks,
bf16 autocast, squeeze-excitation, gradients, the S0 network, callback and recipe."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import regkit
from regkit.components.attention import (
    AdditiveAttention,
    AttentionPooling,
    DotProductAttention,
    MultiHeadSelfAttention,
    SqueezeExcitation,
    attention,
    record_attention,
)
from regkit.registry import AttentionSpec, NetworkSpec, RegularizerSpec

try:  # pytest puts tests/ on sys.path
    from conftest import slot_masks
except ImportError:  # pragma: no cover
    from tests.conftest import slot_masks

try:
    from conftest import RECIPES, regkit_main
except ImportError:  # pragma: no cover
    from tests.conftest import RECIPES, regkit_main

NEG_INF = float("-inf")


@pytest.fixture(autouse=True)
def _seed_one_thread():
    """Seeded, and one intra-op thread: these tensors are tiny, and on a loaded machine a second
    OpenMP thread that gets descheduled stalls every op (steps went from 16 ms to 900 ms)."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def naive_mhsa(block: MultiHeadSelfAttention, x, key_padding_mask=None, causal=False):
    """softmax(QKᵀ/sqrt(d) + mask) V with the block's own projections, written out."""
    N, L, E = x.shape
    H, d = block.num_heads, E // block.num_heads
    q, k, v = F.linear(x, block.in_proj.weight, block.in_proj.bias).split(E, dim=-1)
    q, k, v = (t.reshape(N, L, H, d).transpose(1, 2) for t in (q, k, v))
    scores = q @ k.transpose(-1, -2) / math.sqrt(d)
    if key_padding_mask is not None:
        scores = scores.masked_fill(key_padding_mask[:, None, None, :], NEG_INF)
    if causal:
        scores = scores.masked_fill(torch.ones(L, L, dtype=torch.bool).triu(1), NEG_INF)
    w = scores.softmax(-1)
    return block.out_proj((w @ v).transpose(1, 2).reshape(N, L, E)), w


def padding_mask(N: int, L: int) -> torch.Tensor:
    """Sequence n keeps its first L - 2n positions (at least one), the rest is padding."""
    lengths = torch.tensor([max(1, L - 2 * n) for n in range(N)])
    return torch.arange(L)[None, :] >= lengths[:, None]


MASK_CASES = [(False, False), (True, False), (False, True), (True, True)]


@pytest.mark.parametrize("padded,causal", MASK_CASES)
def test_self_attention_equals_naive_reference_in_eval(padded: bool, causal: bool) -> None:
    block = MultiHeadSelfAttention(32, num_heads=4, attn_dropout=0.3, dropout_p=0.3).eval()
    x = torch.randn(4, 12, 32)
    kpm = padding_mask(4, 12) if padded else None
    ref_out, ref_w = naive_mhsa(block, x, kpm, causal)
    fast = block(x, key_padding_mask=kpm, causal=causal)  # fused SDPA path
    out, w = block(x, key_padding_mask=kpm, causal=causal, need_weights=True)  # explicit path
    torch.testing.assert_close(fast, ref_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(w, ref_w, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("padded,causal", MASK_CASES)
def test_masked_positions_get_zero_weight_and_do_not_leak(padded: bool, causal: bool) -> None:
    block = MultiHeadSelfAttention(16, num_heads=2).eval()
    N, L = 4, 10
    x = torch.randn(N, L, 16)
    kpm = padding_mask(N, L) if padded else torch.zeros(N, L, dtype=torch.bool)
    _, w = block(x, key_padding_mask=kpm if padded else None, causal=causal, need_weights=True)
    blocked = kpm[:, None, None, :].expand_as(w)
    if causal:
        blocked = blocked | torch.ones(L, L, dtype=torch.bool).triu(1)
    assert bool(blocked.any()) == (padded or causal)
    if blocked.any():
        assert w[blocked].abs().max().item() == 0.0
    torch.testing.assert_close(w.sum(-1), torch.ones(N, 2, L))
    # The fast path: changing masked inputs leaves every query that cannot see them unchanged.
    x2 = x.clone()
    if padded:
        x2[kpm] += 10 * torch.randn_like(x2[kpm])
    if causal:
        x2[:, L // 2 :] += 10  # the future of the first half
    y1 = block(x, key_padding_mask=kpm if padded else None, causal=causal)
    y2 = block(x2, key_padding_mask=kpm if padded else None, causal=causal)
    keep = ~kpm
    if causal:
        keep = keep & (torch.arange(L) < L // 2)[None]
    if padded or causal:
        torch.testing.assert_close(y1[keep], y2[keep], atol=1e-5, rtol=1e-5)
        assert not torch.allclose(y1, y2)  # the change is visible somewhere, so the check can fail


def test_fully_masked_query_gets_zero_weights_on_both_paths() -> None:
    q = torch.randn(1, 1, 3, 8)
    mask = torch.tensor([[True, True, False], [False, False, False], [True, False, False]])
    fast, _ = attention(q, q, q, mask)
    slow, w = attention(q, q, q, mask, need_weights=True)
    assert w[0, 0, 1].abs().sum() == 0 and fast[0, 0, 1].abs().sum() == 0
    torch.testing.assert_close(fast, slow)


def test_sdpa_attention_dropout_rate_and_scaling() -> None:
    """With uniform weights 1/S and one-hot values the SDPA output *is* the dropped weight matrix:
    a fraction p of entries is zero and the rest are (1/S)/(1-p)."""
    p, S = 0.3, 64
    q = torch.zeros(8, 4, S, 16)
    v = torch.eye(S).expand(8, 4, S, S)
    out, _ = attention(q, q, v, dropout_p=p)
    zero = (out == 0).float().mean().item()
    assert abs(zero - p) < 0.01, zero
    torch.testing.assert_close(out[out != 0], torch.full_like(out[out != 0], 1 / S / (1 - p)))
    eval_out, _ = attention(q, q, v, dropout_p=0.0)
    torch.testing.assert_close(eval_out, torch.full_like(eval_out, 1 / S))


def test_attention_dropout_only_in_training_and_unbiased() -> None:
    block = MultiHeadSelfAttention(16, num_heads=2, attn_dropout=0.5)  # no output dropout
    x = torch.randn(2, 8, 16)
    block.train()
    a, b = block(x), block(x)
    assert not torch.allclose(a, b)
    with torch.no_grad():  # 2000 copies in one batch: each gets its own dropout masks
        mean = block(x.repeat(2000, 1, 1)).view(2000, *x.shape).mean(0)
    block.eval()
    e1, e2 = block(x), block(x)
    assert torch.equal(e1, e2)
    # inverted dropout on the weights keeps the expected output: mean of training outputs -> eval output
    assert (mean - e1).abs().max().item() < 0.05, (mean - e1).abs().max().item()
    assert (a - e1).abs().max().item() > 0.05  # a single training call is far from it


@pytest.mark.parametrize(
    "block,args",
    [
        (DotProductAttention(8, attn_dropout=0.5), "qv"),
        (AdditiveAttention(8, attn_dropout=0.5), "qv"),
        (AttentionPooling(8, num_heads=2, attn_dropout=0.5), "x"),
    ],
)
def test_other_blocks_drop_only_in_training(block, args: str) -> None:
    x = torch.randn(3, 16, 8)
    inputs = (x[:, :4], x) if args == "qv" else (x,)
    block.train()
    assert not torch.allclose(block(*inputs), block(*inputs))
    block.eval()
    assert torch.equal(block(*inputs), block(*inputs))


@pytest.mark.parametrize("score,use_scale,scaled", [("dot", False, False), ("dot", True, True), ("general", False, True)])
def test_dot_product_attention_equals_luong_reference(score: str, use_scale: bool, scaled: bool) -> None:
    block = DotProductAttention(8, key_dim=8, score=score, use_scale=use_scale, scaled=scaled).eval()
    if block.scale is not None:
        block.scale.data.fill_(0.7)
    q, v = torch.randn(3, 5, 8), torch.randn(3, 9, 8)
    kpm = padding_mask(3, 9)
    k = v if score == "dot" else v @ block.key_proj.weight.T
    scores = q @ k.transpose(1, 2) * (0.7 if use_scale else 1.0) / (math.sqrt(8) if scaled else 1.0)
    w_ref = scores.masked_fill(kpm[:, None, :], NEG_INF).softmax(-1)
    out, w = block(q, v, key_padding_mask=kpm, need_weights=True)
    torch.testing.assert_close(block(q, v, key_padding_mask=kpm), w_ref @ v, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out, w_ref @ v, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(w, w_ref, atol=1e-6, rtol=1e-5)
    assert w[kpm[:, None, :].expand_as(w)].abs().max() == 0


def test_additive_attention_equals_bahdanau_reference() -> None:
    block = AdditiveAttention(6, key_dim=10, hidden=7).eval()
    q, keys, values = torch.randn(2, 3, 6), torch.randn(2, 5, 10), torch.randn(2, 5, 4)
    kpm = padding_mask(2, 5)
    e = torch.stack([
        torch.stack([
            block.v(torch.tanh(block.query_proj(q[n, i]) + block.key_proj(keys[n, j]))).squeeze(-1)
            for j in range(5)
        ], -1)
        for n in range(2) for i in range(3)
    ]).view(2, 3, 5)
    w_ref = e.masked_fill(kpm[:, None, :], NEG_INF).softmax(-1)
    out, w = block(q, values, keys, key_padding_mask=kpm, need_weights=True)
    torch.testing.assert_close(out, w_ref @ values, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(w, w_ref)
    one, w_one = block(q[:, 0], values, keys, key_padding_mask=kpm, need_weights=True)  # a decoder state
    assert one.shape == (2, 4) and w_one.shape == (2, 5)
    torch.testing.assert_close(one, out[:, 0])


def test_attention_pooling_equals_reference_and_respects_mask() -> None:
    block = AttentionPooling(8, num_heads=2).eval()
    x = torch.randn(3, 6, 8)
    kpm = padding_mask(3, 6)
    k = block.key_proj(x).view(3, 6, 2, 4).transpose(1, 2)  # (N, H, L, d)
    scores = (k @ block.query.transpose(-1, -2)).squeeze(-1) / 2.0  # (N, H, L), 1/sqrt(4)
    w_ref = scores.masked_fill(kpm[:, None], NEG_INF).softmax(-1)
    ref = (w_ref.unsqueeze(-1) * x.view(3, 6, 2, 4).transpose(1, 2)).sum(2).reshape(3, 8)
    out, w = block(x, key_padding_mask=kpm, need_weights=True)
    torch.testing.assert_close(block(x, key_padding_mask=kpm), ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    assert w.shape == (3, 2, 6) and w[kpm[:, None].expand_as(w)].abs().max() == 0


def test_squeeze_excitation_shapes_and_gating() -> None:
    se = SqueezeExcitation(32, reduction=4)
    x = torch.randn(5, 32, 7, 9) * 3
    y, gates = se(x, need_weights=True)
    assert y.shape == x.shape and gates.shape == (5, 32)
    assert gates.min() >= 0 and gates.max() <= 1
    torch.testing.assert_close(y, x * gates[:, :, None, None])
    # saturate the gate: a large negative bias closes every channel, a large positive one opens it
    with torch.no_grad():
        se.fc2.bias.fill_(-50.0)
    assert se(x).abs().max() < 1e-10
    with torch.no_grad():
        se.fc2.bias.fill_(50.0)
    torch.testing.assert_close(se(x), x)
    assert SqueezeExcitation(8)(torch.randn(2, 8, 10)).shape == (2, 8, 10)  # (N, C, L) works too


def _all_blocks():
    return [
        (MultiHeadSelfAttention(16, num_heads=4, attn_dropout=0.2, dropout_p=0.1), lambda x: (x,)),
        (DotProductAttention(16, score="general", use_scale=True, attn_dropout=0.2), lambda x: (x[:, :3], x)),
        (AdditiveAttention(16, attn_dropout=0.2), lambda x: (x[:, :3], x)),
        (AttentionPooling(16, num_heads=2, attn_dropout=0.2), lambda x: (x,)),
        (SqueezeExcitation(16, reduction=4), lambda x: (x.transpose(1, 2).reshape(2, 16, 2, 4),)),
    ]


@pytest.mark.parametrize("index", range(5))
def test_gradients_flow_to_every_parameter_and_input(index: int) -> None:
    block, inputs = _all_blocks()[index]
    x = torch.randn(2, 8, 16, requires_grad=True)
    block.train()
    out = block(*inputs(x))
    out.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name, p in block.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("index", range(5))
@pytest.mark.parametrize("need_weights", [False, True])
def test_bf16_autocast_shapes_and_dtypes(index: int, need_weights: bool) -> None:
    block, inputs = _all_blocks()[index]
    x = torch.randn(2, 8, 16)
    block.eval()
    reference = block(*inputs(x))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        result = block(*inputs(x), need_weights=need_weights)
    out, w = result if need_weights else (result, None)
    assert out.shape == reference.shape
    assert out.dtype == torch.bfloat16 or index == 4  # SE multiplies the fp32 input by its gates
    assert torch.isfinite(out.float()).all()
    torch.testing.assert_close(out.float(), reference, atol=0.1, rtol=0.05)
    if need_weights:
        assert torch.isfinite(w.float()).all() and w.float().min() >= 0


def test_registered_and_buildable_from_specs() -> None:
    assert {"multi_head_self_attention", "dot_product_attention", "additive_attention", "attention_pooling",
            "squeeze_excitation"} <= set(regkit.available("attention"))
    spec = AttentionSpec.parse({"name": "multi_head_self_attention", "num_heads": 2, "attn_dropout": 0.2,
                                "dropout": {"name": "dropout", "p": 0.3}})
    block = spec.build(embed_dim=8)
    assert block.attn_dropout == 0.2 and block.dropout.p == 0.3 and block(torch.randn(1, 3, 8)).shape == (1, 3, 8)
    with pytest.raises(Exception, match="attn_dropout"):
        regkit.build("attention", "multi_head_self_attention", embed_dim=8, attn_dropout=1.0)
    with pytest.raises(Exception, match="divisible"):
        regkit.build("attention", "multi_head_self_attention", embed_dim=10, num_heads=4)


def test_attention_classifier_reads_images_as_rows_and_records_maps() -> None:
    net = NetworkSpec.parse({"name": "attention_classifier", "d_model": 32, "num_heads": 2,
                             "dropout": {"name": "dropout", "p": 0.1}}).build().eval()
    images = torch.randn(3, 1, 28, 28)
    logits = net(images)
    assert logits.shape == (3, 10)
    torch.testing.assert_close(net(images.squeeze(1)), logits)
    with record_attention(net) as maps:
        net(images)
    assert maps["layers.0.attn"].shape == (3, 2, 28, 28) and maps["pool"].shape == (3, 1, 28)
    torch.testing.assert_close(maps["layers.1.attn"].sum(-1), torch.ones(3, 2, 28))
    with torch.no_grad():  # the rows are a sequence: permuting the rows changes the answer (positions)
        assert not torch.allclose(net(images.flip(2)), logits)
    # outside record_attention no weights are kept (fast path)
    net(images)
    assert all(getattr(m, "last_weights", None) is None for m in net.modules())


@pytest.mark.parametrize("norm", [None, "batch_norm"])
def test_attention_classifier_loss_falls(norm) -> None:
    net = NetworkSpec.parse({"name": "attention_classifier", "in_features": 6, "max_len": 10, "d_model": 16,
                             "num_heads": 2, "num_layers": 1, "ff_dim": 32, "out_features": 2, "norm": norm,
                             "dropout": {"name": "dropout", "p": 0.1}}).build()
    # class = whether the marker feature is switched on at some step of the sequence
    x = torch.randn(64, 10, 6)
    y = torch.randint(0, 2, (64,))
    x[torch.arange(64), torch.randint(0, 10, (64,)), 0] = 4.0 * y
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(25):
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.4 * losses[0], (losses[0], losses[-1])


def test_recipe_fast_dev_run_writes_attention_maps(tmp_path: Path) -> None:
    result = regkit_main("fit", "--config", str(RECIPES / "attention_dropout.yaml"), "--trainer.fast_dev_run", "2",
                         "--data.init_args.limit_train", "512")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "test/acc" in result.stdout + result.stderr
    pngs = list(tmp_path.rglob("attention_maps/*.png"))
    assert pngs and pngs[0].stat().st_size > 1000, pngs


def test_attention_map_callback_writes_png_and_wandb_image(tmp_path: Path) -> None:
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    from regkit.callbacks.attention_maps import AttentionMaps
    from regkit.loggers import WandbLogger
    from regkit.tasks import Classifier

    data = TensorDataset(torch.randn(32, 1, 12, 6), torch.randint(0, 3, (32,)))
    model = Classifier({"name": "attention_classifier", "in_features": 6, "max_len": 12, "d_model": 16,
                        "num_heads": 2, "num_layers": 1, "ff_dim": 16, "out_features": 3}, num_classes=3)
    callback = AttentionMaps(num_samples=2)
    logger = WandbLogger(save_dir=str(tmp_path / "runs"), offline=True)
    trainer = L.Trainer(max_epochs=2, logger=logger, callbacks=[callback], enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    trainer.fit(model, DataLoader(data, batch_size=8), DataLoader(data, batch_size=8))
    assert [p.name for p in callback.saved] == ["epoch=000.png", "epoch=001.png"]
    assert callback.saved[0].parent == tmp_path / "attention_maps"  # the trainer's default_root_dir
    assert all(p.stat().st_size > 1000 for p in callback.saved)
    assert model.training  # the callback restored the mode it found
    logger.experiment.finish()
    media = list((tmp_path / "runs").rglob("media/images/val/attention_maps*.png"))
    assert len(media) == 2, media


def test_sequence_norm_slot_layouts() -> None:
    from regkit.networks.attention import SequenceNorm
    from regkit.registry import NormSpec

    x = torch.randn(6, 9, 16) * 3 + 1
    reference = F.layer_norm(x, (16,))
    for spec in (None, NormSpec.parse("layer_norm"), NormSpec.parse({"name": "layer_norm", "over": "last"})):
        torch.testing.assert_close(SequenceNorm(spec, 16)(x), reference, atol=1e-5, rtol=1e-5)
    bn = SequenceNorm(NormSpec.parse("batch_norm"), 16).train()
    y = bn(x)  # each feature normalized over batch and time
    torch.testing.assert_close(y.mean((0, 1)), torch.zeros(16), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var((0, 1), unbiased=False), torch.ones(16), atol=1e-3, rtol=0)
    assert y.mean(-1).abs().max() > 0.1  # not normalized per position, so the layout matters


def test_mc_dropout_samples_attention_dropout_but_not_squeeze_excitation() -> None:
    from regkit.components.mc_dropout import mc_dropout, stochastic_modules

    net = NetworkSpec.parse({"name": "attention_classifier", "d_model": 16, "num_heads": 2, "num_layers": 1,
                             "ff_dim": 16, "attn_dropout": 0.3}).build().eval()  # no dropout slot
    x = torch.randn(2, 28, 28)
    assert torch.equal(net(x), net(x))
    with mc_dropout(net):
        assert not torch.allclose(net(x), net(x))  # only the attention-dropout is random here
    assert not net.training and torch.equal(net(x), net(x))
    assert not stochastic_modules(SqueezeExcitation(8))


def test_attention_classifier_variational_dropout_is_locked_over_positions():
    """(N, L, E) activations were read as time-first: one mask for the whole batch, new at every step."""
    from regkit.components.regularizers.recurrent import VariationalDropout

    torch.manual_seed(0)
    model = regkit.build("network", "attention_classifier", in_features=8, max_len=6, d_model=16, num_heads=2,
                         num_layers=1, ff_dim=16, out_features=3,
                         dropout=RegularizerSpec.parse({"name": "variational_dropout", "p": 0.5}))
    masks = [m for m in slot_masks(model, VariationalDropout, torch.randn(8, 6, 8)) if m.dim() == 3]
    assert len(masks) == 4  # embeddings, attention output, feed-forward hidden and output
    for mask in masks:
        assert (mask - mask[:, :1]).abs().max() < 1e-4, "one mask per sequence, the same at every position"
        assert (mask - mask[:1]).abs().amax() > 0.5, "different sequences get different masks"
