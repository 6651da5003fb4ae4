"""Schedules (regkit/components/schedules.py): each kind's value at chosen times equals its
formula; the rate a module really applies follows it during training (the fraction of zeros in a
dropout mask early and late); the value is logged; bad schedules fail naming their key."""
from __future__ import annotations

import math

import lightning as L
import pytest
import torch

import regkit
from regkit.components.schedules import Progress
from regkit.registry import RegularizerSpec, ScheduleSpec
from regkit.tasks import Classifier


def value(config: dict, step: int, total: int = 100, epoch: int = 0) -> float:
    return ScheduleSpec.parse(config).build().value(Progress(step=step, total_steps=total, epoch=epoch))


@pytest.mark.parametrize("config, step, expected", [
    ({"schedule": "constant", "value": 0.3}, 50, 0.3),
    ({"schedule": "linear", "start": 0.0, "end": 0.2, "until": 0.5}, 0, 0.0),
    ({"schedule": "linear", "start": 0.0, "end": 0.2, "until": 0.5}, 25, 0.1),
    ({"schedule": "linear", "start": 0.0, "end": 0.2, "until": 0.5}, 80, 0.2),
    ({"schedule": "linear", "start": 0.5, "end": 0.1, "begin": 0.2, "until": 0.6}, 40, 0.3),
    ({"schedule": "linear", "start": 0.0, "end": 0.4, "until": 40, "unit": "steps"}, 10, 0.1),
    ({"schedule": "cosine", "start": 0.0, "end": 0.2}, 50, 0.1),
    ({"schedule": "cosine", "start": 0.0, "end": 0.2}, 25, 0.1 * (1 - math.cos(math.pi / 4))),
    ({"schedule": "step", "values": [0.0, 0.1, 0.3], "milestones": [0.3, 0.6]}, 29, 0.0),
    ({"schedule": "step", "values": [0.0, 0.1, 0.3], "milestones": [0.3, 0.6]}, 30, 0.1),
    ({"schedule": "step", "values": [0.0, 0.1, 0.3], "milestones": [0.3, 0.6]}, 99, 0.3),
    ({"schedule": "early", "value": 0.1, "cutoff": 0.2}, 19, 0.1),
    ({"schedule": "early", "value": 0.1, "cutoff": 0.2}, 20, 0.0),
    ({"schedule": "late", "value": 0.1, "cutoff": 0.2}, 19, 0.0),
    ({"schedule": "late", "value": 0.1, "cutoff": 0.2}, 20, 0.1),
])
def test_each_schedule_s_value_is_its_formula(config, step, expected):
    assert value(config, step) == pytest.approx(expected)


def test_epochs_count_epochs():
    config = {"schedule": "step", "values": [0.0, 0.2], "milestones": [3], "unit": "epochs"}
    assert value(config, step=999, epoch=2) == 0.0 and value(config, step=0, epoch=3) == 0.2


class Rates(L.Callback):
    """The fraction of zeros each dropout module's mask has at chosen training steps."""

    def __init__(self, steps: list[int]) -> None:
        self.steps, self.zeros, self.p = steps, {}, {}

    def on_train_batch_end(self, trainer, module, *args) -> None:
        step = trainer.global_step
        if step in self.steps:
            drop = module.network.layers[3]  # the hidden dropout: Flatten, Linear, ReLU, Dropout
            with torch.no_grad():
                self.zeros[step] = (drop(torch.ones(200, 200)) == 0).float().mean().item()
            self.p[step] = drop.p


def test_the_rate_a_module_applies_follows_its_schedule(tmp_path):
    torch.manual_seed(0)
    task = Classifier(network={"name": "mlp", "in_features": 8, "hidden": [16], "out_features": 2,
                               "dropout": {"name": "dropout", "p": {"schedule": "linear", "start": 0.0, "end": 0.6}}})
    data = torch.utils.data.TensorDataset(torch.randn(400, 8), torch.randint(0, 2, (400,)))
    rates = Rates([2, 96])
    trainer = L.Trainer(max_steps=100, logger=L.pytorch.loggers.CSVLogger(tmp_path), callbacks=[rates],
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        log_every_n_steps=10)
    trainer.fit(task, torch.utils.data.DataLoader(data, batch_size=4))
    # at the end of the batch that made step s, the value set at its start, after s - 1 steps: 0.6 (s - 1) / 100
    assert rates.p[2] == pytest.approx(0.006) and rates.p[96] == pytest.approx(0.57)
    assert rates.zeros[2] < 0.02 and abs(rates.zeros[96] - 0.57) < 0.02  # the masks drop at that rate
    logged = (tmp_path / "lightning_logs" / "version_0" / "metrics.csv").read_text()
    assert "train/schedule/network.layers.3.p" in logged.splitlines()[0]


@pytest.mark.parametrize("p, key, message", [
    ({"schedule": "linaer", "start": 0, "end": 0.1}, "p", "did you mean 'linear'"),
    ({"schedule": "linear", "start": -0.1, "end": 0.1}, "p", "the schedule takes the value -0.1"),
    ({"schedule": "linear", "start": 0.0, "end": 1.0}, "p", "the schedule takes the value 1.0"),
    ({"schedule": "early", "value": 0.1, "cutoff": 1.5}, "p.cutoff", "fraction of training"),
    ({"schedule": "linear", "start": 0.0}, "p", "needs argument 'end'"),
    ({"schedule": "step", "values": [0.1], "milestones": [0.5]}, "p.values", "one more value"),
    ({"schedule": "linear", "start": 0.0, "end": 0.1, "unit": "epoch"}, "p.unit", "fraction, steps, epochs"),
])
def test_a_bad_schedule_fails_naming_its_key(p, key, message):
    with pytest.raises(regkit.RegkitError) as info:
        RegularizerSpec.parse({"name": "dropout", "p": p})
    assert info.value.key == key and message in str(info.value), str(info.value)


def test_a_schedule_in_steps_past_the_end_of_training_is_refused():
    from regkit.cli.recipe_checks import check_config

    config = {"trainer": {"max_epochs": 10}, "model": {"init_args": {"network": {
        "name": "mlp", "dropout": {"name": "dropout", "p": {"schedule": "early", "value": 0.1, "cutoff": 20,
                                                             "unit": "epochs"}}}}}}
    with pytest.raises(regkit.BadInput) as info:
        check_config(config)
    assert info.value.key == "model.init_args.network.dropout.p.cutoff" and "max_epochs: 10" in str(info.value)


def test_only_numeric_arguments_of_regularizers_penalties_and_constraints_take_schedules():
    with pytest.raises(regkit.RegkitError, match="cannot be schedules"):
        regkit.registry.NetworkSpec.parse({"name": "mlp", "in_features": {"schedule": "constant", "value": 3}})
    spec = regkit.registry.PenaltySpec.parse({"name": "l2", "strength": {"schedule": "late", "value": 1e-4, "cutoff": 0.5}})
    assert spec.to_config()["strength"] == {"schedule": "late", "value": 1e-4, "cutoff": 0.5}
    assert spec.build().strength == 0.0  # starts at the schedule's first value


def test_a_rule_sets_a_schedule_and_depth_scales_it():
    model = torch.nn.Sequential(*[torch.nn.Dropout(0.0) for _ in range(4)])
    report = regkit.regularize(model, [{"type": "Dropout", "set": {"p": {"schedule": "linear", "start": 0.0,
                                                                           "end": 0.4}}, "depth": "linear"}])
    from regkit.components.schedules import apply, scheduled

    values = apply(scheduled(model), Progress(step=100, total_steps=100))
    assert [round(m.p, 6) for m in model] == [0.1, 0.2, 0.3, 0.4] and values["3.p"] == pytest.approx(0.4)
    assert "linear 0 -> 0.1" in report.table() and "linear 0 -> 0.4" in report.table()


def test_a_user_registered_schedule_is_used_by_name():
    from regkit.components.schedules import Schedule

    @regkit.register("schedule", "triangle")
    class Triangle(Schedule):
        """Up to ``peak`` at the middle of training and back to 0 (a test-only kind)."""

        def __init__(self, peak: float) -> None:
            super().__init__()
            self.peak = peak

        def at(self, t: float) -> float:
            return self.peak * (1 - abs(2 * t - 1))

        def values(self) -> list[float]:
            return [0.0, self.peak]

    try:
        spec = RegularizerSpec.parse({"name": "dropout", "p": {"schedule": "triangle", "peak": 0.4}})
        module = spec.build()
        schedule = module.regkit_schedules["p"]
        assert schedule.value(Progress(step=50, total_steps=100)) == pytest.approx(0.4)
        with pytest.raises(regkit.RegkitError, match="takes the value 1.5"):
            RegularizerSpec.parse({"name": "dropout", "p": {"schedule": "triangle", "peak": 1.5}})
    finally:
        regkit.registry.unregister("schedule", "triangle")
