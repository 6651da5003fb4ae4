"""``regkit compare``: one recipe under a grid of command-line overrides x seeds, each setting and
seed a real ``regkit fit`` in its own process and run folder, summarised as a CSV, a markdown table
(mean +- std over seeds) and a picture (final metric with error bars, validation curves with a band).

    regkit compare --config recipes/mlp_dropout.yaml \\
        --vary model.init_args.network.dropout.name=dropout,gaussian_dropout --seeds 3 \\
        --trainer.max_epochs 3

``--vary KEY=V1,V2`` (repeatable: the settings are the grid of all of them) becomes ``--KEY V`` on
each run's command line; ``null`` switches a slot off; ``--vary config=a.yaml,b.yaml`` lays a recipe
file over the base recipe per setting. Every option compare does not know is passed to each
``regkit fit`` unchanged. Every setting is parsed first (regkit/compare/check.py): one
``regkit fit`` would refuse stops the comparison before any run. Finished runs are skipped, so a stopped comparison resumes where it was;
``--wandb-sweep FILE`` writes the same grid as a W&B sweep for ``wandb agent`` on many machines.
"""
from regkit.compare.main import main

__all__ = ["main"]
