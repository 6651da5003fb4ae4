"""Command-line options inside a recipe component (regkit/cli/overrides.py): one key merged into the
component, a slot switched off or its component replaced, and ``--print_config`` printing a recipe
that is itself valid. Runs ``regkit`` in this process (conftest.regkit_main)."""
from __future__ import annotations

import pytest
import yaml

from regkit.cli.overrides import may_reach_a_component, merge

from conftest import RECIPES, regkit_main


def test_override_merge_sets_one_key_and_keeps_the_rest():
    network = {"name": "mlp", "hidden": [8], "dropout": {"name": "dropout", "p": 0.5}}
    assert merge(network, "dropout.p", 0.3)["dropout"] == {"name": "dropout", "p": 0.3}
    assert merge(network, "dropout", None)["dropout"] is None
    assert merge(network, "dropout", "gaussian_dropout")["dropout"] == "gaussian_dropout"
    assert merge(network, "hidden", [4])["hidden"] == [4] and network["hidden"] == [8]  # no mutation


def test_only_options_that_may_reach_inside_a_component_are_merged():
    for key in ("model.init_args.network.dropout.p", "model.init_args.network.hidden", "model.network.hidden",
                "model.init_args.penalties.0.strength", "model.init_args.critic.init_args.dropout.p",
                "model.init_args.network.init_args.depth", "model.init_args.optimizer.init_args.lr"):
        assert may_reach_a_component(key), key
    for key in ("data.init_args.batch_size", "trainer.max_epochs",
                "trainer.callbacks.0.init_args.num_samples", "trainer.logger.init_args.project", "checkpoint.monitor"):
        assert not may_reach_a_component(key), key  # a class_path's argument or a plain option


def _printed_network(*args: str) -> dict:
    result = regkit_main("fit", *args, "--print_config")
    assert result.returncode == 0, result.stderr[-3000:]
    return yaml.safe_load(result.stdout)["model"]["init_args"]["network"]


def test_single_argument_override_merges_into_component():
    network = _printed_network("--config", str(RECIPES / "mlp_dropout.yaml"), "--model.init_args.network.dropout.p", "0.3")
    assert network["dropout"] == {"name": "dropout", "p": 0.3}
    assert network["input_dropout"] == {"name": "dropout", "p": 0.2}


def test_overrides_of_one_component_merge_in_order_and_may_leave_out_init_args():
    network = _printed_network("--config", str(RECIPES / "mlp_dropout.yaml"),
                               "--model.init_args.network.dropout", "gaussian_dropout",
                               "--model.network.dropout.p", "0.1", "--model.init_args.network.hidden", "[16]",
                               "--model.init_args.optimizer.init_args.lr", "0.05")
    assert network["dropout"] == {"name": "gaussian_dropout", "p": 0.1} and network["hidden"] == [16]


@pytest.mark.parametrize(
    "recipe, override, expected",
    [
        ("mlp_dropout.yaml", ["--model.init_args.network.dropout", "null"], {"dropout": None}),
        ("mlp_dropout.yaml", ["--model.init_args.network.dropout", "gaussian_dropout"], {"dropout": {"name": "gaussian_dropout"}}),
        ("mlp_batchnorm_dropout.yaml", ["--model.init_args.network.norm", "null"], {"norm": None}),
    ],
)
def test_switches_a_slot_off_or_replaces_its_component(recipe, override, expected):
    network = _printed_network("--config", str(RECIPES / recipe), *override)
    assert {k: network[k] for k in expected} == expected
    assert network["hidden"]  # the rest of the component is kept


def test_print_config_is_itself_a_valid_recipe(tmp_path):
    printed = regkit_main("fit", "--config", str(RECIPES / "mlp_batchnorm_dropout.yaml"), "--print_config")
    assert printed.returncode == 0, printed.stderr
    path = tmp_path / "printed.yaml"
    path.write_text(printed.stdout)
    again = regkit_main("fit", "--config", str(path), "--print_config")
    assert again.returncode == 0, again.stderr
    assert yaml.safe_load(again.stdout) == yaml.safe_load(printed.stdout)


def test_an_argument_of_a_class_path_network_is_set_from_the_command_line(tmp_path):
    """``--model.init_args.network.init_args.X`` reaches a network given by class_path (timm's
    ``zero_init_last``, a Hugging Face config's size) as ``init_args.X`` of the optimizer reaches the
    optimizer; the rest is kept. It was refused as "a network that is not there"."""
    recipe = yaml.safe_load((RECIPES / "mlp_dropout.yaml").read_text())
    recipe["model"]["init_args"]["network"] = {"class_path": "torch.nn.Bilinear",
                                               "init_args": {"in1_features": 4, "in2_features": 4, "out_features": 10}}
    path = tmp_path / "foreign.yaml"
    path.write_text(yaml.safe_dump(recipe))
    network = _printed_network("--config", str(path), "--model.init_args.network.init_args.out_features", "5",
                               "--model.init_args.optimizer.init_args.lr", "0.01")
    assert network == {"class_path": "torch.nn.Bilinear",
                       "init_args": {"in1_features": 4, "in2_features": 4, "out_features": 5}}
