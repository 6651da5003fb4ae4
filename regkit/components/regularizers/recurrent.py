"""Dropout for recurrent networks: locked (variational) dropout, embedding dropout and weight-drop.

Standard dropout draws a fresh mask at every time step, which on a recurrent connection
destroys the memory the network is trying to keep. Gal & Ghahramani (2016) instead draw one
mask per sequence and reuse it at every step ("variational" or "locked" dropout), drop whole
word types of the embedding, and drop the recurrent connections with a mask that is also fixed
over time. Merity et al. (2017, AWD-LSTM) drop the recurrent *weights* instead (DropConnect on
``weight_hh``), which keeps the fused cuDNN kernel usable. All three live here.
"""
from __future__ import annotations

import fnmatch
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from regkit.components.layouts import EMBEDDING, FEATURES, RECURRENT, SEQUENCE, Layouts
from regkit.registry import register
from regkit.components.regularizers.base import DropoutBase, is_zero, keep_mask
from regkit.components.regularizers.dropout import dropout


def locked_dropout(x: torch.Tensor, p: float | torch.Tensor = 0.5, training: bool = True, batch_first: bool = False) -> torch.Tensor:
    """Dropout with one mask per sequence, shared by all its time steps (Gal & Ghahramani, 2016).

    ``x`` is ``(T, N, *)`` or, with ``batch_first``, ``(N, T, *)``; the mask has size 1 on the
    time dimension and is broadcast over it. A 2-D ``(N, C)`` input is a single step (no time
    axis) and gets one value per element, like plain dropout. Kept units are scaled by ``1 / (1 - p)``.
    """
    if not training or is_zero(p):
        return x
    if x.dim() < 2:
        raise ValueError(f"locked dropout needs a (time, batch, ...) tensor, got shape {tuple(x.shape)}")
    shape = list(x.shape)
    if x.dim() > 2:
        shape[1 if batch_first else 0] = 1
    mask = x.new_empty(shape).bernoulli_(1.0 - p).div_(1.0 - p)
    return x * mask


def embedding_dropout(weight: torch.Tensor, p: float | torch.Tensor = 0.1, training: bool = True) -> torch.Tensor:
    """Drop whole rows (word types) of an embedding matrix ``(num_embeddings, dim)``; kept rows are
    scaled by ``1 / (1 - p)``. Every occurrence of a dropped word in the batch becomes zero
    (Gal & Ghahramani, 2016; the batch-level form of Merity et al., 2017)."""
    if not training or is_zero(p):
        return weight
    mask = weight.new_empty(weight.size(0), 1).bernoulli_(1.0 - p).div_(1.0 - p)
    return weight * mask


@register("regularizer", "variational_dropout")
class VariationalDropout(DropoutBase):
    """Locked dropout: one mask per sequence reused at every time step (Gal & Ghahramani, 2016).

    Put it on the inputs, between layers and on the outputs of a recurrent network. The mask
    differs across the sequences of a batch and across batches, never across time.

    Args:
        p: drop probability, 0 <= p < 1.
        batch_first: the input is ``(N, T, *)`` instead of ``(T, N, *)``. A network that owns the
            slot fills this in from its own layout.

    Shape:
        Input ``(T, N, *)`` (or ``(N, T, *)`` with ``batch_first``, which a sequence slot sets).
        A 2-D ``(N, C)`` input is one step and gets plain dropout (e.g. a pooled vector behind a
        sequence model). Output: same shape. Identity in eval mode.

    Examples:
        >>> drop = VariationalDropout(0.5, batch_first=True)
        >>> y = drop(torch.randn(8, 35, 200))
        >>> y.shape
        torch.Size([8, 35, 200])
        >>> bool(((y == 0) == (y[:, :1] == 0)).all())  # the same units are dropped at every step
        True
    """

    layouts: ClassVar[Layouts] = {SEQUENCE: {"batch_first": True}, FEATURES: {}}
    mask_shared_over = ("position",)

    def __init__(self, p: float = 0.5, batch_first: bool = False) -> None:
        super().__init__(p)
        self.batch_first = batch_first

    def extra_repr(self) -> str:
        return f"p={self.p}, batch_first={self.batch_first}"

    def drop(self, x: torch.Tensor) -> torch.Tensor:
        return locked_dropout(x, self.drop_rate(), True, self.batch_first)


@register("regularizer", "embedding_dropout")
class EmbeddingDropout(DropoutBase):
    """Drop whole word types: zero rows of the embedding matrix (Gal & Ghahramani, 2016; Merity et al., 2017).

    The module acts on the embedding *weight*; the network looks its tokens up in the result
    (``F.embedding(tokens, drop(embedding.weight))``), so a dropped word is zero wherever it
    occurs in the batch. :meth:`embed` does both steps for a plain ``nn.Embedding``.

    Args:
        p: probability of dropping a word type, 0 <= p < 1.

    Shape:
        Input: embedding weight ``(num_embeddings, embedding_dim)``. Output: same shape.
        Identity in eval mode.

    Examples:
        >>> emb, drop = nn.Embedding(10000, 200), EmbeddingDropout(0.5)
        >>> tokens = torch.tensor([[7, 3, 7, 7, 3, 5]])
        >>> vectors = drop.embed(emb, tokens)
        >>> vectors.shape
        torch.Size([1, 6, 200])
        >>> zero = vectors.eq(0).all(-1)[0]  # a dropped word is zero wherever it occurs
        >>> bool(zero[0] == zero[2] == zero[3]) and bool(zero[1] == zero[4])
        True
    """

    layouts: ClassVar[Layouts] = {EMBEDDING: {}}  # it drops rows: word types of a weight, not samples of a batch
    mask_shared_over = ("channel",)

    def __init__(self, p: float = 0.1) -> None:
        super().__init__(p)

    def drop(self, weight: torch.Tensor) -> torch.Tensor:
        return embedding_dropout(weight, self.drop_rate(), True)

    def embed(self, embedding: nn.Embedding, tokens: torch.Tensor) -> torch.Tensor:
        """Look ``tokens`` up in ``embedding`` with its word types dropped."""
        return F.embedding(
            tokens, self(embedding.weight), embedding.padding_idx, embedding.max_norm,
            embedding.norm_type, embedding.scale_grad_by_freq, embedding.sparse,
        )


class RecurrentDropout(DropoutBase):
    """Gal's recurrent mask: one mask per sequence on the hidden state fed back at every step
    (Gal & Ghahramani, 2016, "A Theoretically Grounded Application of Dropout in RNNs").

    A step-by-step RNN (``RecurrentStack`` in ``mode: cell_loop``) draws the mask once per
    sequence with :meth:`sample_mask` and multiplies the fed-back hidden state by it at every step.
    Being a stochastic regularizer module, it follows ``train()`` / ``eval()`` and MC dropout
    (:mod:`regkit.components.mc_dropout`) keeps it sampling at predict time.

    Args:
        p: drop probability of each hidden unit, 0 <= p < 1.

    Shape:
        :meth:`sample_mask` takes a hidden state ``(N, H)`` and returns a mask ``(N, H)`` (kept units
        ``1 / (1 - p)``), or None in eval mode or at ``p = 0``. Called directly, the module drops
        ``(N, H)`` with a fresh mask.
    """

    def sample_mask(self, h: torch.Tensor) -> torch.Tensor | None:
        """A fresh mask shaped like ``h``, or None when nothing is dropped."""
        rate = self.drop_rate()
        if not self.training or is_zero(rate):
            return None
        keep = 1.0 - rate
        return h.new_empty(h.shape).bernoulli_(keep).div_(keep)

    def drop(self, h: torch.Tensor) -> torch.Tensor:
        mask = self.sample_mask(h)
        return h if mask is None else h * mask


RNN_TYPES = (nn.RNNBase, nn.RNNCellBase)


@register("regularizer", "weight_drop")
class WeightDrop(DropoutBase):
    """DropConnect on the recurrent weights of an RNN (Merity et al., 2017, AWD-LSTM; Wan et al., 2013).

    A parametrization (``torch.nn.utils.parametrize``): in training, the hidden-to-hidden matrix
    the RNN sees is ``W_hh * mask / (1 - p)`` with one mask per forward call, shared by all time
    steps and sequences of the batch. The stored parameter is untouched (it lives at
    ``rnn.parametrizations.weight_hh_l0.original``) and receives the gradients. Because only the
    weight changes, ``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN`` keep running their fused (cuDNN) kernel.

    Call :meth:`apply_to` (or the :func:`weight_drop` function) on the RNN; a network that owns a
    ``weight_drop`` slot does this for you. The mask is drawn once per forward call of the RNN,
    wherever it is used: torch's RNN reads a parametrized weight several times per call, so
    :meth:`apply_to` adds forward hooks to the RNN that hold one mask from the start of its
    forward to its end. Outside a forward, reading ``rnn.weight_hh_l0`` draws a fresh mask.

    Args:
        p: drop probability of each recurrent weight, 0 <= p < 1.
        names: shell pattern(s) of the parameters to drop, comma separated; the default takes
            ``weight_hh_l0``, ``weight_hh_l1``, ... (and ``weight_hh`` of RNN cells).

    Shape:
        As a parametrization: input a weight matrix, output the same shape (identity in eval mode).
        The RNN's own shapes are unchanged.

    Examples:
        >>> lstm = WeightDrop(0.5).apply_to(nn.LSTM(20, 20, num_layers=2))
        >>> with parametrize.cached():
        ...     out, (h, c) = lstm(torch.randn(35, 4, 20))
        >>> out.shape
        torch.Size([35, 4, 20])
        >>> lstm.parametrizations.weight_hh_l0.original.shape  # the stored weight, never dropped
        torch.Size([80, 20])
    """

    layouts: ClassVar[Layouts] = {RECURRENT: {}}

    def __init__(self, p: float = 0.5, names: str = "weight_hh*") -> None:
        super().__init__(p)
        self.names = names
        self._in_forward = False
        self._mask: torch.Tensor | None = None

    def drop(self, weight: torch.Tensor) -> torch.Tensor:
        if not self._in_forward:
            return dropout(weight, self.p)
        if self._mask is None or self._mask.shape != weight.shape or self._mask.device != weight.device:
            self._mask = keep_mask(weight, weight.shape, 1.0 - self.drop_rate())
        return weight * self._mask

    def _begin(self, *_: object) -> None:
        """Forward pre-hook of the RNN: the next read of the weight draws this call's mask."""
        self._in_forward, self._mask = True, None

    def _end(self, *_: object) -> None:
        """Forward hook of the RNN: forget the mask, so the next call draws a new one."""
        self._in_forward, self._mask = False, None

    def matching(self, module: nn.Module) -> list[str]:
        """Names of ``module``'s own (unparametrized) parameters that this drop applies to."""
        patterns = [p.strip() for p in self.names.split(",") if p.strip()]
        own = [n for n, _ in module.named_parameters(recurse=False)]
        return [n for n in own if any(fnmatch.fnmatch(n, pat) for pat in patterns)]

    def apply_to(self, module: nn.Module) -> nn.Module:
        """Parametrize the matching weights of every RNN inside ``module`` (in place), or of
        ``module`` itself when it holds no RNN but has matching parameters (DropConnect on a Linear
        or a conv with ``names: weight``); returns it."""
        rnns: list[nn.Module] = [m for m in module.modules() if isinstance(m, RNN_TYPES)]
        if not rnns and self.matching(module):
            rnns = [module]
        if not rnns:
            raise ValueError(f"weight_drop found no nn.RNN/LSTM/GRU (or cell) in {type(module).__name__}, and no "
                             f"parameter of it matches {self.names!r}")
        for rnn in rnns:
            names = self.matching(rnn)
            if not names and not parametrize.is_parametrized(rnn):
                raise ValueError(f"weight_drop: no parameter of {type(rnn).__name__} matches {self.names!r}")
            for name in names:
                drop = type(self)(self.p, self.names)
                parametrize.register_parametrization(rnn, name, drop)
                rnn.register_forward_pre_hook(drop._begin)
                rnn.register_forward_hook(drop._end)
        return module


def weight_drop(module: nn.Module, p: float = 0.5, names: str = "weight_hh*") -> nn.Module:
    """Apply :class:`WeightDrop` to every RNN in ``module`` (in place) and return it."""
    return WeightDrop(p, names).apply_to(module)


def has_weight_drop(module: nn.Module) -> bool:
    """Whether any parameter inside ``module`` is parametrized by :class:`WeightDrop`."""
    return any(isinstance(m, WeightDrop) for m in module.modules())

