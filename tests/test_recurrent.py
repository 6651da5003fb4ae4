"""Recurrent regularizers (locked, embedding and weight dropout), AR/TAR and the RNN networks."""
from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

import regkit
from regkit.components.activation_penalties import ActivationRegularization, TemporalActivationRegularization
from regkit.components.mc_dropout import mc_dropout
from regkit.components.regularizers.base import DropoutBase
from regkit.components.regularizers.recurrent import EmbeddingDropout, VariationalDropout, WeightDrop, weight_drop
from regkit.registry import RegularizerSpec

try:  # pytest puts tests/ on sys.path
    from conftest import slot_masks
except ImportError:  # pragma: no cover
    from tests.conftest import slot_masks


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


# ---- variational (locked) dropout -------------------------------------------------------------


@pytest.mark.parametrize("batch_first", [False, True])
def test_locked_mask_shared_over_time_and_different_across_sequences(batch_first: bool) -> None:
    T, N, C = 30, 64, 50
    x = torch.rand(N, T, C) + 0.5 if batch_first else torch.rand(T, N, C) + 0.5
    drop = VariationalDropout(0.5, batch_first=batch_first).train()
    ratio = drop(x) / x  # the mask, scaled: 0 or 2
    time_dim = 1 if batch_first else 0
    first = ratio.select(time_dim, 0).unsqueeze(time_dim)
    assert torch.equal(ratio, first.expand_as(ratio)), "mask changes across time steps"
    assert set(ratio.unique().tolist()) <= {0.0, 2.0}
    masks = first.squeeze(time_dim)  # (N, C): one mask per sequence
    distinct = {tuple(m.tolist()) for m in masks}
    assert len(distinct) == N, "sequences share a mask"
    # and a new call draws new masks
    assert not torch.equal(drop(x) / x, ratio)


def test_locked_rate_and_expectation() -> None:
    p = 0.3
    x = torch.ones(5, 2000, 100)
    drop = VariationalDropout(p)
    y = drop(x)
    dropped = (y[0] == 0).float().mean().item()
    assert abs(dropped - p) < 0.01
    assert abs(y.mean().item() - 1.0) < 0.02  # E[out] = in
    drop.eval()
    assert drop(x) is x
    assert VariationalDropout(0.0)(x) is x


def test_locked_rejects_bad_rate() -> None:
    with pytest.raises(regkit.BadInput, match=r"p: must be in \[0, 1\)"):
        VariationalDropout(1.0)
    with pytest.raises(regkit.BadInput, match=r"p: must be in \[0, 1\)"):
        WeightDrop(-0.1)


def test_weight_drop_is_a_dropout_base() -> None:
    """Its rate is validated when set later too, it prints it, and it is the identity in eval mode
    or at p = 0 (DropoutBase's forward), like every other dropout-like layer."""
    drop = WeightDrop(0.3, names="weight_hh_l0")
    assert isinstance(drop, DropoutBase) and repr(drop) == "WeightDrop(p=0.3)"
    w = torch.randn(6, 4)
    assert drop.eval()(w) is w
    drop.train().p = 0.0
    assert drop(w) is w
    with pytest.raises(regkit.BadInput):
        drop.p = 1.0


# ---- embedding dropout ------------------------------------------------------------------------


def test_embedding_dropout_drops_whole_word_types() -> None:
    emb = nn.Embedding(1000, 16)
    nn.init.uniform_(emb.weight, 0.5, 1.5)  # no zero entries of its own
    drop = EmbeddingDropout(0.25)
    tokens = torch.randint(1000, (40, 60))
    out = drop.embed(emb, tokens)
    zero = (out == 0).all(-1)  # (40, 60): whole vectors are zero or not at all
    assert ((out == 0).any(-1) == zero).all()
    dropped_types = set(tokens[zero].tolist())
    kept_types = set(tokens[~zero].tolist())
    assert dropped_types and not (dropped_types & kept_types), "a word type is dropped at one place only"
    frac = len(dropped_types) / len(dropped_types | kept_types)
    assert abs(frac - 0.25) < 0.06
    kept = ~zero
    torch.testing.assert_close(out[kept], emb(tokens)[kept] / 0.75)
    drop.eval()
    assert torch.equal(drop.embed(emb, tokens), emb(tokens))


# ---- weight drop -----------------------------------------------------------------------------


def _lstm() -> nn.LSTM:
    return nn.LSTM(8, 12, num_layers=2, batch_first=True)


def test_weight_drop_changes_effective_weight_in_training_only() -> None:
    lstm = weight_drop(_lstm(), p=0.5)
    stored = lstm.parametrizations.weight_hh_l0.original
    before = stored.detach().clone()
    effective = lstm.weight_hh_l0
    zeros = (effective == 0).float().mean().item()
    assert abs(zeros - 0.5) < 0.05
    torch.testing.assert_close(effective[effective != 0], (stored * 2)[effective != 0])
    assert not torch.equal(lstm.weight_hh_l0, lstm.weight_hh_l0), "a new mask each time"
    lstm.eval()
    assert torch.equal(lstm.weight_hh_l0, stored)
    torch.testing.assert_close(stored, before)  # the stored parameter is untouched
    # input weights and biases are not dropped
    assert not parametrize.is_parametrized(lstm, "weight_ih_l0")


def test_weight_drop_outputs_and_gradients() -> None:
    lstm = weight_drop(_lstm(), p=0.5)
    x = torch.randn(3, 7, 8)
    lstm.train()
    with parametrize.cached():
        a = lstm(x)[0]
    b = lstm(x)[0]
    assert not torch.allclose(a, b), "different masks give different outputs in training"
    lstm.eval()
    torch.testing.assert_close(lstm(x)[0], lstm(x)[0])
    lstm.train()
    lstm(x)[0].pow(2).sum().backward()
    for name in ("weight_hh_l0", "weight_hh_l1"):
        grad = getattr(lstm.parametrizations, name).original.grad
        assert grad is not None and grad.abs().sum() > 0
        # dropped entries get no gradient... but only for one mask; with cached() below check it exactly
    lstm.zero_grad()
    with parametrize.cached():
        eff = lstm.weight_hh_l0
        lstm(x)[0].pow(2).sum().backward()
    grad = lstm.parametrizations.weight_hh_l0.original.grad
    assert torch.all(grad[eff == 0] == 0) and grad[eff != 0].abs().sum() > 0


def test_weight_drop_equals_lstm_with_that_weight() -> None:
    """The parametrized LSTM computes exactly what nn.LSTM computes with the dropped matrix."""
    lstm = weight_drop(_lstm(), p=0.4)
    plain = _lstm()
    x = torch.randn(2, 5, 8)
    with parametrize.cached():
        with torch.no_grad():
            for name, _ in plain.named_parameters():
                getattr(plain, name).copy_(getattr(lstm, name))
        out = lstm(x)[0]
    torch.testing.assert_close(out, plain(x)[0])


@pytest.mark.parametrize("cls", [nn.LSTM, nn.GRU])
def test_weight_drop_draws_one_mask_per_forward_on_a_bare_rnn(cls) -> None:
    """Issue #13: torch's RNN reads a parametrized weight several times per call; outside
    parametrize.cached() every read drew a new mask. Every read within one call must agree and be
    the weight the output was computed with."""
    rnn = weight_drop(cls(8, 12, num_layers=2, batch_first=True), p=0.5)
    seen: dict[str, list[torch.Tensor]] = {"weight_hh_l0": [], "weight_hh_l1": []}
    for name, reads in seen.items():
        rnn.parametrizations[name][0].register_forward_hook(lambda m, args, out, reads=reads: reads.append(out.detach()))
    x = torch.randn(3, 5, 8)
    for _ in range(2):
        for reads in seen.values():
            reads.clear()
        out = rnn(x)[0]
        for name, reads in seen.items():
            assert reads and all(torch.equal(w, reads[0]) for w in reads), f"{name}: {len(reads)} reads, several masks"
        plain = cls(8, 12, num_layers=2, batch_first=True)
        with torch.no_grad():
            for name, _ in plain.named_parameters():
                getattr(plain, name).copy_(seen[name][0] if name in seen else getattr(rnn, name))
        torch.testing.assert_close(out, plain(x)[0])
    first_call = seen["weight_hh_l0"][0]
    rnn(x)
    assert not torch.equal(seen["weight_hh_l0"][-1], first_call), "the next call draws a new mask"
    assert not torch.equal(rnn.weight_hh_l0, rnn.weight_hh_l0), "outside a forward each read is fresh"


def test_weight_drop_keeps_the_fused_kernel_and_warns_nothing() -> None:
    lstm = weight_drop(_lstm(), p=0.5)
    x = torch.randn(4, 9, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any flatten_parameters / contiguity warning fails the test
        with torch.autograd.profiler.profile() as prof:
            with parametrize.cached():
                lstm(x)[0].sum().backward()
        lstm.flatten_parameters()
    ops = {e.name for e in prof.function_events}
    assert "aten::lstm" in ops, "nn.LSTM's fused op was not used"
    assert "aten::lstm_cell" not in ops


def test_weight_drop_needs_an_rnn_and_matching_names() -> None:
    with pytest.raises(ValueError, match="no nn.RNN"):
        weight_drop(nn.Linear(3, 3))
    with pytest.raises(ValueError, match="matches"):
        weight_drop(nn.GRU(3, 3), names="nothing*")


def test_mc_dropout_finds_recurrent_regularizers() -> None:
    net = regkit.build(
        "network", "rnn_lm", vocab_size=30, embedding_dim=8, hidden_size=8,
        input_dropout=RegularizerSpec.parse({"name": "variational_dropout", "p": 0.5}),
        weight_drop=RegularizerSpec.parse({"name": "weight_drop", "p": 0.5}),
    ).eval()
    tokens = torch.randint(30, (2, 6))
    torch.testing.assert_close(net(tokens).logits, net(tokens).logits)
    with mc_dropout(net):
        assert not torch.allclose(net(tokens).logits, net(tokens).logits)
        drops = [m for m in net.modules() if isinstance(m, (WeightDrop, VariationalDropout))]
        assert drops and all(m.training for m in drops)
    assert not any(m.training for m in net.modules())


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_mc_dropout_samples_the_cell_loop_recurrent_mask(cell: str) -> None:
    """Issue #13 bug 1: the recurrent mask of mode: cell_loop is the only noise here; MC dropout
    must sample it (it used to key off RecurrentStack's own training flag, left False)."""
    net = regkit.build(
        "network", "rnn_lm", vocab_size=30, cell=cell, embedding_dim=8, hidden_size=8,
        mode="cell_loop", recurrent_dropout=0.5,
    ).eval()
    tokens = torch.randint(30, (3, 6))
    torch.testing.assert_close(net(tokens).logits, net(tokens).logits)
    with mc_dropout(net):
        first, second = net(tokens).logits, net(tokens).logits
        assert not torch.allclose(first, second), "MC passes differ only through the recurrent mask"
        # the mask is drawn once per sequence: position 0 sees the zero initial state, so it agrees
        torch.testing.assert_close(first[:, 0], second[:, 0])
    assert not any(m.training for m in net.modules())


# ---- AR / TAR --------------------------------------------------------------------------------


def test_ar_and_tar_match_hand_computation() -> None:
    h = torch.tensor([[[1.0, 2.0], [3.0, 5.0], [0.0, 1.0]]])  # (N=1, T=3, H=2)
    ar = ActivationRegularization(strength=2.0)
    assert ar(None, dropped_outputs=h).item() == pytest.approx(2.0 * (1 + 4 + 9 + 25 + 0 + 1) / 6)
    tar = TemporalActivationRegularization(strength=1.0)
    # differences over time: (2, 3), (-3, -4) -> squares 4, 9, 9, 16
    assert tar(None, outputs=h).item() == pytest.approx((4 + 9 + 9 + 16) / 4)
    assert tar(None, outputs=h.transpose(0, 1), time_dim=0).item() == pytest.approx((4 + 9 + 9 + 16) / 4)
    with pytest.raises(ValueError, match="dropped_outputs"):
        ar(None)
    assert set(regkit.available("penalty")) >= {"ar", "tar"}


# ---- networks ---------------------------------------------------------------------------------


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("mode", ["fused", "cell_loop"])
def test_rnn_lm_shapes_state_and_gradients(cell: str, mode: str) -> None:
    spec = lambda name, **kw: RegularizerSpec.parse({"name": name, **kw})  # noqa: E731
    net = regkit.build(
        "network", "rnn_lm", vocab_size=40, cell=cell, embedding_dim=10, hidden_size=10, num_layers=2,
        embedding_dropout=spec("embedding_dropout", p=0.1), input_dropout=spec("variational_dropout"),
        layer_dropout=spec("variational_dropout"), output_dropout=spec("variational_dropout"),
        weight_drop=spec("weight_drop", p=0.3), tie_weights=True, mode=mode,
        recurrent_dropout=0.3 if mode == "cell_loop" else 0.0,
    )
    tokens = torch.randint(40, (3, 6))
    out = net(tokens)
    assert out.logits.shape == (3, 6, 40) and out.outputs.shape == (3, 6, 10)
    state = out.state if isinstance(out.state, tuple) else (out.state,)
    assert all(s.shape == (2, 3, 10) for s in state)
    net(tokens, out.state).logits.sum().backward()
    assert net.embedding.weight.grad is not None and net.decoder.weight is net.embedding.weight
    net.eval()  # eval is deterministic
    torch.testing.assert_close(net(tokens).logits, net(tokens).logits)


def test_cell_loop_matches_fused_without_dropout() -> None:
    """The per-step cell loop and the fused kernel compute the same function."""
    fused = regkit.build("network", "rnn_lm", vocab_size=20, embedding_dim=6, hidden_size=6, num_layers=1)
    loop = regkit.build("network", "rnn_lm", vocab_size=20, embedding_dim=6, hidden_size=6, num_layers=1,
                        mode="cell_loop")
    sd = fused.state_dict()
    loop.load_state_dict({k.replace("rnn.layers.0.", "rnn.layers.0.").replace("_l0", ""): v for k, v in sd.items()})
    tokens = torch.randint(20, (2, 5))
    a, b = fused(tokens), loop(tokens)
    torch.testing.assert_close(a.logits, b.logits)
    torch.testing.assert_close(a.state[0], b.state[0])


def test_cell_loop_hidden_mask_is_locked_per_sequence() -> None:
    net = regkit.build("network", "rnn_lm", vocab_size=20, embedding_dim=6, hidden_size=6, num_layers=1,
                       mode="cell_loop", recurrent_dropout=0.5)
    with pytest.raises(ValueError, match="cell_loop"):
        regkit.build("network", "rnn_lm", recurrent_dropout=0.5)
    tokens = torch.randint(20, (4, 5))
    torch.manual_seed(1)
    a = net(tokens).logits
    torch.manual_seed(1)
    assert torch.equal(a, net(tokens).logits)  # one draw per call: reproducible under a seed
    assert not torch.equal(a, net(tokens).logits)


def test_rnn_classifier_pools_and_ignores_padding() -> None:
    net = regkit.build("network", "rnn_classifier", vocab_size=30, num_classes=3, embedding_dim=8,
                       hidden_size=8, padding_idx=0, pooling="mean").eval()
    tokens = torch.randint(1, 30, (2, 5))
    padded = torch.cat([tokens, torch.zeros(2, 3, dtype=torch.long)], 1)
    torch.testing.assert_close(net(tokens), net(padded))
    for pooling in ("last", "max"):
        net.pooling = pooling
        torch.testing.assert_close(net(tokens), net(padded))
    bi = regkit.build("network", "rnn_classifier", vocab_size=30, num_classes=3, bidirectional=True,
                      num_layers=2, layer_dropout=RegularizerSpec.parse("variational_dropout"))
    assert bi(tokens).shape == (2, 3)


def test_rnn_spatial_dropout_drops_channels_over_time():
    """Keras' SpatialDropout1D on (N, T, C): one draw per sequence and channel, shared over T (the
    slot read T as the channel axis and dropped whole time steps)."""
    from regkit.components.regularizers.spatial import SpatialDropout

    torch.manual_seed(0)
    model = regkit.build("network", "rnn_lm", vocab_size=20, embedding_dim=16, hidden_size=16,
                         input_dropout=RegularizerSpec.parse({"name": "spatial_dropout", "p": 0.5}))
    (mask,) = slot_masks(model, SpatialDropout, torch.randint(20, (8, 7)))
    assert (mask - mask[:, :1]).abs().max() < 1e-4
    assert (mask - mask[:, :, :1]).abs().max() > 0.5
