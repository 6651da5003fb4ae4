"""Layered recipes: a shipped recipe as the base and a user's file with only what changes
(regkit/cli/layered_configs.py), and the run folder's config.yaml equal to what ran."""
from __future__ import annotations

from pathlib import Path

import torch
import yaml
from conftest import RECIPES

from regkit.cli.lightning import RegkitCLI
from regkit.cli.layered_configs import complete_components, merged, partial_components

DELTA = """\
trainer:
  max_steps: 3
  limit_val_batches: 2
model:
  init_args:
    network:
      dropout: {p: 0.3}                 # one argument of the base's dropout
      norm: batch_norm                  # a slot the base leaves empty
    optimizer:
      init_args: {lr: 0.05}
data:
  init_args: {limit_train: 1024}
test_after_fit: false
"""


def test_a_later_mapping_merges_into_a_component_unless_it_names_another() -> None:
    base = {"network": {"name": "mlp", "hidden": [8, 8], "dropout": {"name": "dropout", "p": 0.5}}}
    assert merged(base, {"network": {"dropout": {"p": 0.3}}})["network"]["dropout"] == {"name": "dropout", "p": 0.3}
    assert merged(base, {"network": {"dropout": {"name": "gaussian_dropout"}}})["network"]["dropout"] == {
        "name": "gaussian_dropout"}  # another component: the old one's arguments are not carried over
    assert merged(base, {"network": {"hidden": [4]}})["network"]["hidden"] == [4]  # lists replace
    model = {"model": {"init_args": base}}
    assert partial_components(model, {"model": {"init_args": {"network": {"dropout": {"p": 0.3}}}}}) == [
        ("model.init_args.network", {"name": "mlp", "hidden": [8, 8], "dropout": {"name": "dropout", "p": 0.3}})]
    assert partial_components({"model": {"init_args": {"norm": "batch_norm"}}},
                              {"model": {"init_args": {"norm": {"momentum": 0.2}}}}) == [
        ("model.init_args.norm", {"name": "batch_norm", "momentum": 0.2})]


def test_completed_components_go_right_after_their_file_so_later_options_still_win(tmp_path: Path) -> None:
    (tmp_path / "mine.yaml").write_text(DELTA)
    base = str(RECIPES / "mlp_dropout.yaml")
    args = complete_components(["fit", "--config", base, "--config", "mine.yaml", "--model.init_args.network.dropout.p", "0.1"])
    assert args[:5] == ["fit", "--config", base, "--config", "mine.yaml"]
    assert args[5].startswith("--model.init_args.network=") and args[6:] == ["--model.init_args.network.dropout.p", "0.1"]
    assert complete_components(["fit", "--config", base]) == ["fit", "--config", base]  # one file: as given


def test_shipped_recipe_plus_a_delta_file_runs_the_merge_and_config_yaml_is_what_ran(tmp_path: Path) -> None:
    (tmp_path / "mine.yaml").write_text(DELTA)
    cli = RegkitCLI(args=["fit", "--config", str(RECIPES / "mlp_dropout.yaml"), "--config", "mine.yaml",
                          "--trainer.enable_progress_bar", "false"])
    # What ran: the base recipe with the delta's values, inside the components too.
    network = cli.model.network
    dropouts = [m.p for m in network.modules() if type(m).__name__ == "Dropout"]
    assert sorted(set(dropouts)) == [0.2, 0.3]  # the base's input dropout kept, the hidden one changed
    assert sum(isinstance(m, torch.nn.BatchNorm1d) for m in network.modules()) == 2  # the slot the delta filled
    assert [m.out_features for m in network.modules() if type(m).__name__ == "Linear"] == [1024, 1024, 10]
    assert cli.trainer.global_step == 3
    assert cli.trainer.optimizers[0].param_groups[0]["momentum"] == 0.95  # the base's, beside the delta's lr
    assert len(cli.datamodule.train_dataloader().dataset) == 1024
    # The run folder is named after the last file, and its config.yaml is the effective config.
    run_dir = Path(cli.trainer.default_root_dir)
    assert run_dir.parent == Path("runs", "mine")
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    effective = yaml.safe_load(cli.parser.dump(cli.config, skip_none=False))["fit"]
    effective.pop("config", None)
    assert saved == effective
    net = saved["model"]["init_args"]["network"]
    assert net["dropout"] == {"name": "dropout", "p": 0.3} and net["input_dropout"]["p"] == 0.2
    assert saved["model"]["init_args"]["optimizer"]["init_args"]["lr"] == 0.05
    # ... and reparsed alone it is the same recipe again.
    reparsed = cli.parser.parse_args(["fit", "--config", str(run_dir / "config.yaml")])
    again = yaml.safe_load(cli.parser.dump(reparsed, skip_none=False))["fit"]
    again.pop("config", None)
    assert again == saved
