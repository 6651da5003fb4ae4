"""Recurrent networks (LSTM / GRU / vanilla RNN) with the dropout slots of Zaremba et al. (2014),
Gal & Ghahramani (2016) and Merity et al. (2017): a language model and a sequence classifier.

Layout is batch-first everywhere: tokens ``(N, T)``, activations ``(N, T, H)``. Each slot names its
layout (:mod:`regkit.components.layouts`): the activation slots are sequences, so ``variational_dropout`` gets
``batch_first=True`` and ``spatial_dropout`` ``channels_last=True``; ``embedding_dropout`` takes the
embedding weight and ``weight_drop`` the RNN layers, and each slot refuses what does not fit it.

Two execution modes:

* ``fused`` (default): torch's ``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN``, i.e. cuDNN on a GPU and oneDNN
  on a CPU. Recurrent regularization is weight-drop (DropConnect on ``weight_hh``), which changes
  only the weight the fused kernel reads, so it stays fast. With no ``layer_dropout`` all layers
  run as one multi-layer call; with it, one call per layer and the dropout between them.
* ``cell_loop``: Gal's exact formulation, a Python loop over time steps with ``nn.LSTMCell`` etc.
  and a per-sequence mask on the hidden state fed back at every step (``recurrent_dropout``).
  Several times slower (see benchmarks/bench_lstm.py); use it to reproduce the paper exactly.
"""
from __future__ import annotations

from typing import Literal, NamedTuple, Optional, Protocol, Union, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from regkit.components.layouts import EMBEDDING, RECURRENT, SEQUENCE
from regkit.networks.slots import fill
from regkit.networks.precision import run_fused_rnn
from regkit.registry import register
from regkit.components.regularizers.dropout import check_rate
from regkit.components.regularizers.recurrent import RecurrentDropout
from regkit.registry import RegularizerSpec
from regkit.errors import check

Cell = Literal["lstm", "gru", "rnn"]
Mode = Literal["fused", "cell_loop"]
State = Union[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]

FUSED = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}
CELLS = {"lstm": nn.LSTMCell, "gru": nn.GRUCell, "rnn": nn.RNNCell}


@runtime_checkable
class WeightRegularizer(Protocol):
    """What the ``weight_drop`` slot needs: a regularizer that parametrizes the RNN weights inside
    the module it is applied to (``weight_drop``)."""

    def apply_to(self, module: nn.Module) -> nn.Module: ...


class RecurrentStack(nn.Module):
    """``num_layers`` recurrent layers with dropout between them and optional weight-drop.

    Args:
        cell: ``lstm``, ``gru`` or ``rnn`` (tanh).
        input_size: features of each input step.
        hidden_size: hidden units per layer (and direction).
        num_layers: stacked layers.
        layer_dropout: regularizer on the activations between layers, or null.
        weight_drop: recurrent-weight regularizer with an ``apply_to(module)`` method (``weight_drop``).
        mode: ``fused`` (nn.LSTM etc.) or ``cell_loop`` (per-step cells, Gal's hidden-state mask).
        recurrent_dropout: drop rate of the per-sequence hidden-state mask (``cell_loop`` only).
        bidirectional: run each layer both ways (``fused`` only).

    Shape:
        Input ``(N, T, input_size)``; output ``(N, T, D * hidden_size)`` and the final state,
        ``(h, c)`` for an LSTM or ``h``, each ``(num_layers * D, N, hidden_size)``; D = 2 if
        bidirectional else 1.
    """

    def __init__(
        self,
        cell: Cell,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        layer_dropout: Optional[RegularizerSpec] = None,
        weight_drop: Optional[RegularizerSpec] = None,
        mode: Mode = "fused",
        recurrent_dropout: float = 0.0,
        bidirectional: bool = False,
    ) -> None:
        super().__init__()
        check(locals(), positive="input_size hidden_size num_layers", rate="recurrent_dropout")
        if cell not in FUSED:
            raise ValueError(f"cell must be one of {sorted(FUSED)}, got {cell!r}")
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.cell, self.mode, self.hidden_size = cell, mode, hidden_size
        self.num_layers, self.directions = num_layers, 2 if bidirectional else 1
        self.recurrent_dropout = check_rate(recurrent_dropout, "recurrent_dropout")
        if mode == "fused":
            if recurrent_dropout:
                raise ValueError(
                    "recurrent_dropout (a per-step hidden-state mask) needs mode: cell_loop; in fused mode "
                    "regularize the recurrent connections with weight_drop"
                )
            if layer_dropout is None:  # nothing between layers: one multi-layer kernel call
                self.layers = nn.ModuleList(
                    [FUSED[cell](input_size, hidden_size, num_layers, batch_first=True, bidirectional=bidirectional)]
                )
            else:
                sizes = [input_size] + [hidden_size * self.directions] * (num_layers - 1)
                self.layers = nn.ModuleList(
                    FUSED[cell](size, hidden_size, 1, batch_first=True, bidirectional=bidirectional) for size in sizes
                )
        elif mode == "cell_loop":
            if bidirectional:
                raise ValueError("bidirectional needs mode: fused")
            sizes = [input_size] + [hidden_size] * (num_layers - 1)
            self.layers = nn.ModuleList(CELLS[cell](size, hidden_size) for size in sizes)
            # A module of its own (not a flag read off self.training) so that MC dropout, which
            # switches on stochastic modules only, samples the recurrent mask too.
            self.recurrent_mask = RecurrentDropout(self.recurrent_dropout)
        else:
            raise ValueError(f"mode must be 'fused' or 'cell_loop', got {mode!r}")
        gaps = len(self.layers) - 1
        self.between = nn.ModuleList(
            fill(layer_dropout, SEQUENCE, "layer_dropout", num_features=hidden_size * self.directions)
            for _ in range(gaps)
        )
        drop = fill(weight_drop, RECURRENT, "weight_drop")
        if not isinstance(drop, nn.Identity):
            if not isinstance(drop, WeightRegularizer):
                raise ValueError(
                    f"the weight_drop slot needs a regularizer with apply_to(module) (e.g. weight_drop), "
                    f"got {type(drop).__name__}"
                )
            drop.apply_to(self.layers)
        self.parametrized = any(parametrize.is_parametrized(m) for m in self.layers)

    def extra_repr(self) -> str:
        return f"mode={self.mode}" + (f", recurrent_dropout={self.recurrent_dropout}" if self.recurrent_dropout else "")

    def _split(self, state: Optional[State], index: int, width: int) -> Optional[State]:
        if state is None:
            return None
        sl = slice(index * width, (index + 1) * width)
        return (state[0][sl], state[1][sl]) if isinstance(state, tuple) else state[sl]

    @staticmethod
    def _join(states: list[State]) -> State:
        if isinstance(states[0], tuple):
            return torch.cat([s[0] for s in states]), torch.cat([s[1] for s in states])  # type: ignore[index]
        return torch.cat(states)  # type: ignore[arg-type]

    def forward(self, x: torch.Tensor, state: Optional[State] = None) -> tuple[torch.Tensor, State]:
        # One weight-drop mask per forward: torch's RNN reads a parametrized weight more than once.
        if self.parametrized:
            with parametrize.cached():
                return self._forward(x, state)
        return self._forward(x, state)

    def _forward(self, x: torch.Tensor, state: Optional[State]) -> tuple[torch.Tensor, State]:
        if self.mode == "cell_loop":
            return self._cell_loop(x, state)
        per_layer = self.num_layers * self.directions // len(self.layers)
        finals = []
        for i, rnn in enumerate(self.layers):
            if i:
                x = self.between[i - 1](x)
            x, final = run_fused_rnn(rnn, x, self._split(state, i, per_layer))
            finals.append(final)
        return x, self._join(finals)

    def _cell_loop(self, x: torch.Tensor, state: Optional[State]) -> tuple[torch.Tensor, State]:
        n, steps = x.shape[:2]
        finals = []
        for i, cell in enumerate(self.layers):
            if i:
                x = self.between[i - 1](x)
            prev = self._split(state, i, 1)
            zeros = x.new_zeros(n, self.hidden_size)
            if prev is None:
                h, c = zeros, zeros
            elif isinstance(prev, tuple):
                h, c = prev[0][0], prev[1][0]
            else:
                h, c = prev[0], zeros
            mask = self.recurrent_mask.sample_mask(zeros)  # one mask per sequence, reused every step
            outputs = []
            for t in range(steps):
                h_in = h * mask if mask is not None else h
                if self.cell == "lstm":
                    h, c = cell(x[:, t], (h_in, c))
                else:
                    h = cell(x[:, t], h_in)
                outputs.append(h)
            x = torch.stack(outputs, 1)
            finals.append((h.unsqueeze(0), c.unsqueeze(0)) if self.cell == "lstm" else h.unsqueeze(0))
        return x, self._join(finals)


class LMOutput(NamedTuple):
    """What :class:`RNNLanguageModel` returns: logits ``(N, T, V)``, the final state (carry it to the
    next window), and the last layer's outputs ``(N, T, H)`` before and after output dropout (the
    context of the AR / TAR penalties)."""

    logits: torch.Tensor
    state: State
    outputs: torch.Tensor
    dropped_outputs: torch.Tensor


def detach_state(state: Optional[State]) -> Optional[State]:
    """Cut the graph at a window boundary (truncated BPTT) while keeping the values."""
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)  # type: ignore[return-value]
    return state.detach()


@register("network", "rnn_lm")
class RNNLanguageModel(nn.Module):
    """LSTM / GRU / RNN language model with dropout slots (Zaremba 2014; Gal & Ghahramani 2016; Merity 2017).

    embedding -> embedding_dropout (on the weight: whole word types) -> input_dropout ->
    RNN layers (layer_dropout between, weight_drop on their recurrent weights) -> output_dropout
    -> linear decoder (optionally tied to the embedding; Press & Wolf, 2017).

    Zaremba's standard dropout: ``dropout`` in input/layer/output slots. Gal's variational
    dropout: ``variational_dropout`` there plus ``embedding_dropout`` and a recurrent mask
    (``weight_drop`` in fused mode, or ``mode: cell_loop`` with ``recurrent_dropout``).

    Args:
        vocab_size: number of word types (10000 for PTB).
        cell: ``lstm``, ``gru`` or ``rnn``.
        embedding_dim: embedding size.
        hidden_size: hidden units per layer.
        num_layers: stacked recurrent layers.
        embedding_dropout: regularizer applied to the embedding weight, or null.
        input_dropout: regularizer on the embedded inputs ``(N, T, E)``, or null.
        layer_dropout: regularizer between recurrent layers, or null (then one fused multi-layer call).
        output_dropout: regularizer on the last layer's outputs, or null.
        weight_drop: recurrent weight regularizer (``weight_drop``), or null.
        tie_weights: share the embedding matrix with the decoder (needs hidden_size == embedding_dim).
        mode: ``fused`` (cuDNN-capable nn.LSTM) or ``cell_loop`` (per-step cells; slower).
        recurrent_dropout: Gal's per-sequence hidden-state mask rate (``cell_loop`` only).
        init_range: embedding and decoder weights start uniform in ``[-init_range, init_range]``.

    Shape:
        Input: tokens ``(N, T)`` and optionally the previous state. Output: :class:`LMOutput`
        with logits ``(N, T, vocab_size)``.
    """

    def __init__(
        self,
        vocab_size: int = 10000,
        cell: Cell = "lstm",
        embedding_dim: int = 200,
        hidden_size: int = 200,
        num_layers: int = 2,
        embedding_dropout: Optional[RegularizerSpec] = None,
        input_dropout: Optional[RegularizerSpec] = None,
        layer_dropout: Optional[RegularizerSpec] = None,
        output_dropout: Optional[RegularizerSpec] = None,
        weight_drop: Optional[RegularizerSpec] = None,
        tie_weights: bool = False,
        mode: Mode = "fused",
        recurrent_dropout: float = 0.0,
        init_range: float = 0.1,
    ) -> None:
        super().__init__()
        check(locals(), positive="vocab_size embedding_dim hidden_size num_layers", rate="recurrent_dropout", non_negative="init_range")
        if tie_weights and hidden_size != embedding_dim:
            raise ValueError(f"tie_weights needs hidden_size == embedding_dim, got {hidden_size} and {embedding_dim}")
        self.vocab_size = vocab_size
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.embedding_dropout = fill(embedding_dropout, EMBEDDING, "embedding_dropout", num_features=embedding_dim)
        self.input_dropout = fill(input_dropout, SEQUENCE, "input_dropout", num_features=embedding_dim)
        self.rnn = RecurrentStack(
            cell, embedding_dim, hidden_size, num_layers, layer_dropout, weight_drop, mode, recurrent_dropout
        )
        self.output_dropout = fill(output_dropout, SEQUENCE, "output_dropout", num_features=hidden_size)
        self.decoder = nn.Linear(hidden_size, vocab_size)
        nn.init.uniform_(self.embedding.weight, -init_range, init_range)
        nn.init.uniform_(self.decoder.weight, -init_range, init_range)
        nn.init.zeros_(self.decoder.bias)
        if tie_weights:
            self.decoder.weight = self.embedding.weight

    def forward(self, tokens: torch.Tensor, state: Optional[State] = None) -> LMOutput:
        emb = self.embedding
        weight = self.embedding_dropout(emb.weight)
        x = self.input_dropout(F.embedding(tokens, weight, emb.padding_idx))
        outputs, state = self.rnn(x, state)
        dropped = self.output_dropout(outputs)
        return LMOutput(self.decoder(dropped), state, outputs, dropped)


Pooling = Literal["last", "mean", "max"]


@register("network", "rnn_classifier")
class RNNClassifier(nn.Module):
    """Sequence classifier: LSTM / GRU / RNN with dropout slots, pooled over time (Gal & Ghahramani, 2016).

    Padding (``padding_idx``, right-padded) is left out of mean / max pooling, and ``last`` takes
    each sequence's last real token (for a bidirectional net, the backward half is read at step 0).

    Args:
        vocab_size: number of token types.
        num_classes: number of classes.
        cell: ``lstm``, ``gru`` or ``rnn``.
        embedding_dim: embedding size.
        hidden_size: hidden units per layer and direction.
        num_layers: stacked recurrent layers.
        bidirectional: read the sequence both ways (fused mode only).
        pooling: ``last``, ``mean`` or ``max`` over time.
        padding_idx: the padding token, or null when sequences are not padded.
        embedding_dropout: regularizer on the embedding weight (drops word types), or null.
        input_dropout: regularizer on embedded inputs ``(N, T, E)``, or null.
        layer_dropout: regularizer between recurrent layers, or null.
        output_dropout: regularizer on the RNN outputs ``(N, T, H)`` before pooling, or null.
        weight_drop: recurrent weight regularizer (``weight_drop``), or null.
        mode: ``fused`` or ``cell_loop``.
        recurrent_dropout: hidden-state mask rate (``cell_loop`` only).

    Shape:
        Input: tokens ``(N, T)`` (integers). Output: logits ``(N, num_classes)``.
    """

    def __init__(
        self,
        vocab_size: int = 10000,
        num_classes: int = 2,
        cell: Cell = "lstm",
        embedding_dim: int = 128,
        hidden_size: int = 128,
        num_layers: int = 1,
        bidirectional: bool = False,
        pooling: Pooling = "last",
        padding_idx: Optional[int] = None,
        embedding_dropout: Optional[RegularizerSpec] = None,
        input_dropout: Optional[RegularizerSpec] = None,
        layer_dropout: Optional[RegularizerSpec] = None,
        output_dropout: Optional[RegularizerSpec] = None,
        weight_drop: Optional[RegularizerSpec] = None,
        mode: Mode = "fused",
        recurrent_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        check(locals(), positive="vocab_size num_classes embedding_dim hidden_size num_layers", rate="recurrent_dropout")
        if pooling not in ("last", "mean", "max"):
            raise ValueError(f"pooling must be last, mean or max, got {pooling!r}")
        self.pooling, self.padding_idx, self.bidirectional = pooling, padding_idx, bidirectional
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=padding_idx)
        self.embedding_dropout = fill(embedding_dropout, EMBEDDING, "embedding_dropout", num_features=embedding_dim)
        self.input_dropout = fill(input_dropout, SEQUENCE, "input_dropout", num_features=embedding_dim)
        self.rnn = RecurrentStack(
            cell, embedding_dim, hidden_size, num_layers, layer_dropout, weight_drop, mode, recurrent_dropout,
            bidirectional,
        )
        width = hidden_size * (2 if bidirectional else 1)
        self.output_dropout = fill(output_dropout, SEQUENCE, "output_dropout", num_features=width)
        self.head = nn.Linear(width, num_classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        emb = self.embedding
        x = self.input_dropout(F.embedding(tokens, self.embedding_dropout(emb.weight), emb.padding_idx))
        out = self.output_dropout(self.rnn(x)[0])
        if self.padding_idx is None:
            mask = torch.ones(tokens.shape, dtype=torch.bool, device=tokens.device)
        else:
            mask = tokens != self.padding_idx
        if self.pooling == "mean":
            m = mask.unsqueeze(-1).to(out.dtype)
            pooled = (out * m).sum(1) / m.sum(1).clamp_min(1.0)
        elif self.pooling == "max":
            pooled = out.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(1)
        else:
            last = (mask.long().sum(1) - 1).clamp_min(0)
            pooled = out[torch.arange(out.size(0), device=out.device), last]
            if self.bidirectional:
                half = out.size(-1) // 2
                pooled = torch.cat([pooled[:, :half], out[:, 0, half:]], -1)
        return self.head(pooled)
