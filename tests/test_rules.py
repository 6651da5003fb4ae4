"""Rules that place regkit's components inside any built model (regkit/rules/): each action really
changes the forward pass (a mask in training, identity in eval), bad rules fail naming their key,
and the same rules reach a Hugging Face model, timm models (when timm is installed) and a plain
LightningModule through the callback."""
from __future__ import annotations

import copy

import lightning as L
import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

import regkit
from regkit.callbacks import Regularize
from regkit.components import mc_predict, stochastic_modules
from regkit.rules import module_table, regularize
from regkit.tasks import Classifier

from conftest import require_package



class Net(nn.Module):
    """A user's own model: conv -> batch norm -> relu -> flatten -> linear -> dropout -> linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc1 = nn.Linear(8 * 8 * 8, 32)
        self.drop = nn.Dropout(0.1)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.conv(x)))
        return self.fc2(self.drop(torch.relu(self.fc1(x.flatten(1)))))


def zero_fraction(module: nn.Module, x: torch.Tensor) -> float:
    module.train()
    with torch.no_grad():
        return (module(x) == 0).float().mean().item()


def test_insert_after_runs_in_the_forward_pass_and_is_identity_in_eval():
    torch.manual_seed(0)
    model, plain = Net(), None
    plain = copy.deepcopy(model)
    report = regularize(model, [{"path": "fc1", "insert": {"name": "dropout", "p": 0.5}}])
    assert [(c.path, c.action) for c in report.changes] == [("fc1", "insert")]
    x = torch.randn(16, 1, 8, 8)
    model.eval(), plain.eval()
    assert torch.equal(model(x), plain(x))  # eval: the inserted dropout is the identity
    seen = []
    model.fc1.register_forward_hook(lambda m, a, out: seen.append(out))  # after regkit's own hook
    model.train()
    model(x)
    assert 0.4 < (seen[-1] == 0).float().mean().item() < 0.6  # fc1's output is dropped at p = 0.5
    assert model.fc1.out_features == 32 and "fc1.weight" in model.state_dict()  # names and attributes kept


def test_insert_before_drops_the_input_of_the_module():
    torch.manual_seed(0)
    lin = nn.Linear(200, 1, bias=False)
    nn.init.ones_(lin.weight)
    wrapper = nn.Sequential(lin)
    regularize(wrapper, [{"path": "0", "insert": {"name": "dropout", "p": 0.3}, "where": "before"}])
    seen = []
    lin.register_forward_pre_hook(lambda m, a: seen.append(a[0]), prepend=False)
    wrapper.train()
    wrapper(torch.ones(64, 200))
    assert 0.25 < (seen[-1] == 0).float().mean().item() < 0.35


def test_replace_takes_the_old_modules_arguments_and_state():
    model = Net()
    model.bn.running_mean.fill_(0.7)
    regularize(model, [{"type": "torch.nn.BatchNorm2d", "replace": {"name": "ghost_batch_norm", "virtual_batch_size": 4}},
                       {"type": "Dropout", "replace": "gaussian_dropout"}])
    assert type(model.bn).__name__ == "GhostBatchNorm" and model.bn.num_features == 8
    assert torch.allclose(model.bn.running_mean, torch.full((8,), 0.7))  # the statistics came along
    assert type(model.drop).__name__ == "GaussianDropout" and model.drop.p == pytest.approx(0.1)  # p taken


def test_replace_with_a_sequence_layout_shares_the_mask_over_time():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 16), nn.Dropout(0.5))
    regularize(model, [{"type": "Dropout", "replace": {"name": "variational_dropout"}, "layout": "sequence"}])
    assert model[1].batch_first
    x = torch.ones(4, 30, 16)  # (N, T, C)
    model.train()
    with torch.no_grad():
        mask = model[1](x)
    assert torch.equal(mask, mask[:, :1].expand_as(mask))  # one mask per sequence, the same at every step
    assert 0.35 < (mask == 0).float().mean().item() < 0.65


def test_set_changes_the_rate_of_existing_modules():
    model = Net()
    regularize(model, [{"type": "torch.nn.Dropout", "set": {"p": 0.6}}])
    assert model.drop.p == 0.6
    torch.manual_seed(0)
    assert 0.55 < zero_fraction(model.drop, torch.ones(100, 100)) < 0.65


def test_wrap_drops_weights_as_a_parametrization():
    torch.manual_seed(0)
    model = Net()
    regularize(model, [{"path": "fc2", "wrap": {"name": "weight_drop", "p": 0.5, "names": "weight"}}])
    assert parametrize.is_parametrized(model.fc2, "weight")
    x = torch.randn(4, 1, 8, 8)
    model.train()
    assert not torch.equal(model(x), model(x))
    model.eval()
    assert torch.equal(model(x), model(x))


def test_depth_linear_spreads_the_rate_over_the_matches():
    model = nn.Sequential(*[nn.Sequential(nn.Linear(4, 4)) for _ in range(4)])
    report = regularize(model, [{"path": "*.0", "insert": {"name": "drop_path", "p": 0.4}, "depth": "linear"}])
    rates = [block[0].regkit_after[0].p for block in model]
    assert rates == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert "p=0.1" in report.table() and "p=0.4" in report.table()  # the per-block values are shown


def test_penalty_and_constraint_rules_join_a_task():
    task = Classifier(network={"name": "mlp", "hidden": [16]}, regularize=[
        {"params": "layers.1.weight", "penalty": {"name": "l2", "strength": 1.0}},
        {"params": "*weight", "constraint": {"name": "max_norm", "max_norm": 0.5}},
    ])
    assert task.penalty_names == ["l2"] and len(task.constraints) == 1
    expected = task.network.layers[1].weight.pow(2).sum()
    assert torch.allclose(task.penalties[0](task.regularized_model()), expected)
    task.apply_constraints()
    assert task.network.layers[1].weight.norm(dim=1).max() <= 0.5 + 1e-6
    # the rules are in the checkpoint's hyperparameters, so the same task is rebuilt from them
    again = Classifier(**{k: v for k, v in task.hparams.items() if not k.startswith("_")})
    assert again.penalty_names == ["l2"] and len(again.constraints) == 1


def test_mc_dropout_samples_what_rules_inserted():
    torch.manual_seed(0)
    model = Net()
    model.drop = nn.Identity()  # no stochastic module of its own
    assert not stochastic_modules(model)
    regularize(model, [{"path": "fc1", "insert": {"name": "dropout", "p": 0.3}}])
    assert len(stochastic_modules(model)) == 1
    pred = mc_predict(model, torch.randn(8, 1, 8, 8), samples=8)
    assert pred.variance.sum() > 0  # the samples differ


@pytest.mark.parametrize("rules, key, message", [
    ([{"path": "fc9", "insert": "dropout"}], "regularize.0", "matches no module"),
    ([{"type": "torch.nn.Linaer", "insert": "dropout"}], "regularize.0.type", "did you mean 'Linear'"),
    ([{"type": "Linaer", "insert": "dropout"}], "regularize.0.type", "did you mean 'Linear'"),
    ([{"type": "Linear", "isnert": "dropout"}], "regularize.0.isnert", "did you mean 'insert'"),
    ([{"type": "Linear", "insert": "dropuot"}], "regularize.0.insert.name", "did you mean 'dropout'"),
    ([{"type": "Linear", "insert": "dropout", "replace": "dropout"}], "regularize.0", "exactly one of"),
    ([{"type": "Linear", "insert": {"name": "drop_block"}, "layout": "sequence"}], "regularize.0.insert",
     "drop_block' cannot fill"),
    ([{"type": "Linear", "insert": "variational_dropout"}], "regularize.0.layout", "add layout"),
    ([{"type": "Dropout", "set": {"q": 0.2}}], "regularize.0.set.q", "has no attribute 'q'"),
    ([{"type": "Dropout", "set": {"p": 1.5}}], "regularize.0.set.p", "rate in [0, 1)"),
    ([{"type": "Linear", "wrap": "dropout"}], "regularize.0.wrap", "does not act on weights"),
    ([{"type": "Linear", "insert": {"name": "dropout", "p": 2}}], "regularize.0.insert.p", "[0, 1)"),
    ([{"params": "nothing*", "penalty": "l2"}], "regularize.0.params", "matches no parameter"),
    ([{"params": "*", "type": "Linear", "penalty": "l2"}], "regularize.0.type", "selects parameters with params"),
])
def test_a_bad_rule_fails_naming_its_key(rules, key, message):
    model = Net()
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(regkit.RegkitError) as info:
        regularize(model, rules)
    assert info.value.key == key and message in str(info.value), str(info.value)
    assert model.state_dict().keys() == before.keys()  # nothing was changed


def test_a_zero_match_names_close_module_names():
    with pytest.raises(regkit.RegkitError, match="close names: 'fc2' or 'fc1'"):
        regularize(Net(), [{"path": "fc", "insert": "dropout"}])
    assert "fc1" in module_table(Net()) and "torch.nn.modules.linear.Linear" in module_table(Net())


# ---------------------------------------------------------------- any LightningModule, any model


RULES = [
    {"type": "torch.nn.Dropout", "replace": {"name": "variational_dropout"}, "layout": "features"},
    {"path": "fc1", "insert": {"name": "dropout", "p": 0.2}},
    {"params": "fc2.weight", "constraint": {"name": "max_norm", "max_norm": 0.1}},
]


class OwnModule(L.LightningModule):
    """A user's LightningModule, not a regkit task."""

    def __init__(self) -> None:
        super().__init__()
        self.model = Net()

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self.model(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.5)


def loader(n: int = 64):
    g = torch.Generator().manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g))
    return torch.utils.data.DataLoader(data, batch_size=16)


def module_tree(model: nn.Module) -> list[tuple[str, str]]:
    return [(name, type(m).__name__) for name, m in model.named_modules()]


def test_the_callback_regularizes_a_plain_lightning_module_as_the_recipe_key_does(tmp_path):
    own = OwnModule()
    callback = Regularize(RULES, module="model")
    trainer = L.Trainer(max_steps=3, callbacks=[callback], logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(own, loader())
    by_hand = Net()
    regularize(by_hand, RULES)
    assert module_tree(own.model) == module_tree(by_hand)  # the same modules as through regularize()
    assert own.model.fc2.weight.norm(dim=1).max() <= 0.1 + 1e-6  # the constraint acted after the steps
    trainer.fit(own, loader())  # setup again: the rules are not applied twice
    assert module_tree(own.model) == module_tree(by_hand)


def test_the_callback_adds_a_penalty_s_gradient_like_the_loss_would():
    torch.manual_seed(0)
    own = OwnModule()
    own.model.drop = nn.Identity()  # deterministic, so both sides see the same forward pass
    reference = copy.deepcopy(own)
    rules = [{"params": "model.fc2.weight", "penalty": {"name": "l2", "strength": 0.3}}]
    trainer = L.Trainer(max_steps=1, callbacks=[Regularize(rules)], logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(own, loader(16))
    x, y = next(iter(loader(16)))
    loss = nn.functional.cross_entropy(reference.model(x), y) + 0.3 * reference.model.fc2.weight.pow(2).sum()
    loss.backward()
    with torch.no_grad():
        for p in reference.parameters():
            p -= 0.5 * p.grad
    assert torch.allclose(own.model.fc2.weight, reference.model.fc2.weight, atol=1e-6)


def test_rules_reach_a_hugging_face_model():
    require_package("transformers")
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    config = ViTConfig(image_size=28, patch_size=7, num_channels=1, hidden_size=16, num_hidden_layers=2,
                       num_attention_heads=2, intermediate_size=32, num_labels=10)
    model = ViTForImageClassification(config)
    plain = copy.deepcopy(model)
    report = regularize(model, [
        {"type": "torch.nn.Dropout", "set": {"p": 0.2}},  # a built model's dropout, changed after the fact
        {"path": "vit.*.mlp", "insert": {"name": "drop_path", "p": 0.3}, "depth": "linear"},
        {"path": "vit.*.mlp.fc1", "insert": {"name": "variational_dropout", "p": 0.1}, "layout": "sequence"},
    ])
    assert {c.action for c in report.changes} == {"set", "insert"}
    assert all(m.p == 0.2 for m in model.modules() if isinstance(m, nn.Dropout))
    x = torch.randn(6, 1, 28, 28)
    model.eval(), plain.eval()
    assert torch.equal(model(x).logits, plain(x).logits)  # identity in eval
    model.train()
    assert not torch.equal(model(x).logits, model(x).logits)
    pred = mc_predict(model, x, samples=4)  # HF's nn.Dropout and the inserted modules sample
    assert pred.variance.sum() > 0


def test_rules_reach_timm_models():
    require_package("timm")
    import timm

    torch.manual_seed(0)
    # zero_init_last=False: timm starts each block's last batch-norm scale at 0, a branch that is all zeros
    resnet = timm.create_model("resnet18", pretrained=False, num_classes=10, in_chans=1, zero_init_last=False)
    report = regularize(resnet, [
        {"path": "layer[34].*.conv2", "insert": {"name": "drop_block", "p": 0.1, "block_size": 3}},
        {"path": "layer*.*.bn2", "insert": {"name": "drop_path", "p": 0.2}, "depth": "linear"},
        {"type": "torch.nn.BatchNorm2d", "path": "layer1.*", "replace": "ghost_batch_norm"},
    ])
    assert sum(c.action == "insert" for c in report.changes) == 4 + 8
    x = torch.randn(4, 1, 28, 28)
    resnet.eval()
    assert torch.equal(resnet(x), resnet(x))
    resnet.train()
    assert not torch.equal(resnet(x), resnet(x))
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=10, in_chans=1, img_size=28,
                            patch_size=7, drop_path_rate=0.1)
    regularize(vit, [{"type": "timm.layers.DropPath", "set": {"drop_prob": 0.3}, "depth": "linear"},
                     {"path": "blocks.*.mlp.fc2", "insert": {"name": "variational_dropout", "p": 0.1},
                      "layout": "sequence"}])
    drops = [m.drop_prob for m in vit.modules() if type(m).__name__ == "DropPath"]
    assert drops[-1] == pytest.approx(0.3) and drops[0] < drops[-1]
    assert any(type(m).__name__ == "DropPath" for m in stochastic_modules(vit))  # MC dropout finds timm's
    pred = mc_predict(vit, x, samples=4)
    assert pred.variance.sum() > 0
