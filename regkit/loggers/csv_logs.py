"""A CSV logger that writes a run folder's ``metrics.csv`` and keeps its rows across a resume."""
from __future__ import annotations

import csv
import warnings
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter


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
        earlier = read_rows(path) if path.is_file() else []
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"Experiment logs directory .* exists and is not empty")
            writer = super().experiment  # deletes metrics.csv; its rows come back through log_metrics
        if isinstance(writer, ExperimentWriter):  # rank 0's writer (the other ranks get a dummy)
            for row in earlier:
                step = row.pop("step", None)
                writer.log_metrics(row, None if step is None else int(float(step)))
        self._earlier_rows_kept = True
        return writer

    def forget_after(self, step: int) -> None:
        """Drop the rows of logging steps after ``step`` from ``metrics.csv`` (the rows a killed run
        wrote after the checkpoint that training now resumes from, and will write again)."""
        self.save()  # every row so far into metrics.csv, so that the file is the whole record
        path = Path(self.log_dir) / "metrics.csv"
        if not path.is_file():
            return
        with path.open(newline="") as file:
            fields = csv.DictReader(file).fieldnames or []
        kept = [row for row in read_rows(path) if row.get("step") is None or int(float(row["step"])) <= step]
        with path.open("w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=fields)
            writer.writeheader()
            writer.writerows(kept)


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a metrics.csv, each with only the columns it has a value in."""
    with path.open(newline="") as file:
        return [{k: v for k, v in row.items() if v != ""} for row in csv.DictReader(file)]
