"""A small transformer-encoder classifier over sequences: self-attention with attention-dropout,
then attention pooling to one vector (seed S0: dropout combined with attention)."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from regkit.components.attention import AttentionPooling, MultiHeadSelfAttention
from regkit.components.layouts import FEATURES, SEQUENCE
from regkit.networks.slots import Activation, activation_layer, fill
from regkit.registry import register
from regkit.registry import NormSpec, RegularizerSpec
from regkit.errors import check


class SequenceNorm(nn.Module):
    """The network's norm slot on (N, L, E) sequences.

    An empty slot is ``nn.LayerNorm(E)`` over the last axis (the transformer's norm, one fused
    kernel). A registry norm is built with ``num_features=E`` and, as every regkit norm slot is
    channel-first, sees the sequence as (N, E, L): ``batch_norm`` normalizes each feature over batch
    and time, ``layer_norm`` (over channels) each position over its features. A norm set to act on
    the last axis (``layer_norm`` with ``over: last``) gets (N, L, E) as it is.
    """

    def __init__(self, spec: Optional[NormSpec], num_features: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(num_features) if spec is None else fill(spec, num_features=num_features)
        self.channel_first = not isinstance(self.norm, nn.LayerNorm) and getattr(self.norm, "over", None) != "last"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channel_first:
            return self.norm(x.transpose(1, 2)).transpose(1, 2)
        return self.norm(x)


class EncoderLayer(nn.Module):
    """Pre-norm transformer encoder layer (Vaswani et al., 2017; pre-norm as Xiong et al., 2020):
    ``x + attn(norm(x))`` then ``x + dropout(ff(norm(x)))``."""

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        ff_dim: int,
        attn_dropout: float,
        activation: Activation,
        norm: Optional[NormSpec],
        dropout: Optional[RegularizerSpec],
        causal: bool,
    ) -> None:
        super().__init__()
        self.norm1 = SequenceNorm(norm, d_model)
        self.attn = MultiHeadSelfAttention(d_model, num_heads, attn_dropout, dropout=dropout, causal=causal)
        self.norm2 = SequenceNorm(norm, d_model)
        self.ff = nn.Sequential(
            nn.Linear(d_model, ff_dim),
            activation_layer(activation),
            fill(dropout, SEQUENCE, "dropout", num_features=ff_dim),
            nn.Linear(ff_dim, d_model),
            fill(dropout, SEQUENCE, "dropout", num_features=d_model),
        )

    def forward(self, x: torch.Tensor, key_padding_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), key_padding_mask)
        return x + self.ff(self.norm2(x))


@register("network", "attention_classifier")
class AttentionClassifier(nn.Module):
    """Transformer-encoder classifier: linear embedding plus learned positions, pre-norm encoder
    layers of multi-head self-attention with attention-dropout (Vaswani et al., 2017), attention
    pooling to one vector (Yang et al., 2016), and a linear head.

    Images (N, 1, H, W) are read as sequences of H rows of W features (MNIST: 28 steps of 28).

    Args:
        in_features: F, features per time step (28 for MNIST rows).
        max_len: longest sequence (size of the learned position table).
        d_model: model width E.
        num_heads: attention heads per layer.
        num_layers: encoder layers.
        ff_dim: hidden width of each feed-forward block.
        out_features: number of classes.
        attn_dropout: dropout rate on self-attention weights (training only; SDPA ``dropout_p``).
        pool_dropout: dropout rate on the pooling weights.
        pool_heads: learned queries of the pooling block.
        activation: feed-forward nonlinearity.
        norm: norm in each layer and before pooling (gets ``num_features=d_model``; see
            :class:`SequenceNorm`); null means ``nn.LayerNorm(d_model)``, the transformer's own norm.
        dropout: regularizer on embeddings, attention output, feed-forward and pooled vector
            (the Transformer's residual dropout), or null. It sees (N, L, E) sequences (and the
            pooled (N, E) vector), so e.g. ``variational_dropout`` shares its mask over L.
        causal: each step attends only to earlier steps.

    Shape:
        Input (N, L, F), or (N, 1, L, F) images; L <= max_len. ``key_padding_mask`` (N, L) bool,
        True = padding. Output (N, out_features).
    """

    def __init__(
        self,
        in_features: int = 28,
        max_len: int = 28,
        d_model: int = 64,
        num_heads: int = 4,
        num_layers: int = 2,
        ff_dim: int = 128,
        out_features: int = 10,
        attn_dropout: float = 0.1,
        pool_dropout: float = 0.0,
        pool_heads: int = 1,
        activation: Activation = "gelu",
        norm: Optional[NormSpec] = None,
        dropout: Optional[RegularizerSpec] = None,
        causal: bool = False,
    ) -> None:
        super().__init__()
        check(locals(), positive="in_features max_len d_model num_heads num_layers ff_dim out_features pool_heads", rate="attn_dropout pool_dropout")
        self.max_len, self.in_features = max_len, in_features
        self.embed = nn.Linear(in_features, d_model)
        self.position = nn.Parameter(torch.zeros(1, max_len, d_model))
        nn.init.trunc_normal_(self.position, std=0.02)
        self.embed_dropout = fill(dropout, SEQUENCE, "dropout", num_features=d_model)
        self.layers = nn.ModuleList(
            EncoderLayer(d_model, num_heads, ff_dim, attn_dropout, activation, norm, dropout, causal)
            for _ in range(num_layers)
        )
        self.norm = SequenceNorm(norm, d_model)
        self.pool = AttentionPooling(d_model, pool_heads, pool_dropout)
        self.head_dropout = fill(dropout, FEATURES, "dropout", num_features=d_model)
        self.head = nn.Linear(d_model, out_features)

    def input_mismatch(self, shape: tuple[int, ...]) -> Optional[tuple[str, int, int]]:
        """``(argument, its value, the value that fits)`` when examples of ``shape`` ((L, F), or
        (1, H, W) images read as H steps of W features) cannot go through, else None."""
        if len(shape) not in (2, 3) or (len(shape) == 3 and shape[0] != 1):
            return None  # the dry forward reports it
        length, features = shape[-2:]
        if features != self.in_features:
            return "in_features", self.in_features, features
        if length > self.max_len:
            return "max_len", self.max_len, length
        return None

    def forward(self, x: torch.Tensor, key_padding_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        if x.dim() == 4:
            if x.shape[1] != 1:
                raise ValueError(f"images are read row by row and need one channel, got shape {tuple(x.shape)}")
            x = x.squeeze(1)
        if x.shape[1] > self.max_len:
            raise ValueError(f"sequence length {x.shape[1]} exceeds max_len={self.max_len}")
        x = self.embed_dropout(self.embed(x) + self.position[:, : x.shape[1]])
        for layer in self.layers:
            x = layer(x, key_padding_mask)
        x = self.pool(self.norm(x), key_padding_mask)
        return self.head(self.head_dropout(x))
