"""Registry contract, spec parsing, CLI errors and listing, the S1/S3 recipes through the real CLI."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
import yaml

import regkit
from regkit import registry
from regkit.registry import NetworkSpec, RegularizerSpec

from conftest import RECIPES, run_regkit


@pytest.fixture
def scratch_kind():
    """Registers test components under names no built-in uses and removes them afterwards."""
    added: list[tuple[str, str]] = []
    yield added
    for kind, name in added:
        registry.unregister(kind, name)


def test_register_defaults_to_snake_case_and_builds(scratch_kind):
    @regkit.register("regularizer")
    class TestOnlyScaleBy(torch.nn.Module):
        """Multiply by a constant."""

        def __init__(self, factor: float = 2.0) -> None:
            super().__init__()
            self.factor = factor

        def forward(self, x):
            return x * self.factor

    scratch_kind.append(("regularizer", "test_only_scale_by"))
    assert "test_only_scale_by" in regkit.available("regularizer")
    layer = regkit.build("regularizer", "test_only_scale_by", factor=3.0)
    assert torch.equal(layer(torch.ones(2)), torch.full((2,), 3.0))


def test_duplicate_registration_raises_unless_override(scratch_kind):
    def first(p: float = 0.1):
        return ("first", p)

    def second(p: float = 0.1):
        return ("second", p)

    regkit.register("penalty", "test_only_dup")(first)
    scratch_kind.append(("penalty", "test_only_dup"))
    with pytest.raises(regkit.RegistryError, match="already registered"):
        regkit.register("penalty", "test_only_dup")(second)
    regkit.register("penalty", "test_only_dup", override=True)(second)
    assert regkit.build("penalty", "test_only_dup") == ("second", 0.1)


def test_override_replaces_a_builtin_even_before_the_builtins_are_loaded(tmp_path, monkeypatch):
    """A plugin registers over a built-in name with override=True before anything loaded the built-ins
    (the usual order in a fresh process): the built-ins loading later must neither clash with the
    plugin's component nor replace it."""
    (tmp_path / "test_only_builtins.py").write_text(
        "from regkit.registry import register\n\n\n@register('test_only_override_kind')\nclass Thing:\n"
        "    \"\"\"The built-in.\"\"\"\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    registry.Registry("test_only_override_kind", builtins=("test_only_builtins",))
    try:
        @regkit.register("test_only_override_kind", "thing", override=True)
        class PluginThing:
            """The plugin's."""

        assert type(regkit.build("test_only_override_kind", "thing")) is PluginThing
        assert regkit.available("test_only_override_kind") == ["thing"]
        assert registry.get("test_only_override_kind", "thing").obj is PluginThing
    finally:
        del registry.REGISTRIES["test_only_override_kind"]
        monkeypatch.delitem(sys.modules, "test_only_builtins", raising=False)


def test_unknown_name_lists_close_matches():
    with pytest.raises(regkit.RegistryError, match=r"unknown regularizer 'dropuot'; did you mean 'dropout'"):
        regkit.build("regularizer", "dropuot")


def test_unknown_kind_is_an_error():
    with pytest.raises(regkit.RegistryError, match="unknown kind 'regulariser'.*did you mean 'regularizer'"):
        regkit.build("regulariser", "dropout")


def test_wrong_keyword_names_argument_and_component():
    with pytest.raises(regkit.RegistryError, match=r"regularizer 'dropout' has no argument 'rate'.*arguments are: p"):
        regkit.build("regularizer", "dropout", rate=0.1)


def test_missing_required_argument_is_named():
    with pytest.raises(regkit.RegistryError, match=r"norm 'batch_norm' needs argument 'num_features'"):
        regkit.build("norm", "batch_norm")


def test_bad_value_names_component():
    with pytest.raises(regkit.RegistryError, match=r"regularizer 'dropout': p must be a probability"):
        regkit.build("regularizer", "dropout", p=1.0)


def test_available_lists_every_kind_and_filters():
    everything = regkit.available()
    assert set(everything) == set(regkit.KINDS)
    assert "mlp" in everything["network"] and "max_norm" in everything["constraint"]
    assert regkit.available("penalty", "l*") == sorted(n for n in everything["penalty"] if n.startswith("l"))


def test_spec_accepts_name_or_mapping_and_round_trips():
    assert RegularizerSpec.parse("dropout").to_config() == {"name": "dropout"}
    spec = NetworkSpec.parse({"name": "mlp", "hidden": [8], "dropout": {"name": "dropout", "p": 0.1}})
    assert isinstance(spec.kwargs["dropout"], RegularizerSpec)
    assert NetworkSpec.parse(spec.to_config()) == spec
    net = spec.build()
    assert net(torch.randn(4, 1, 28, 28)).shape == (4, 10)


@pytest.mark.parametrize(
    "value, message",
    [
        ({"name": "mlp", "dropout": {"name": "dropuot"}}, "did you mean 'dropout'"),
        ({"name": "mlp", "hidden": "wide"}, "hidden"),
        ({"name": "mlp", "dropout": {"name": "dropout", "p": 2}}, "p must be a probability"),
        ({"hidden": [3]}, "mapping with 'name'"),
    ],
)
def test_spec_errors(value, message):
    with pytest.raises(Exception, match=message):
        NetworkSpec.parse(value)


def test_mlp_order_places_norm_and_dropout():
    net = NetworkSpec.parse(
        {"name": "mlp", "hidden": [16], "norm": "batch_norm", "dropout": "dropout", "order": ["dropout", "norm", "act"]}
    ).build()
    kinds = [type(m).__name__ for m in net.layers]
    assert kinds == ["Flatten", "Linear", "Dropout", "BatchNorm", "ReLU", "Linear"]


def test_spec_errors_carry_the_key_inside_the_component():
    with pytest.raises(regkit.RegkitError) as info:
        NetworkSpec.parse({"name": "mlp", "dropout": {"name": "dropuot"}})
    assert info.value.key == "dropout"
    assert info.value.under("model.init_args.network").key == "model.init_args.network.dropout"
    assert "did you mean 'dropout'" in info.value.message


def _write_recipe(tmp_path: Path, base: str, **network_overrides) -> Path:
    recipe = yaml.safe_load((RECIPES / base).read_text())
    recipe["model"]["init_args"]["network"].update(network_overrides)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_cli_misspelt_component_fails_before_training_naming_key(tmp_path):
    recipe = _write_recipe(tmp_path, "mlp_dropout.yaml", dropout={"name": "dropuot", "p": 0.5})
    result = run_regkit("fit", "--config", str(recipe), timeout=120)
    assert result.returncode != 0
    assert "model.init_args.network.dropout: unknown regularizer 'dropuot'; did you mean 'dropout'" in result.stderr
    assert "Epoch" not in result.stdout + result.stderr


def test_cli_bad_argument_fails_naming_key(tmp_path):
    recipe = _write_recipe(tmp_path, "mlp_dropout.yaml", dropout={"name": "dropout", "rate": 0.5})
    result = run_regkit("fit", "--config", str(recipe), timeout=120)
    assert result.returncode != 0
    assert "model.init_args.network.dropout: regularizer 'dropout' has no argument 'rate'" in result.stderr


def test_cli_single_argument_override_merges_into_component():
    result = run_regkit(
        "fit", "--config", str(RECIPES / "mlp_dropout.yaml"), "--model.init_args.network.dropout.p", "0.3",
        "--print_config", timeout=120,
    )
    assert result.returncode == 0, result.stderr
    network = yaml.safe_load(result.stdout)["model"]["init_args"]["network"]
    assert network["dropout"] == {"name": "dropout", "p": 0.3}
    assert network["input_dropout"] == {"name": "dropout", "p": 0.2}


@pytest.mark.parametrize(
    "recipe, override, expected",
    [
        ("mlp_dropout.yaml", ["--model.init_args.network.dropout", "null"], {"dropout": None}),
        ("mlp_dropout.yaml", ["--model.init_args.network.dropout", "gaussian_dropout"], {"dropout": {"name": "gaussian_dropout"}}),
        ("mlp_batchnorm_dropout.yaml", ["--model.init_args.network.norm", "null"], {"norm": None}),
    ],
)
def test_cli_switches_a_slot_off_or_replaces_its_component(recipe, override, expected):
    result = run_regkit("fit", "--config", str(RECIPES / recipe), *override, "--print_config", timeout=120)
    assert result.returncode == 0, result.stderr
    network = yaml.safe_load(result.stdout)["model"]["init_args"]["network"]
    assert {k: network[k] for k in expected} == expected
    assert network["hidden"]  # the rest of the component is kept


def test_print_config_is_itself_a_valid_recipe(tmp_path):
    printed = run_regkit("fit", "--config", str(RECIPES / "mlp_batchnorm_dropout.yaml"), "--print_config", timeout=120)
    assert printed.returncode == 0, printed.stderr
    path = tmp_path / "printed.yaml"
    path.write_text(printed.stdout)
    again = run_regkit("fit", "--config", str(path), "--print_config", timeout=120)
    assert again.returncode == 0, again.stderr
    assert yaml.safe_load(again.stdout) == yaml.safe_load(printed.stdout)


def test_list_json_shows_components_with_arguments_and_docs():
    result = run_regkit("list", "--json", timeout=120)
    assert result.returncode == 0, result.stderr
    rows = {(c["kind"], c["name"]): c for c in json.loads(result.stdout)["components"]}
    dropout = rows[("regularizer", "dropout")]
    assert [a["name"] for a in dropout["arguments"]][:1] == ["p"]
    assert "Srivastava" in dropout["doc"]
    assert dropout["origin"] == "regkit"
    assert ("constraint", "max_norm") in rows and ("network", "mlp") in rows
    # defaults are JSON values a script can use as they are; the type is text
    args = {(kind, name, a["name"]): a for (kind, name), c in rows.items() for a in c["arguments"]}
    assert args[("regularizer", "dropout", "p")] == {"name": "p", "type": "float", "required": False, "default": 0.5}
    assert args[("regularizer", "dropout", "inplace")]["default"] is False
    assert args[("network", "mlp", "hidden")]["default"] == [1024, 1024]
    assert args[("generator", "dcgan_generator", "norm")]["default"] == {"name": "batch_norm"}
    assert args[("attention", "squeeze_excitation", "num_features")] == {
        "name": "num_features", "type": "int", "required": True}
    assert all(isinstance(a["type"], str) for a in args.values())


def test_list_filters_by_kind_and_pattern():
    result = run_regkit("list", "network", "*cnn*", timeout=120)
    assert result.returncode == 0
    assert "small_cnn" in result.stdout and " mlp " not in result.stdout
    bad = run_regkit("list", "networks", timeout=120)
    assert bad.returncode != 0 and "did you mean 'network'" in bad.stderr


@pytest.mark.parametrize("recipe", ["mlp_dropout.yaml", "mlp_batchnorm_dropout.yaml"])
def test_recipe_fast_dev_run_through_cli(recipe):
    result = run_regkit(
        "fit", "--config", str(RECIPES / recipe), "--trainer.fast_dev_run", "2", "--data.init_args.limit_train", "512",
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Trainer.fit" in result.stderr + result.stdout  # "`Trainer.fit` stopped" is printed at the end


def test_short_training_run_lowers_loss_and_applies_max_norm():
    import lightning as L

    from regkit.data import MNISTDataModule
    from regkit.tasks import Classifier

    data = MNISTDataModule(batch_size=64, limit_train=2048, val_size=1000)
    task = Classifier(
        network=NetworkSpec.parse({"name": "mlp", "hidden": [128], "dropout": {"name": "dropout", "p": 0.2}}),
        constraints=[{"name": "max_norm", "max_norm": 0.5}],
        penalties=[{"name": "l2", "strength": 1e-5}],
    )
    trainer = L.Trainer(
        max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, accelerator="cpu",
    )
    before = trainer.validate(task, datamodule=data, verbose=False)[0]["val/loss"]
    trainer.fit(task, datamodule=data)
    after = trainer.validate(task, datamodule=data, verbose=False)[0]["val/loss"]
    assert after < 0.5 * before
    for layer in task.network.layers:
        if isinstance(layer, torch.nn.Linear):
            assert layer.weight.norm(dim=1).max() <= 0.5 + 1e-5


def test_slot_passes_what_it_knows_to_components_taking_kwargs(scratch_kind):
    from regkit.networks.slots import fill

    @regkit.register("norm", "test_only_kwargs_norm")
    def kwargs_norm(**kwargs):
        """Records what the slot passed."""
        return torch.nn.Identity() if not kwargs else torch.nn.LayerNorm(kwargs["num_features"])

    scratch_kind.append(("norm", "test_only_kwargs_norm"))
    from regkit.registry import NormSpec

    layer = fill(NormSpec.parse("test_only_kwargs_norm"), num_features=7, unused=1)
    assert isinstance(layer, torch.nn.LayerNorm) and layer.normalized_shape == (7,)
    narrow = fill(NormSpec.parse("batch_norm"), num_features=7, unused=1)  # only what it accepts
    assert narrow.num_features == 7
