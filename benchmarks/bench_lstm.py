"""Training throughput (tokens/s, forward + backward) of an LSTM with variational dropout.

Three ways to regularize the same 2-layer LSTM, same sizes, same inputs, timed in turns in one run:

* ``variational, fused``: regkit's ``RecurrentStack`` as ``rnn_lm`` builds it: locked dropout on
  the input, between the layers and on the output, weight-drop (DropConnect, via
  ``torch.nn.utils.parametrize``) on ``weight_hh``; each layer runs torch's fused ``nn.LSTM``
  (cuDNN on a GPU, oneDNN on a CPU);
* ``plain nn.LSTM + standard dropout`` (the baseline): a hand-written ``nn.LSTM(num_layers=2,
  dropout=p)`` with ``nn.Dropout`` on its input and output, Zaremba et al.'s model;
* ``LSTMCell loop (Gal exact)``: ``mode: cell_loop``, a Python loop over time steps with a
  per-sequence mask on the hidden state.

The embedding and the softmax are left out so the numbers measure the recurrent part (with a 10k
vocabulary the decoder dominates and all ratios move toward 1). Run: ``python benchmarks/bench_lstm.py``
(``--quick`` for fewer repeats).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import measure_interleaved, print_table, row  # noqa: E402

from regkit.networks.rnn import RecurrentStack  # noqa: E402
from regkit.components.regularizers.recurrent import VariationalDropout  # noqa: E402
from regkit.registry import RegularizerSpec

BENCH = "lstm"


class PlainLSTM(nn.Module):
    """Zaremba et al.'s regularized LSTM, written directly against torch."""

    def __init__(self, size: int, layers: int, p: float) -> None:
        super().__init__()
        self.inp, self.out = nn.Dropout(p), nn.Dropout(p)
        self.lstm = nn.LSTM(size, size, layers, dropout=p, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.lstm(self.inp(x))[0])


class RegkitLSTM(nn.Module):
    def __init__(self, size: int, layers: int, p: float, mode: str) -> None:
        super().__init__()
        locked = RegularizerSpec.parse({"name": "variational_dropout", "p": p})
        drop = None if mode == "cell_loop" else RegularizerSpec.parse({"name": "weight_drop", "p": p})
        self.inp, self.out = VariationalDropout(p, batch_first=True), VariationalDropout(p, batch_first=True)
        self.rnn = RecurrentStack("lstm", size, size, layers, locked, drop, mode,  # type: ignore[arg-type]
                                  recurrent_dropout=p if mode == "cell_loop" else 0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.rnn(self.inp(x))[0])


def _step(model: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        model.zero_grad(set_to_none=True)
        model(x).square().mean().backward()
    return step


def run(quick: bool = False) -> list[dict]:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    size = 650 if device == "cuda" else 200
    batch, steps, layers, p = 20, 35, 2, 0.5
    torch.manual_seed(0)
    x = torch.randn(batch, steps, size, device=device)
    models = {
        "plain nn.LSTM + standard dropout": PlainLSTM(size, layers, p),
        "variational, fused (locked + weight-drop)": RegkitLSTM(size, layers, p, "fused"),
        "LSTMCell loop (Gal exact)": RegkitLSTM(size, layers, p, "cell_loop"),
    }
    fns = {name: _step(m.to(device).train(), x) for name, m in models.items()}
    repeats = 5 if quick else 15
    times = measure_interleaved(fns, repeats=repeats, warmup=2)
    tokens = batch * steps
    tps = {name: (tokens / (ms / 1000), tokens / (ms / 1000) * iqr / ms) for name, (ms, iqr) in times.items()}
    where = f"{device}, {layers}x{size}, batch {batch}, bptt {steps}"
    base, var, loop = list(tps)
    return [
        row(BENCH, f"{base} ({where})", "tokens/s", *tps[base]),
        row(BENCH, f"{var} ({where})", "tokens/s", *tps[var], baseline=base, baseline_value=tps[base][0],
            higher_is_better=True),
        row(BENCH, f"{loop} ({where})", "tokens/s", *tps[loop], baseline=base, baseline_value=tps[base][0],
            higher_is_better=True),
        row(BENCH, f"{var} vs loop ({where})", "tokens/s", *tps[var], baseline=loop, baseline_value=tps[loop][0],
            higher_is_better=True),
    ]


if __name__ == "__main__":
    print_table(run(quick="--quick" in sys.argv))
