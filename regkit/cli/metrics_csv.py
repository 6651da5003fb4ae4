"""Reading a run's ``metrics.csv`` (Lightning's CSVLogger): the rows, and a metric per epoch. One
reader for the run's own ``curves.png`` and for ``regkit compare``'s report, so both agree."""
from __future__ import annotations

import csv
import math
import statistics
from pathlib import Path


def read_metrics(path: str | Path) -> list[dict[str, float]]:
    """Rows of a CSVLogger ``metrics.csv``, each with its non-empty numeric cells as floats."""
    rows = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            parsed = {}
            for key, value in row.items():
                if value not in ("", None):
                    try:
                        parsed[key] = float(value)
                    except ValueError:
                        pass
            rows.append(parsed)
    return rows


def per_epoch(rows: list[dict[str, float]], key: str) -> list[tuple[float, float]]:
    """``(epochs done, value)`` of ``key`` for each epoch in which it was logged: 1 for the first
    epoch (Lightning's ``epoch`` column counts from 0). The value is the epoch-level one
    (``key_epoch`` when logged on both levels), or the mean of the epoch's per-step values."""
    values: dict[float, list[float]] = {}
    epoch_key = key + "_epoch" if any(key + "_epoch" in r for r in rows) else key
    for row in rows:
        if epoch_key in row and math.isfinite(row[epoch_key]):
            values.setdefault(row.get("epoch", 0.0) + 1, []).append(row[epoch_key])
    return [(epoch, statistics.fmean(v)) for epoch, v in sorted(values.items())]
