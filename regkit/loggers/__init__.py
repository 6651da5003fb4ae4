"""Loggers a recipe names by class path (``trainer.logger``): W&B offline by default, and the CSV
logger of every run folder. Lightning's own loggers work beside or instead of them. ``interval``:
which training batches the tasks log (a count of training batches they keep themselves)."""
from regkit.loggers.csv_logs import RunCSVLogger
from regkit.loggers.wandb import WandbLogger, git_revision, resolve_offline, run_versions, wandb_logged_in

__all__ = ["RunCSVLogger", "WandbLogger", "git_revision", "resolve_offline", "run_versions", "wandb_logged_in"]
