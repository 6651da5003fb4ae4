"""A CSV logger that writes a run folder's ``metrics.csv`` and keeps its rows across a resume."""
from __future__ import annotations

import csv
import warnings
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import CSVLogger


class RunCSVLogger(CSVLogger):
    """Lightning's CSVLogger writing ``metrics.csv`` and ``hparams.yaml`` straight into a run folder.

    Lightning's writer warns and deletes an existing ``metrics.csv`` whenever its folder is not
    empty. A run folder always holds ``config.yaml`` by then, and a resumed run (``--ckpt_path
    last``) its earlier metrics: this logger keeps those rows (the new ones are appended after them)
    and so has nothing to warn about. The rows an interrupted run logged after its last checkpoint
    are dropped when training resumes (:meth:`forget_after`): the resumed run logs those steps again.
    """

    def __init__(self, run_dir: str) -> None:
        super().__init__(run_dir, name="", version="")
        self._earlier_rows_kept = False

    @property
    def experiment(self) -> Any:
        if self._earlier_rows_kept:
            return super().experiment
        path = Path(self.log_dir) / "metrics.csv"
        earlier: list[dict[str, Any]] = []
        if path.is_file():
            with path.open(newline="") as file:
                earlier = [{k: v for k, v in row.items() if v != ""} for row in csv.DictReader(file)]
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"Experiment logs directory .* exists and is not empty")
            writer = super().experiment
        if earlier and isinstance(getattr(writer, "metrics", None), list):  # rank 0's writer
            writer.metrics[:0] = earlier  # written back, with the new rows, at the next save
        self._earlier_rows_kept = True
        return writer

    def forget_after(self, step: int) -> None:
        """Drop the rows of logging steps after ``step``, in memory and in ``metrics.csv`` (the rows a
        killed run wrote after the checkpoint that training now resumes from, and will write again)."""

        def kept(row: dict[str, Any]) -> bool:
            return row.get("step") in (None, "") or int(float(row["step"])) <= step

        rows = getattr(self.experiment, "metrics", None)
        if isinstance(rows, list):
            rows[:] = [row for row in rows if kept(row)]
        path = Path(self.log_dir) / "metrics.csv"
        if path.is_file():
            with path.open(newline="") as file:
                reader = csv.DictReader(file)
                fields, earlier = reader.fieldnames or [], [row for row in reader if kept(row)]
            with path.open("w", newline="") as file:
                writer = csv.DictWriter(file, fieldnames=fields)
                writer.writeheader()
                writer.writerows(earlier)
