"""regkit's Python API: the registry contract (register, build, available; unknown names and arguments
fail naming them), one registry and spec type per kind, component specs and their errors, slots, and a
Classifier trained with a plain Trainer."""
from __future__ import annotations

import sys

import pytest
import torch

import regkit
from regkit import registry
from regkit.registry import NetworkSpec, RegularizerSpec
from regkit.registry.spec import spec_type


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


def test_bad_value_names_its_argument():
    with pytest.raises(regkit.BadInput, match=r"^p: must be in \[0, 1\), got 1.0") as err:
        regkit.build("regularizer", "dropout", p=1.0)
    assert err.value.key == "p"  # whoever holds the component prefixes its key (a spec, the CLI)


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
        ({"name": "mlp", "dropout": {"name": "dropout", "p": 2}}, r"dropout\.p: must be in \[0, 1\)"),
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


def test_each_kind_is_one_registry_with_its_own_spec_type():
    assert regkit.KINDS == tuple(registry.REGISTRIES)
    for kind, reg in registry.REGISTRIES.items():
        assert reg.kind == kind and reg.Spec.kind == kind and reg.Spec.registry is reg
    assert regkit.RegularizerSpec is registry.regularizer.Spec
    spec = regkit.RegularizerSpec.parse({"name": "dropout", "p": 0.3})
    assert spec.entry is registry.get("regularizer", "dropout")  # resolved once, kept
    assert spec.to_config() == {"name": "dropout", "p": 0.3}


def test_a_new_kind_is_a_registry_and_its_spec_type():
    kind = registry.Registry("test_only_kind")
    spec_type(kind)
    try:
        @regkit.register("test_only_kind")
        class TestOnlyThing:
            """A thing (test only)."""

            def __init__(self, size: int = 1) -> None:
                self.size = size

        assert "test_only_kind" in registry.REGISTRIES
        assert regkit.build("test_only_kind", "test_only_thing", size=3).size == 3
        assert kind.Spec.parse({"name": "test_only_thing", "size": 2}).build().size == 2
        with pytest.raises(regkit.RegkitError, match="has no argument 'sise'; did you mean 'size'"):
            kind.Spec.parse({"name": "test_only_thing", "sise": 2})
    finally:
        del registry.REGISTRIES["test_only_kind"]


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
