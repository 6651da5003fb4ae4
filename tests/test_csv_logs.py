"""The run folder's CSV logger (regkit/loggers/csv_logs.py): a resumed run keeps the rows of the
run it continues, without Lightning's warning, and drops those logged after its checkpoint."""
from __future__ import annotations

import csv
import warnings
from pathlib import Path

from regkit.loggers.csv_logs import RunCSVLogger


def rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv", newline="") as file:
        return list(csv.DictReader(file))


def test_a_resumed_run_keeps_earlier_rows_and_forgets_those_after_its_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("{}\n")  # a run folder is never empty
    killed = RunCSVLogger(str(tmp_path))
    for step in range(6):  # checkpoint after step 3, killed after step 5
        killed.log_metrics({"train/loss": float(step), "epoch": 0}, step)
    killed.log_metrics({"val/acc": 0.5, "epoch": 0}, 5)
    killed.save()

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "exists and is not empty ... will be deleted"
        resumed = RunCSVLogger(str(tmp_path))
        resumed.log_hyperparams({"lr": 0.1})  # the writer exists before training starts
        resumed.forget_after(3)
    assert [r["step"] for r in rows(tmp_path)] == ["0", "1", "2", "3"]
    for step in (4, 5):  # trained and logged again
        resumed.log_metrics({"train/loss": float(step) + 0.5, "epoch": 0}, step)
    resumed.save()
    assert [(r["step"], r["train/loss"]) for r in rows(tmp_path)] == [
        ("0", "0.0"), ("1", "1.0"), ("2", "2.0"), ("3", "3.0"), ("4", "4.5"), ("5", "5.5")]

    again = RunCSVLogger(str(tmp_path))  # resumed once more: nothing after step 5 to forget
    again.forget_after(5)
    again.log_metrics({"train/loss": 6.0, "epoch": 1}, 6)
    again.finalize("success")
    assert [r["step"] for r in rows(tmp_path)] == ["0", "1", "2", "3", "4", "5", "6"]
    assert rows(tmp_path)[-1]["epoch"] == "1"
