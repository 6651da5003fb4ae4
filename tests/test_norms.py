"""Norm layers: batch norm picks its rank from the input, ghost batch norm normalizes each ghost
batch on its own, layer norm over channels / last axis / everything."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import regkit
from regkit.registry import NormSpec
from regkit.components.norm import BatchNorm, GhostBatchNorm, LayerNorm


@pytest.mark.parametrize("shape", [(32, 6), (32, 6, 10), (32, 6, 5, 4), (16, 6, 3, 4, 5)])
def test_batch_norm_any_rank_matches_torch(shape):
    torch.manual_seed(0)
    x = torch.randn(shape) * 3 + 2
    bn = BatchNorm(6)
    ref = F.batch_norm(x, None, None, training=True)
    assert torch.allclose(bn(x), ref, atol=1e-5)


@pytest.mark.parametrize("track", [True, False])
def test_batch_norm_is_torchs_batch_norm_in_training_and_eval(track):
    """Same outputs, running statistics and state-dict keys as torch's BatchNorm2d, step by step
    (checkpoints of either load into the other), and torch recognizes it as a batch norm."""
    torch.manual_seed(0)
    ours = BatchNorm(4, momentum=0.3, track_running_stats=track)
    ref = torch.nn.BatchNorm2d(4, momentum=0.3, track_running_stats=track)
    assert ours.state_dict().keys() == ref.state_dict().keys()
    for _ in range(3):
        x = torch.randn(8, 4, 3, 3) * 2 + 1
        assert torch.equal(ours(x), ref(x))
    assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), ref.state_dict().values()))
    ours.eval(), ref.eval()
    x = torch.randn(8, 4, 3, 3)
    assert torch.equal(ours(x), ref(x))
    # momentum None: a cumulative average (ghost batch norm with one ghost batch is plain batch norm)
    cumulative, cumulative_ref = GhostBatchNorm(4, virtual_batch_size=8, momentum=None), torch.nn.BatchNorm2d(4, momentum=None)
    for batch in (x, x * 3 + 1):
        assert torch.equal(cumulative(batch), cumulative_ref(batch))
    assert torch.equal(cumulative.running_var, cumulative_ref.running_var)
    synced = torch.nn.SyncBatchNorm.convert_sync_batchnorm(torch.nn.Sequential(ours))  # --trainer.sync_batchnorm
    assert isinstance(synced[0], torch.nn.SyncBatchNorm)
    with pytest.raises(ValueError, match=r"\(N, C, \*\) input, got shape \(4,\)"):
        ours(torch.randn(4))


@pytest.mark.parametrize("shape", [(64, 5), (64, 5, 7), (64, 5, 6, 3)])
def test_ghost_batch_norm_normalizes_each_ghost_batch(shape):
    torch.manual_seed(0)
    x = torch.randn(shape) * 3 + 1
    x[16:32] += 5  # ghost batches with different statistics
    gbn = GhostBatchNorm(5, virtual_batch_size=16)
    with torch.no_grad():
        gbn.weight.uniform_(0.5, 2)
        gbn.bias.uniform_(-1, 1)
    out = gbn(x)
    for i in range(4):
        chunk = x[16 * i : 16 * (i + 1)]
        ref = F.batch_norm(chunk, None, None, gbn.weight, gbn.bias, training=True, eps=gbn.eps)
        assert torch.allclose(out[16 * i : 16 * (i + 1)], ref, atol=1e-4)
    assert not torch.allclose(out, F.batch_norm(x, None, None, gbn.weight, gbn.bias, training=True), atol=1e-2)


def test_ghost_batch_norm_running_stats_and_eval():
    torch.manual_seed(0)
    x = torch.randn(128, 4, 3) * 2 + 3
    gbn = GhostBatchNorm(4, virtual_batch_size=32, momentum=None)  # cumulative average
    gbn(x)
    ghosts = x.reshape(4, 32, 4, 3)
    mean = ghosts.mean((1, 3)).mean(0)
    var = ghosts.var((1, 3), correction=1).mean(0)
    assert torch.allclose(gbn.running_mean, mean, atol=1e-5)
    assert torch.allclose(gbn.running_var, var, atol=1e-4)
    gbn.eval()
    ref = F.batch_norm(x, gbn.running_mean, gbn.running_var, gbn.weight, gbn.bias, False, 0.0, gbn.eps)
    assert torch.equal(gbn(x), ref)


def test_ghost_batch_norm_uneven_and_small_batches():
    torch.manual_seed(0)
    x = torch.randn(50, 3)
    gbn = GhostBatchNorm(3, virtual_batch_size=16)  # 4 ghost batches of 13, 13, 12, 12
    out = gbn(x)
    for chunk_in, chunk_out in zip(torch.tensor_split(x, 4), torch.tensor_split(out, 4)):
        assert torch.allclose(chunk_out, F.batch_norm(chunk_in, None, None, training=True), atol=1e-5)
    small = torch.randn(10, 3)  # one ghost batch: plain batch norm
    assert torch.allclose(GhostBatchNorm(3, 16)(small), F.batch_norm(small, None, None, training=True), atol=1e-5)


def test_ghost_batch_norm_bf16_and_grad():
    x = torch.randn(64, 8, 4, 4, requires_grad=True)
    gbn = GhostBatchNorm(8, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = gbn(x.bfloat16())
    assert out.dtype == torch.bfloat16
    out.float().pow(2).sum().backward()
    assert torch.isfinite(x.grad).all() and gbn.weight.grad is not None


@pytest.mark.parametrize(
    "over,shape,dims",
    [("channels", (8, 6, 5, 4), (1,)), ("channels", (8, 6), (1,)), ("last", (8, 10, 6), (2,)), ("all", (8, 6, 5, 4), (1, 2, 3))],
)
def test_layer_norm_axes(over, shape, dims):
    torch.manual_seed(0)
    x = torch.randn(shape) * 4 + 2
    out = LayerNorm(6, over=over)(x)
    assert out.shape == x.shape
    assert torch.allclose(out.mean(dims), torch.zeros(()), atol=1e-5)
    assert torch.allclose(out.var(dims, correction=0), torch.ones(()), atol=1e-3)
    assert torch.equal(LayerNorm(6, over=over).eval()(x), LayerNorm(6, over=over)(x))  # same in eval


def test_norms_fill_any_channel_first_slot():
    for name in ["batch_norm", "ghost_batch_norm", "layer_norm"]:
        net = regkit.build("network", "small_cnn", channels=[4, 8], hidden=16, norm=NormSpec(name))
        assert net(torch.randn(40, 1, 28, 28)).shape == (40, 10)
        mlp = regkit.build("network", "mlp", hidden=[16], norm=NormSpec(name))
        assert mlp(torch.randn(40, 784)).shape == (40, 10)
    with pytest.raises(ValueError, match="over"):
        LayerNorm(4, over="rows")
