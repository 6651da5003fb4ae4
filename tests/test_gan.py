"""GAN parts and the GAN task: losses against their formulas, penalties against hand-computed
gradients, update isolation of G and D, offline metrics, recipes through the real CLI, DDP + bf16."""
from __future__ import annotations

import math
import re

import lightning as L
import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import regkit
from regkit.gan.sampling import image_grid
from regkit.gan.ema import EMA
from regkit.tasks.gan import GAN, _has_batch_norm

try:
    from conftest import RECIPES, run_regkit
    from test_recipe_warnings import warnings_in
except ImportError:  # pragma: no cover
    from tests.conftest import RECIPES, run_regkit
    from tests.test_recipe_warnings import warnings_in

GAN_RECIPES = sorted(p.name for p in RECIPES.glob("gan*.yaml"))
FID_NAME = "fid"


def test_recipes_found():
    assert {"gan.yaml", "gan_fashion.yaml", "gan_hinge_sn.yaml"} <= set(GAN_RECIPES)


# ---------------------------------------------------------------- components
@pytest.mark.parametrize("name", regkit.available("generator"))
@pytest.mark.parametrize("size", [28, 32])
def test_generator_shape_and_range(name, size):
    g = regkit.build("generator", name, image_size=size, latent_dim=16)
    out = g(g.sample_latent(5))
    assert out.shape == (5, 1, size, size)
    assert out.min() >= -1 and out.max() <= 1


@pytest.mark.parametrize("name", regkit.available("discriminator"))
@pytest.mark.parametrize("size", [28, 32])
def test_discriminator_shape(name, size):
    d = regkit.build("discriminator", name, image_size=size, channels=3, dropout=regkit.RegularizerSpec("dropout", p=0.3))
    assert d(torch.randn(4, 3, size, size)).shape == (4,)
    dropout_type = type(regkit.build("regularizer", "dropout"))
    assert any(isinstance(m, dropout_type) for m in d.modules())


@pytest.mark.parametrize("name", regkit.available("discriminator"))
def test_spectral_norm_makes_every_layer_1_lipschitz(name):
    d = regkit.build("discriminator", name, spectral_norm=True)
    x = torch.randn(8, 1, 28, 28)
    for _ in range(30):  # power iterations run in train-mode forwards
        d(x)
    layers = [m for m in d.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    assert layers and all(hasattr(m, "parametrizations") for m in layers)
    d.eval()
    for m in layers:
        sigma = torch.linalg.matrix_norm(m.weight.detach().flatten(1), ord=2)
        assert sigma.item() == pytest.approx(1.0, abs=0.05)


def test_dcgan_generator_uses_norm_slot():
    g = regkit.build("generator", "dcgan_generator", norm=regkit.NormSpec("batch_norm"))
    assert sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in g.modules()) == 2
    g = regkit.build("generator", "dcgan_generator", norm=None)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in g.modules())


# ---------------------------------------------------------------- losses
REAL = torch.tensor([2.0, -1.0, 0.5, 0.0])
FAKE = torch.tensor([-3.0, 1.0, 0.0, 0.25])


def _mean(values):
    return sum(values) / len(values)


def _log_sigmoid(x):
    return -math.log1p(math.exp(-x))


def test_non_saturating_loss_formula():
    loss = regkit.build("gan_loss", "non_saturating")
    d = _mean([-_log_sigmoid(r) for r in REAL.tolist()]) + _mean([-math.log(1 - 1 / (1 + math.exp(-f))) for f in FAKE.tolist()])
    g = _mean([-_log_sigmoid(f) for f in FAKE.tolist()])
    assert loss.d_loss(REAL, FAKE).item() == pytest.approx(d, rel=1e-6)
    assert loss.g_loss(FAKE).item() == pytest.approx(g, rel=1e-6)


def test_non_saturating_label_smoothing():
    loss = regkit.build("gan_loss", "non_saturating", real_label=0.9)
    s = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    real = _mean([-(0.9 * math.log(s(r)) + 0.1 * math.log(1 - s(r))) for r in REAL.tolist()])
    fake = _mean([-math.log(1 - s(f)) for f in FAKE.tolist()])
    assert loss.d_loss(REAL, FAKE).item() == pytest.approx(real + fake, rel=1e-6)


def test_hinge_loss_formula():
    loss = regkit.build("gan_loss", "hinge")
    d = _mean([max(0.0, 1 - r) for r in REAL.tolist()]) + _mean([max(0.0, 1 + f) for f in FAKE.tolist()])
    assert loss.d_loss(REAL, FAKE).item() == pytest.approx(d, rel=1e-6)  # 1.375 + 0.8125
    assert loss.g_loss(FAKE).item() == pytest.approx(-_mean(FAKE.tolist()), rel=1e-6)


def test_wasserstein_loss_formula():
    loss = regkit.build("gan_loss", "wasserstein")
    assert loss.d_loss(REAL, FAKE).item() == pytest.approx(_mean(FAKE.tolist()) - _mean(REAL.tolist()), rel=1e-6)
    assert loss.g_loss(FAKE).item() == pytest.approx(-_mean(FAKE.tolist()), rel=1e-6)


def test_losses_in_float32_under_bf16_logits():
    loss = regkit.build("gan_loss", "non_saturating")
    assert loss.d_loss(REAL.bfloat16(), FAKE.bfloat16()).dtype == torch.float32


# ---------------------------------------------------------------- penalties
class Quadratic(nn.Module):
    """D(x) = sum(a * x^2) per sample, so grad_x D = 2 a x exactly."""

    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(0.7))

    def forward(self, x):
        return (self.a * x.pow(2)).flatten(1).sum(1)


def test_r1_equals_hand_computed_gradient_norm():
    torch.manual_seed(0)
    real = torch.randn(16, 1, 4, 4)
    d = Quadratic()
    r1 = regkit.build("penalty", "r1", strength=10.0)
    value = r1(d, real=real)
    a = 0.7
    expected = 0.5 * 10.0 * (4 * a * a * real.pow(2).flatten(1).sum(1)).mean()
    assert value.item() == pytest.approx(expected.item(), rel=1e-5)
    # It trains D: d/da of 5 * E[4 a^2 |x|^2] = 40 a E|x|^2.
    value.backward()
    assert d.a.grad.item() == pytest.approx(40 * a * real.pow(2).flatten(1).sum(1).mean().item(), rel=1e-5)


def test_gradient_penalty_equals_hand_computed_value():
    lin = nn.Sequential(nn.Flatten(), nn.Linear(16, 1))
    with torch.no_grad():
        lin[1].weight.fill_(0.5)  # ||grad_x D|| = ||w|| = 0.5 * 4 = 2 everywhere
    d = lambda x: lin(x).squeeze(-1)  # noqa: E731
    gp = regkit.build("penalty", "gradient_penalty", strength=10.0)
    value = gp(d, real=torch.randn(8, 1, 4, 4), fake=torch.randn(8, 1, 4, 4))
    assert value.item() == pytest.approx(10.0 * (2.0 - 1.0) ** 2, rel=1e-5)


def test_penalty_needs_its_context():
    with pytest.raises(ValueError, match="real"):
        regkit.build("penalty", "r1")(Quadratic())
    with pytest.raises(ValueError):
        regkit.build("penalty", "r1", interval=0)


# ---------------------------------------------------------------- EMA
def test_ema_update_rule_and_frozen_copy():
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))  # every parameter follows, not only the first
    ema = EMA(model, decay=0.9, warmup=False)
    before = [p.clone() for p in ema.module.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.update(model)
    for average, old, new in zip(ema.module.parameters(), before, model.parameters(), strict=True):
        assert torch.allclose(average, 0.9 * old + 0.1 * new)
    EMA(nn.ReLU()).update(nn.ReLU())  # nothing to average
    model = nn.Linear(3, 2)
    warm = EMA(model, decay=0.999)  # first updates: decay 1/10, then 2/11
    with torch.no_grad():
        model.weight.add_(1.0)
    w0 = warm.module.weight.clone()
    warm.update(model)
    assert torch.allclose(warm.module.weight, 0.1 * w0 + 0.9 * model.weight)
    assert not any(p.requires_grad for p in ema.parameters())
    # The average evaluates in eval mode whatever its mode flag (which follows the task's, so that
    # Lightning finds no module in eval mode at the start of training).
    bn = EMA(nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)), decay=0.9).train()
    x = torch.randn(8, 4)
    assert torch.allclose(bn(x)[:1], bn(x[:1]))  # per-sample: running statistics, not the batch's
    assert bn.module.training and int(bn.module[1].num_batches_tracked) == 0


# ---------------------------------------------------------------- task
def _images(n=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 28, 28, generator=g)


class RecordingGAN(GAN):
    """Records which parameters each backward reached and each optimizer step changed (a spy: the
    backward passes and steps themselves are the real ones)."""

    def setup(self, stage):
        self.steps, self.grads = [], []

    def manual_backward(self, loss, *args, **kwargs):
        super().manual_backward(loss, *args, **kwargs)
        self.grads.append({n for n, p in self.named_parameters() if p.grad is not None})

    def _backward_and_step(self, loss, optimizer):
        before = {n: p.detach().clone() for n, p in self.named_parameters()}
        super()._backward_and_step(loss, optimizer)
        which = "d" if optimizer.optimizer is self.optimizers()[1].optimizer else "g"
        changed = {n for n, p in self.named_parameters() if not torch.equal(before[n], p.detach())}
        self.steps.append((which, changed))


def _fit(model, steps=1, **trainer_kw):
    trainer = L.Trainer(max_epochs=1, limit_train_batches=steps, limit_val_batches=0, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        **trainer_kw)
    trainer.fit(model, DataLoader(TensorDataset(_images()), batch_size=32))
    return trainer


def test_predict_generates_one_sample_per_image_and_scores_both():
    model = GAN(metrics=False)
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    (out,) = trainer.predict(model, DataLoader(TensorDataset(_images(8)), batch_size=8))
    assert out["samples"].shape == (8, 1, 28, 28)
    assert 0 <= out["samples"].min() and out["samples"].max() <= 1 and out["samples"].std() > 0
    assert out["d_real"].shape == out["d_fake"].shape == (8,)
    assert not torch.equal(out["d_real"], out["d_fake"])


@pytest.mark.parametrize("loss", ["non_saturating", "hinge"])
def test_one_training_step_updates_d_then_g_and_only_their_own_parameters(loss):
    model = RecordingGAN(discriminator={"name": "dcgan_discriminator", "dropout": "dropout"}, loss=loss,
                         d_penalties=[{"name": "r1", "strength": 1.0}], metrics=False, ema_decay=0.5)
    _fit(model)
    d_names = {n for n, _ in model.named_parameters() if n.startswith("discriminator.")}
    g_names = {n for n, _ in model.named_parameters() if n.startswith("generator.")}
    assert [s[0] for s in model.steps] == ["d", "g"]
    (_, d_changed), (_, g_changed) = model.steps
    d_grads, g_grads = model.grads
    # Each backward reaches exactly its own network's parameters, each step moves only them (all
    # weights move; a bias may have an exactly zero gradient, e.g. D's last bias under hinge at init).
    assert d_grads == d_names and g_grads == g_names
    assert {n for n in d_names if n.endswith("weight")} <= d_changed <= d_names
    assert {n for n in g_names if n.endswith("weight")} <= g_changed <= g_names
    assert all(p.requires_grad for p in model.generator.parameters())  # untoggled again
    assert all(p.requires_grad for p in model.discriminator.parameters())


def test_a_batch_norm_in_d_is_seen_whichever_class_it_is():
    """D with batch norm sees real and fake images in one batch in G's step too (see GAN); regkit's
    batch norms and torch's, lazy ones included, all count."""
    assert not GAN(metrics=False).d_has_batch_norm
    assert GAN(discriminator={"name": "dcgan_discriminator", "norm": "ghost_batch_norm"}, metrics=False).d_has_batch_norm
    for layer in (nn.BatchNorm2d(3), nn.LazyBatchNorm2d(), nn.SyncBatchNorm(3)):
        assert _has_batch_norm(nn.Sequential(nn.Conv2d(1, 3, 3), layer)), layer
    assert not _has_batch_norm(nn.Sequential(nn.Conv2d(1, 3, 3), nn.GroupNorm(1, 3), nn.InstanceNorm2d(3)))


def test_n_critic_and_penalty_interval():
    model = RecordingGAN(loss="wasserstein", n_critic=3, metrics=False,
                         d_penalties=[{"name": "gradient_penalty", "interval": 2}])
    trainer = _fit(model, steps=4, log_every_n_steps=1)  # training values are logged when logging is due
    assert [s[0] for s in model.steps] == ["d", "d", "d", "g", "d"]
    assert model.d_steps == 4
    assert "train/penalty/gradient_penalty" in trainer.logged_metrics


@pytest.mark.parametrize("init_scale", [2.0**16, 2.0**40])
def test_float16_grad_scaler_story(init_scale):
    """16-mixed through Lightning's one GradScaler (float16 autocast on CPU): every optimizer step
    unscales, checks for inf and updates the scale itself. A scale of 2**40 overflows float16
    gradients, so each of the 6 steps (3 D + 3 G) is skipped and halves the scale once; 2**16 does
    not overflow and every weight moves."""
    from lightning.pytorch.plugins import MixedPrecision

    torch.manual_seed(0)
    model = GAN(metrics=False, d_penalties=[{"name": "r1"}])
    scaler = torch.amp.GradScaler("cpu", init_scale=init_scale)
    before = [p.detach().clone() for p in model.parameters()]
    _fit(model, steps=3, plugins=[MixedPrecision("16-mixed", "cpu", scaler)])
    changed = sum(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert all(torch.isfinite(p).all() for p in model.parameters())
    if init_scale == 2.0**40:
        assert scaler.get_scale() == 2.0**34 and changed == 0
    else:
        assert scaler.get_scale() == 2.0**16 and changed == len(before)


def test_image_grid_layout():
    images = torch.zeros(10, 1, 4, 4)
    images[3] = 1.0
    grid = image_grid(images, nrow=4, padding=1)
    assert grid.shape == (3 * 5 + 1, 4 * 5 + 1) and grid.dtype == np.uint8
    assert grid[1:5, 16:20].min() == 255 and grid[1:5, 11:15].max() == 0  # image 3 white, 2 black


# ---------------------------------------------------------------- metrics
@pytest.fixture(scope="module")
def mnist_val():
    from regkit.data.mnist import MNISTDataModule

    dm = MNISTDataModule(normalize=False, limit_train=1)
    dm.setup()
    return dm.val_set.tensors[0][:1000] * 2 - 1  # G's range


def test_fid_with_own_classifier_separates_real_from_noise(mnist_val):
    model = GAN()
    fid = model.fid
    fid.update(mnist_val[:500], real=True)
    fid.update(mnist_val[500:], real=False)
    same = fid.compute().item()
    fid.reset()
    fid.update(mnist_val[:500], real=True)
    fid.update(torch.rand(500, 1, 28, 28) * 2 - 1, real=False)
    noise = fid.compute().item()
    # Two halves of the validation set differ only by sampling noise (500 samples, 64 features).
    assert 0 <= same < 25 and noise > 20 * same, (same, noise)
    assert model.fid_name == FID_NAME


def test_classifier_score_high_for_digits_low_for_one_digit(mnist_val):
    model = GAN()
    model.classifier_score.update(mnist_val)
    digits, _ = model.classifier_score.compute()
    model.classifier_score.reset()
    model.classifier_score.update(mnist_val[:1].repeat(500, 1, 1, 1))
    one, _ = model.classifier_score.compute()
    assert digits.item() > 8.0 and one.item() < 1.1, (digits, one)


def test_feature_classifier_always_evaluates_in_eval_mode(mnist_val):
    model = GAN()
    model.train()
    classifier = model.fid.inception.classifier
    # its flag follows the task's (no module in eval mode at the start of training) ...
    assert all(m.training for m in model.modules())
    # ... but dropout and batch norm inside act as in eval: the same output twice, per sample
    x = mnist_val[:16]
    assert torch.equal(classifier(x), classifier(x)) and torch.allclose(classifier(x)[:1], classifier(x[:1]), atol=1e-5)
    assert all(m.training for m in classifier.modules())
    assert not any(p.requires_grad for p in model.fid.parameters())
    assert set(model.metric_descriptions()) == {"fid", "classifier_score"}
    assert "regkit MNIST classifier" in model.metric_descriptions()["fid"]


def test_validation_logs_ds_mean_logit_on_held_out_real_images(mnist_val):
    """val/d_real is D's mean logit (eval mode) over every held-out image, batches weighted by
    their size; beside train/d_real it shows D overfitting (Karras et al., 2020, Fig. 1)."""
    torch.manual_seed(0)
    model = GAN()
    images = (mnist_val[:100] + 1) / 2  # the data module's range [0, 1]
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                        enable_checkpointing=False, num_sanity_val_steps=0)
    trainer.validate(model, DataLoader(TensorDataset(images), batch_size=48), verbose=False)  # 48 + 48 + 4
    with torch.no_grad():
        expected = model.discriminator.eval()(images * 2 - 1).float().mean()
    logged = trainer.callback_metrics["val/d_real"]
    assert torch.allclose(logged, expected, atol=1e-5), (logged, expected)
    from regkit.cli.run_summary import curve_keys

    # the run's curves picture draws the two in one panel
    assert ["train/d_real", "val/d_real"] in curve_keys([{"train/d_real": 0.1, "val/d_real": 0.0, "val/fid": 9.0}])


# ---------------------------------------------------------------- recipes through the CLI
@pytest.mark.parametrize("recipe", GAN_RECIPES)
def test_recipe_fast_dev_run(recipe, tmp_path):
    proc = run_regkit("fit", "--config", str(RECIPES / recipe), "--trainer.fast_dev_run", "1",
                      "--trainer.accelerator", "cpu", "--data.init_args.limit_train", "256", timeout=300,
                      env={"PYTHONWARNINGS": ""})  # the user's warning filters
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert list(tmp_path.glob("runs/*/*/samples/epoch_000.png")), proc.stderr[-2000:]
    assert warnings_in(proc.stdout + proc.stderr) == [], proc.stderr[-3000:]
    assert re.search(r"val: fid = \d.*\(regkit MNIST classifier features\)", proc.stdout + proc.stderr)


DIGEST_PLUGIN = '''
import torch, lightning as L
class ParamDigest(L.Callback):
    def on_train_end(self, trainer, pl_module):
        flat = torch.cat([p.detach().float().flatten() for p in pl_module.parameters()])
        with open(f"digest_rank{trainer.global_rank}.txt", "w") as f:
            f.write(repr(flat.double().abs().sum().item()) + " " + repr(flat.double().pow(2).sum().item()))
'''


def test_ddp_two_processes_bf16_keeps_ranks_identical(tmp_path):
    """2-process CPU DDP with bf16-mixed through the real CLI: no unused-parameter error, and after
    several steps on different data shards both ranks hold the same weights (gradients averaged)."""
    (tmp_path / "ddp_digest.py").write_text(DIGEST_PLUGIN)
    proc = run_regkit(
        "fit", "--config", str(RECIPES / "gan.yaml"),
        "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp",
        "--trainer.precision", "bf16-mixed", "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "3",
        "--trainer.limit_val_batches", "1", "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
        "--trainer.callbacks+=regkit_local_plugin_ddp_digest.ParamDigest",
        "--data.init_args.limit_train", "384", "--data.init_args.batch_size", "32",
        "--model.init_args.d_penalties", '[{"name": "r1", "interval": 2}]',
        env={"REGKIT_PLUGINS": str(tmp_path / "ddp_digest.py")}, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    d0, d1 = (tmp_path / "digest_rank0.txt").read_text(), (tmp_path / "digest_rank1.txt").read_text()
    assert d0 == d1
    ckpt = next(tmp_path.glob("**/last.ckpt"))
    # The documented sampling command works on the checkpoint it wrote.
    from regkit.gan.__main__ import main

    assert main(["sample", "--ckpt", str(ckpt), "--n", "16", "--out", str(tmp_path / "s.png")]) == 0
    from PIL import Image

    assert Image.open(tmp_path / "s.png").size == (8 * 30 + 2, 2 * 30 + 2)


@pytest.mark.slow
def test_short_run_fid_decreases_from_first_epoch():
    proc = run_regkit("fit", "--config", str(RECIPES / "gan.yaml"), "--trainer.accelerator", "cpu",
                      "--trainer.max_epochs", "3", "--trainer.logger", "false",
                      "--data.init_args.limit_train", "6400", timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    fids = [float(v) for v in re.findall(r"val: fid = ([\d.]+)", proc.stdout + proc.stderr)]
    assert len(fids) == 3 and fids[-1] < fids[0], fids
