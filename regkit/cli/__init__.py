"""The ``regkit`` command and everything only the command uses, one concern per file:

* ``main``: the entry point (``regkit list``, ``--plugins``, dispatch); ``commands``: the
  subcommands and the options read from argv by hand;
* ``lightning``: regkit's LightningCLI (``fit|validate|test|predict``); ``parser``: its parser,
  with short parse errors; ``overrides``: ``--x.spec.key v`` merged into a component;
* ``shipped_recipes``: ``regkit recipes`` and ``--config NAME``; ``plugin_recipes``: the recipes
  installed plugins ship; ``layered_configs``: several
  ``--config`` files merged, components too; ``recipe_files``: ``--config`` files; ``checkpoints``: ``--ckpt_path`` read as data, the
  checkpoint trust rule; ``local_plugins``: ``--plugins`` files and modules;
* ``recipe_checks``: checks of the whole parsed recipe; ``error_keys``: the recipe key of a
  constructor's error; ``error_report``: the two-line report and exit code 2;
* ``run_folder``: where a run writes (one folder per run, resume, the W&B id); ``launcher_id``:
  the run id torchrun / SLURM processes share (the job id); ``run_lock``: one process at a time writes it;
  ``run_summary``: ``curves.png`` and the summary printed after fit; ``metrics_csv``: reading a
  run's ``metrics.csv``; ``warnings_filter``: the upstream warnings a run silences.
"""
from regkit.cli.main import main

__all__ = ["main"]
