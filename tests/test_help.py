"""What a newcomer reads first: ``regkit --help`` and ``regkit fit --help``."""
from __future__ import annotations

from conftest import regkit_main


def test_help_names_subcommands_plugins_tasks_and_data_modules():
    main = regkit_main("--help")
    assert main.returncode == 0, main.stderr[-3000:]
    usage = main.stdout.splitlines()[0]
    assert usage.startswith("usage: regkit") and "list" in usage and "--plugins" in usage
    lines = main.stdout.splitlines()
    # the description keeps its line breaks: one example command per line
    assert any(line.strip().startswith("regkit list [KIND] [PATTERN] [--json]") for line in lines)
    assert any(line.strip().startswith("regkit --plugins my_components.py fit") for line in lines)

    fit = regkit_main("fit", "--help")
    assert fit.returncode == 0, fit.stderr[-3000:]
    assert fit.stdout.startswith("usage: regkit [options] fit ")
    for name in ("regkit.tasks.Classifier", "regkit.tasks.GAN", "regkit.tasks.LanguageModel",
                 "regkit.data.MNISTDataModule", "regkit.data.FashionMNISTDataModule", "regkit.data.PTBDataModule"):
        # listed with its summary line in the description, and among the --model/--data classes
        assert any(line.strip().startswith(name + " ") for line in fit.stdout.splitlines()), name
        assert fit.stdout.count(name) >= 2, name
