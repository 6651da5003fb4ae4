"""Dropout masks: regkit's element-wise dropout (``regkit.components.regularizers.dropout``, masks from
``keep_mask``) against torch's ``F.dropout`` (``nn.Dropout``), forward + backward in training mode, in
the same run, turn about.

On the CPU ``F.dropout`` draws its mask with ATen's ``bernoulli_``; regkit compares float32 uniform draws
with the keep probability, the same distribution (tests/test_references.py) at a fraction of the cost.
On a GPU both are torch's fused kernel (regkit calls ``F.dropout`` there), so the rows are equal by
construction. Shapes: the S1 MLP's hidden layer (batch 128 x 1024), its input (128 x 784) and a
PTB LSTM's activations (35 x 20 x 650, the medium model).
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import cpu_flags, measure_interleaved, print_table, row  # noqa: E402

from regkit.components.regularizers.dropout import dropout  # noqa: E402

BENCHMARK = "masks"


def run(quick: bool = False) -> list[dict]:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    where = torch.cuda.get_device_name(0) if device == "cuda" else f"cpu ({cpu_flags()}), {torch.get_num_threads()} threads"
    repeats, inner = (5, 5) if quick else (15, 20)
    rows: list[dict] = []
    for shape, p, label in (((128, 1024), 0.5, "S1 MLP hidden, 128 x 1024, p=0.5"),
                            ((128, 784), 0.2, "S1 MLP input, 128 x 784, p=0.2"),
                            ((35, 20, 650), 0.5, "PTB medium LSTM activations, 35 x 20 x 650, p=0.5")):
        x = torch.randn(*shape, device=device, requires_grad=True)
        cases = {
            "torch": lambda: F.dropout(x, p, True).sum().backward(),
            "regkit": lambda: dropout(x, p).sum().backward(),
        }
        times = measure_interleaved(cases, repeats=repeats, warmup=2, inner=inner)
        base = times["torch"][0]
        rows.append(row(BENCHMARK, f"{label}: F.dropout (nn.Dropout)", "ms/call", *times["torch"], note=where))
        rows.append(row(BENCHMARK, f"{label}: regkit dropout", "ms/call", *times["regkit"], "F.dropout", base,
                        note="forward + backward, training mode"))
    return rows


if __name__ == "__main__":
    print_table(run(quick="--quick" in sys.argv))
