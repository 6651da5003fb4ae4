"""Attention blocks (kind ``attention``) with attention-dropout, on fused scaled-dot-product attention.

Every block computes its output with :func:`torch.nn.functional.scaled_dot_product_attention`
(SDPA), passing the attention-dropout rate as ``dropout_p`` in training mode only, so PyTorch
can pick its flash / memory-efficient kernels. The attention weights are only materialized when
a caller asks for them (``need_weights=True``, or inside :func:`record_attention`, which the
attention-map callback uses); that slower path computes the same function explicitly.

Masks follow :class:`torch.nn.MultiheadAttention`: ``key_padding_mask`` is a bool tensor
``(N, S)`` where ``True`` marks a padded key that no query may attend to.
"""
from __future__ import annotations

import contextlib
import math
from typing import Iterator, Literal, Optional

import torch
import torch.nn.functional as F
from torch import nn

from regkit.components.layouts import SEQUENCE, layout_arguments
from regkit.registry import register
from regkit.components.regularizers.base import StochasticRegularizer, check_rate
from regkit.registry import RegularizerSpec

# --------------------------------------------------------------------------- functional core


def attention_mask(
    key_padding_mask: Optional[torch.Tensor],
    causal: bool,
    q_len: int,
    k_len: int,
    device: torch.device,
) -> tuple[Optional[torch.Tensor], bool]:
    """SDPA's ``(attn_mask, is_causal)`` from a key-padding mask and a causal flag.

    Returns a bool mask broadcastable to ``(N, H, L, S)`` with ``True`` = may attend, or None.
    A causal flag alone stays ``is_causal=True`` (the flash kernel takes it; a dense mask it does
    not); SDPA refuses both at once, so together they are merged into one mask.
    """
    if key_padding_mask is None:
        return None, causal
    if key_padding_mask.dtype != torch.bool:
        raise TypeError(f"key_padding_mask must be bool (True = padding), got {key_padding_mask.dtype}")
    if key_padding_mask.shape[-1] != k_len:
        raise ValueError(f"key_padding_mask has {key_padding_mask.shape[-1]} keys, the input has {k_len}")
    mask = (~key_padding_mask)[:, None, None, :]  # (N, 1, 1, S)
    if causal:
        mask = mask & torch.ones(q_len, k_len, dtype=torch.bool, device=device).tril()
    return mask, False


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    attn_mask: Optional[torch.Tensor] = None,
    is_causal: bool = False,
    dropout_p: float = 0.0,
    scale: Optional[float] = None,
    need_weights: bool = False,
) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """``softmax(q kᵀ · scale + mask) v`` with dropout on the weights; SDPA unless weights are wanted.

    Args:
        q, k, v: ``(..., L, E)``, ``(..., S, E)``, ``(..., S, Ev)``.
        attn_mask: bool, broadcastable to ``(..., L, S)``; ``True`` = may attend.
        is_causal: query i sees keys j <= i.
        dropout_p: attention-dropout rate (pass 0 in eval mode).
        scale: score scale, default ``1 / sqrt(E)``.
        need_weights: also return the attention weights (before dropout), computed explicitly.

    Returns:
        ``(out (..., L, Ev), weights (..., L, S) or None)``. A query with no visible key gets
        zero weights and a zero output on both paths.
    """
    if not q.dtype == k.dtype == v.dtype:  # e.g. a projected key under autocast, a raw value
        device = q.device.type
        dtype = (
            torch.get_autocast_dtype(device)
            if torch.is_autocast_enabled(device)
            else torch.promote_types(torch.promote_types(q.dtype, k.dtype), v.dtype)
        )
        q, k, v = q.to(dtype), k.to(dtype), v.to(dtype)
    if not need_weights:
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal, scale=scale
        )
        return out, None
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = (q @ k.transpose(-2, -1)) * scale
    if is_causal:
        L, S = scores.shape[-2:]
        causal = torch.ones(L, S, dtype=torch.bool, device=scores.device).tril()
        attn_mask = causal if attn_mask is None else attn_mask & causal
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf"))
    # softmax in float32 like the fused kernels; a fully masked row is NaN -> 0 (SDPA gives 0 too)
    weights = scores.float().softmax(-1).nan_to_num(0.0).to(v.dtype)
    dropped = F.dropout(weights, dropout_p) if dropout_p > 0 else weights
    return dropped @ v, weights


class AttentionBlock(nn.Module):
    """Shared by regkit's attention blocks: the attention-dropout rate and weight recording.

    Inside :func:`record_attention` a block keeps its latest attention weights in
    ``last_weights`` (detached); otherwise it computes them only when ``need_weights=True``.
    """

    attn_dropout: float = 0.0
    _record: bool = False
    last_weights: Optional[torch.Tensor] = None

    def _dropout_p(self) -> float:
        return self.attn_dropout if self.training else 0.0

    def _wants_weights(self, need_weights: bool) -> bool:
        return need_weights or self._record

    def _keep(self, weights: Optional[torch.Tensor]) -> None:
        if self._record and weights is not None:
            self.last_weights = weights.detach()

    @staticmethod
    def _output(
        out: torch.Tensor, weights: Optional[torch.Tensor], need_weights: bool
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """``out``, or ``(out, weights)`` when the caller asked for them (:func:`attention` computed them)."""
        if not need_weights:
            return out
        if weights is None:
            raise RuntimeError("attention weights were asked for but not computed")
        return out, weights


@contextlib.contextmanager
def record_attention(module: nn.Module) -> Iterator[dict[str, torch.Tensor]]:
    """Within the block, every regkit attention block inside ``module`` records its weights.

    Yields a dict that, after the block, maps each submodule's name to the weights of its last
    call (e.g. ``{"layers.0.attn": (N, H, L, L), "pool": (N, H, L)}``)::

        with record_attention(model) as maps:
            model(x)
        plot(maps["layers.0.attn"])
    """
    blocks = {name: m for name, m in module.named_modules() if isinstance(m, AttentionBlock)}
    maps: dict[str, torch.Tensor] = {}
    for m in blocks.values():
        m._record, m.last_weights = True, None
    try:
        yield maps
    finally:
        for name, m in blocks.items():
            if m.last_weights is not None:
                maps[name] = m.last_weights
            m._record, m.last_weights = False, None


def _output_dropout(dropout: Optional[RegularizerSpec], dropout_p: float, num_features: int) -> nn.Module:
    if dropout is not None and dropout_p:
        raise ValueError("give either dropout (a regularizer) or dropout_p (plain dropout), not both")
    if dropout is not None:
        return dropout.fill(num_features=num_features, **layout_arguments(dropout, SEQUENCE, "dropout"))
    return nn.Dropout(check_rate(dropout_p, "dropout_p")) if dropout_p else nn.Identity()


# --------------------------------------------------------------------------- blocks


@register("attention", "multi_head_self_attention")
class MultiHeadSelfAttention(StochasticRegularizer, AttentionBlock):
    """Multi-head self-attention with attention-dropout on fused SDPA (Vaswani et al., 2017).

    ``out = dropout(W_o · concat_h softmax(Q_h K_hᵀ / sqrt(d)) V_h)``, with attention-dropout on
    the weights (``attn_dropout``, passed to SDPA as ``dropout_p`` in training only) and the
    Transformer's "residual dropout" on the block output (the ``dropout`` slot or ``dropout_p``),
    applied before the caller adds the residual.

    Args:
        embed_dim: E, filled in by the network slot; must be divisible by ``num_heads``.
        num_heads: H.
        attn_dropout: dropout rate on the attention weights (training only).
        dropout: regularizer on the output (registry spec, gets ``num_features=E``), or null.
        dropout_p: plain dropout rate on the output when ``dropout`` is null.
        causal: query i attends only to keys j <= i.
        bias: biases in the input and output projections.

    Shape:
        Input ``x``: (N, L, E), batch first. ``key_padding_mask``: (N, L) bool, True = padding.
        Output: (N, L, E); with ``need_weights=True`` also weights (N, H, L, L), before dropout.

    Examples:
        >>> attn = MultiHeadSelfAttention(64, num_heads=4, attn_dropout=0.1)
        >>> y, w = attn(torch.randn(2, 10, 64), need_weights=True)
        >>> y.shape, w.shape
        (torch.Size([2, 10, 64]), torch.Size([2, 4, 10, 10]))
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int = 4,
        attn_dropout: float = 0.1,
        dropout: Optional[RegularizerSpec] = None,
        dropout_p: float = 0.0,
        causal: bool = False,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})")
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.attn_dropout = check_rate(attn_dropout, "attn_dropout")
        self.causal = causal
        self.in_proj = nn.Linear(embed_dim, 3 * embed_dim, bias=bias)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.dropout = _output_dropout(dropout, dropout_p, embed_dim)

    def forward(
        self,
        x: torch.Tensor,
        key_padding_mask: Optional[torch.Tensor] = None,
        causal: Optional[bool] = None,
        need_weights: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        N, L, E = x.shape
        # (N, L, 3E) -> 3 x (N, H, L, E/H)
        q, k, v = self.in_proj(x).view(N, L, 3, self.num_heads, E // self.num_heads).permute(2, 0, 3, 1, 4)
        mask, is_causal = attention_mask(
            key_padding_mask, self.causal if causal is None else causal, L, L, x.device
        )
        out, weights = attention(
            q, k, v, mask, is_causal, self._dropout_p(), need_weights=self._wants_weights(need_weights)
        )
        out = self.dropout(self.out_proj(out.transpose(1, 2).reshape(N, L, E)))
        self._keep(weights)
        return self._output(out, weights, need_weights)

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, attn_dropout={self.attn_dropout}, causal={self.causal}"


@register("attention", "dot_product_attention")
class DotProductAttention(StochasticRegularizer, AttentionBlock):
    """Query-value dot-product attention with "dot" / "general" scores (Luong et al., 2015), on SDPA.

    Keras' ``Attention`` layer done on 3-D sequences, with attention-dropout.

    ``score(q, k) = s · qᵀk`` ("dot") or ``s · qᵀ W k`` ("general"); ``out = softmax(score) v``.
    ``s`` is 1, or a learned scalar (``use_scale``, as Keras), or ``1/sqrt(d)`` (``scaled``,
    Vaswani et al., 2017). The key defaults to the value, as in Keras.

    Args:
        query_dim: Dq, filled in by the slot.
        key_dim: Dk (defaults to Dq); must equal Dq for "dot".
        score: "dot" or "general" (a learned Dk -> Dq map on the keys).
        use_scale: learn the score scale (initialized to 1).
        scaled: multiply scores by ``1/sqrt(Dq)``.
        attn_dropout: dropout rate on the attention weights (training only).
        causal: query i attends only to keys j <= i (self-attention over one sequence).

    Shape:
        ``query`` (N, Tq, Dq); ``value`` (N, Tv, Dv); ``key`` (N, Tv, Dk) or None;
        ``key_padding_mask`` (N, Tv) bool, True = padding. Output (N, Tq, Dv); with
        ``need_weights=True`` also weights (N, Tq, Tv).
    """

    def __init__(
        self,
        query_dim: int,
        key_dim: Optional[int] = None,
        score: Literal["dot", "general"] = "dot",
        use_scale: bool = False,
        scaled: bool = False,
        attn_dropout: float = 0.0,
        causal: bool = False,
    ) -> None:
        super().__init__()
        key_dim = query_dim if key_dim is None else key_dim
        if score == "dot" and key_dim != query_dim:
            raise ValueError(f"score='dot' needs key_dim == query_dim, got {key_dim} and {query_dim}; use 'general'")
        self.query_dim, self.key_dim, self.score = query_dim, key_dim, score
        self.key_proj = nn.Linear(key_dim, query_dim, bias=False) if score == "general" else None
        self.scale = nn.Parameter(torch.ones(())) if use_scale else None
        self.fixed_scale = 1.0 / math.sqrt(query_dim) if scaled else 1.0
        self.attn_dropout = check_rate(attn_dropout, "attn_dropout")
        self.causal = causal

    def forward(
        self,
        query: torch.Tensor,
        value: torch.Tensor,
        key: Optional[torch.Tensor] = None,
        key_padding_mask: Optional[torch.Tensor] = None,
        need_weights: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        key = value if key is None else key
        if self.key_proj is not None:
            key = self.key_proj(key)
        if self.scale is not None:  # SDPA takes a float scale; a learned one goes into the query
            query = query * self.scale
        mask, is_causal = attention_mask(key_padding_mask, self.causal, query.shape[-2], key.shape[-2], query.device)
        if mask is not None:
            mask = mask[:, 0]  # no head axis here: (N, 1, S) or (N, L, S)
        out, weights = attention(
            query, key, value, mask, is_causal, self._dropout_p(), scale=self.fixed_scale,
            need_weights=self._wants_weights(need_weights),
        )
        self._keep(weights)
        return self._output(out, weights, need_weights)

    def extra_repr(self) -> str:
        return f"query_dim={self.query_dim}, key_dim={self.key_dim}, score={self.score!r}, attn_dropout={self.attn_dropout}"


@register("attention", "additive_attention")
class AdditiveAttention(StochasticRegularizer, AttentionBlock):
    """Additive (concat) attention of Bahdanau et al. (2015): ``score(q, k) = vᵀ tanh(W_q q + W_k k)``.

    Weights ``softmax(score)`` over the keys, attention-dropout on them in training, and
    ``out = weights · value``. The scores need a (N, Tq, Tk, hidden) tensor, so this block computes
    explicitly (SDPA has no additive form); it is meant for decoder-style queries over short
    encodings.

    Args:
        query_dim: Dq, filled in by the slot.
        key_dim: Dk (defaults to Dq).
        hidden: width of the scoring layer (defaults to Dq).
        attn_dropout: dropout rate on the attention weights (training only).

    Shape:
        ``query`` (N, Tq, Dq) or (N, Dq) (one decoder state); ``value`` (N, Tv, Dv); ``key``
        (N, Tv, Dk) or None (= value); ``key_padding_mask`` (N, Tv) bool, True = padding.
        Output (N, Tq, Dv), or (N, Dv) for a 2-D query; with ``need_weights=True`` also weights
        (N, Tq, Tv) or (N, Tv).
    """

    def __init__(
        self,
        query_dim: int,
        key_dim: Optional[int] = None,
        hidden: Optional[int] = None,
        attn_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        key_dim = query_dim if key_dim is None else key_dim
        hidden = query_dim if hidden is None else hidden
        self.query_dim, self.key_dim, self.hidden = query_dim, key_dim, hidden
        self.query_proj = nn.Linear(query_dim, hidden, bias=False)
        self.key_proj = nn.Linear(key_dim, hidden, bias=True)
        self.v = nn.Linear(hidden, 1, bias=False)
        self.attn_dropout = check_rate(attn_dropout, "attn_dropout")

    def forward(
        self,
        query: torch.Tensor,
        value: torch.Tensor,
        key: Optional[torch.Tensor] = None,
        key_padding_mask: Optional[torch.Tensor] = None,
        need_weights: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        single = query.dim() == 2
        if single:
            query = query.unsqueeze(1)
        key = value if key is None else key
        # (N, Tq, 1, h) + (N, 1, Tk, h) -> (N, Tq, Tk)
        scores = self.v(torch.tanh(self.query_proj(query).unsqueeze(2) + self.key_proj(key).unsqueeze(1))).squeeze(-1)
        if key_padding_mask is not None:
            scores = scores.masked_fill(key_padding_mask[:, None, :], float("-inf"))
        weights = scores.float().softmax(-1).nan_to_num(0.0).to(value.dtype)
        out = F.dropout(weights, self._dropout_p(), training=True) if self._dropout_p() else weights
        out = out @ value
        if single:
            out, weights = out.squeeze(1), weights.squeeze(1)
        self._keep(weights)
        return (out, weights) if need_weights else out

    def extra_repr(self) -> str:
        return f"query_dim={self.query_dim}, key_dim={self.key_dim}, hidden={self.hidden}, attn_dropout={self.attn_dropout}"


@register("attention", "attention_pooling")
class AttentionPooling(StochasticRegularizer, AttentionBlock):
    """Pools a sequence to one vector with learned queries (Yang et al., 2016; Lee et al., 2019).

    The pooling-by-attention of hierarchical attention networks and Set Transformer's PMA, with
    attention-dropout, on fused SDPA.

    Head h scores each position with a learned query ``q_h`` against projected keys
    ``k = W_k x`` (``q_hᵀ k_h / sqrt(d)``) and returns the weighted mean of its slice of ``x``;
    the heads' results are concatenated, so the output has the input's width.

    Args:
        embed_dim: E, filled in by the slot; must be divisible by ``num_heads``.
        num_heads: H, independent pooling queries.
        attn_dropout: dropout rate on the pooling weights (training only).

    Shape:
        Input (N, L, E); ``key_padding_mask`` (N, L) bool, True = padding. Output (N, E); with
        ``need_weights=True`` also weights (N, H, L).
    """

    def __init__(self, embed_dim: int, num_heads: int = 1, attn_dropout: float = 0.0) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})")
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.query = nn.Parameter(torch.randn(num_heads, 1, embed_dim // num_heads) * embed_dim**-0.5)
        self.key_proj = nn.Linear(embed_dim, embed_dim)
        self.attn_dropout = check_rate(attn_dropout, "attn_dropout")

    def forward(
        self, x: torch.Tensor, key_padding_mask: Optional[torch.Tensor] = None, need_weights: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        N, L, E = x.shape
        heads = lambda t: t.view(N, L, self.num_heads, E // self.num_heads).transpose(1, 2)  # noqa: E731
        k, v = heads(self.key_proj(x)), heads(x)
        q = self.query.to(x.dtype).expand(N, -1, -1, -1)  # (N, H, 1, d)
        mask, _ = attention_mask(key_padding_mask, False, 1, L, x.device)
        out, weights = attention(q, k, v, mask, False, self._dropout_p(), need_weights=self._wants_weights(need_weights))
        out = out.reshape(N, E)
        if weights is not None:
            weights = weights.squeeze(2)
        self._keep(weights)
        return self._output(out, weights, need_weights)

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, attn_dropout={self.attn_dropout}"


@register("attention", "squeeze_excitation")
class SqueezeExcitation(AttentionBlock):
    """Squeeze-and-excitation channel attention: gates each channel from its global mean (Hu et al., 2018).

    ``s = sigmoid(W_2 relu(W_1 mean_hw(x)))``, ``out = x · s`` per channel.

    Args:
        num_features: C, filled in by the slot.
        reduction: hidden width is ``C / reduction`` (the paper's r = 16).
        min_hidden: lower bound on the hidden width, for narrow layers.

    Shape:
        Input (N, C, H, W) (any number of spatial axes after C). Output same shape; with
        ``need_weights=True`` also the gates (N, C), each in [0, 1].
    """

    def __init__(self, num_features: int, reduction: int = 16, min_hidden: int = 4) -> None:
        super().__init__()
        hidden = max(min_hidden, num_features // reduction)
        self.num_features, self.reduction = num_features, reduction
        self.fc1 = nn.Linear(num_features, hidden)
        self.fc2 = nn.Linear(hidden, num_features)

    def forward(self, x: torch.Tensor, need_weights: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        squeezed = x.flatten(2).mean(-1)  # (N, C)
        gates = torch.sigmoid(self.fc2(F.relu(self.fc1(squeezed))))
        out = x * gates.view(*gates.shape, *([1] * (x.dim() - 2)))
        self._keep(gates)
        return (out, gates) if need_weights else out

    def extra_repr(self) -> str:
        return f"num_features={self.num_features}, reduction={self.reduction}"
