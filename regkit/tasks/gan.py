"""GAN task: a generator and a discriminator from the registry, trained adversarially with manual
optimization (two optimizers), gradient penalties on D, optional EMA of G, and offline FID.

One training step (one batch of real images, ``n`` of them):

1. **D step** -- ``toggle_optimizer(opt_d)``; ``fake = G(z)`` under ``no_grad``; one D forward on
   ``cat([real, fake])``; ``d_loss`` + each penalty whose interval is due; backward; ``opt_d.step()``.
2. **G step** (every ``n_critic`` D steps) -- ``toggle_optimizer(opt_g)``; D on fresh fakes (on
   ``cat([real, fake])`` when D has batch norm, see below); ``g_loss``; backward; ``opt_g.step()``;
   EMA update.

Mixed precision: every backward goes through ``manual_backward``, so under ``16-mixed`` Lightning's
single GradScaler scales it, and each backward is followed by its own ``step()`` (which unscales,
skips on inf and updates the scale) before the next backward starts: the scale used to scale a
loss is always the one used to unscale its gradients. ``bf16-mixed`` needs no scaler. Losses are
computed in float32; gradient penalties run D in float32 (see ``regkit.gan.penalties``).

DDP: Lightning wraps the whole task in one ``DistributedDataParallel``, whose reducer expects every
trainable parameter to receive a gradient in every backward. A GAN backward never does (the D step
leaves G alone, the G step leaves D's parameters alone), which is what raises DDP's
"parameters that were not used in producing the loss" error. The task therefore runs each backward
under ``no_sync()`` and all-reduces (averages) the gradients of the optimizer about to step itself,
in one flat buffer per step: plain ``strategy=ddp`` works, no ``find_unused_parameters`` needed.
Against DDP's own bucketed reduction (``find_unused_parameters=True``, overlapping the backward,
but also reducing the idle network's zero buckets) on 2 CPU processes the flat buffer was not
slower (``benchmarks/bench_gan_ddp.py``; results in benchmarks/RESULTS.md), so it stays.

Batch norm under DDP (policy): G has batch norm, D by default does not. Batch statistics are per
process unless ``--trainer.sync_batchnorm true`` (SyncBatchNorm, all processes' batches together).
Running statistics are broadcast from rank 0 at every step (DDP's ``broadcast_buffers``), so ranks
never drift. If D has batch norm, every D forward sees the same kind of batch -- real and fake
concatenated, one forward -- so its batch statistics never come from fakes alone (which would let
D tell the halves apart by their statistics, Goodfellow 2016, NIPS tutorial section 4). Gradient
penalties forward D separately on real (R1) or interpolated (WGAN-GP) images; don't combine them
with batch norm in D.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, cast

import torch
import torch.distributed as dist
import torchmetrics
from lightning.pytorch.cli import OptimizerCallable
from lightning.pytorch.core.optimizer import LightningOptimizer
from lightning.pytorch.utilities import rank_zero_info
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from regkit.components.norm import BATCH_NORMS
from regkit.components.schedules import ScheduledArguments
from regkit.errors import BadInput, check
from regkit.gan.ema import EMA
from regkit.gan.penalties import GradientPenalty
from regkit.loggers.interval import TRAINED_BATCHES, CountsTrainingBatches
from regkit.registry import DiscriminatorSpec, GanLossSpec, GeneratorSpec, PenaltySpec
from regkit.rules import parse_rules
from regkit.rules import regularize as apply_rules
from regkit.tasks.base import save_recipe
from regkit.tasks.data_checks import check_attached_data, check_gan_data
from regkit.tasks.speed import CompileSwitch, apply_switches, compile_options


def default_gan_optimizer(params: Any) -> torch.optim.Optimizer:
    """Adam(lr=2e-4, betas=(0.5, 0.999)), the DCGAN setting (Radford et al., 2016)."""
    return torch.optim.Adam(params, lr=2e-4, betas=(0.5, 0.999))


def _has_batch_norm(module: nn.Module) -> bool:
    return any(isinstance(m, BATCH_NORMS) for m in module.modules())


class GAN(CountsTrainingBatches):
    """Adversarial training of a registry generator against a registry discriminator
    (Goodfellow et al., 2014), with the loss, D penalties, ``n_critic`` and optimizers from the recipe.

    Args:
        generator: G (kind ``generator``), e.g. ``{name: dcgan_generator, latent_dim: 64}``.
        discriminator: D (kind ``discriminator``), e.g. ``{name: dcgan_discriminator, dropout: ...}``.
        loss: adversarial loss (kind ``gan_loss``): ``non_saturating``, ``hinge``, ``wasserstein``.
        d_penalties: penalties on D (``r1``, ``gradient_penalty``), each with its ``interval``;
            logged as ``train/penalty/<name>``.
        n_critic: D steps per G step (5 for WGAN-GP).
        g_optimizer: G's optimizer (default Adam 2e-4, betas 0.5/0.999).
        d_optimizer: D's optimizer (same default).
        ema_decay: keep an exponential moving average of G's weights with this decay (e.g. 0.999)
            and sample/evaluate with it; null for none.
        metrics: compute FID and the classifier score on the validation set every epoch.
        feature_classifier: classifier file for the metrics; null for the packaged MNIST classifier.
        regularize: rules that place components inside G and D (regkit/rules/, docs/surgery.md), with
            paths ``generator.*`` and ``discriminator.*``.
        compile: ``torch.compile`` G and D: ``true``, or ``{mode, fullgraph, dynamic, backend}``
            (docs/speed.md); refused with the double-backward penalties ``r1`` / ``gradient_penalty``.
            Off by default.
        channels_last: G's and D's convolutions in channels-last memory format (convolutional
            networks only). Off by default.
    """

    def __init__(
        self,
        generator: GeneratorSpec = GeneratorSpec("dcgan_generator"),
        discriminator: DiscriminatorSpec = DiscriminatorSpec("dcgan_discriminator"),
        loss: GanLossSpec = GanLossSpec("non_saturating"),
        d_penalties: list[PenaltySpec] = [],
        n_critic: int = 1,
        g_optimizer: OptimizerCallable = default_gan_optimizer,
        d_optimizer: OptimizerCallable = default_gan_optimizer,
        ema_decay: Optional[float] = None,
        metrics: bool = True,
        feature_classifier: Optional[str] = None,
        regularize: list[dict[str, Any]] = [],
        compile: CompileSwitch = False,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        check(locals(), positive="n_critic", fraction="ema_decay")
        self.automatic_optimization = False
        generator = GeneratorSpec.parse(generator)
        discriminator = DiscriminatorSpec.parse(discriminator)
        loss = GanLossSpec.parse(loss)
        penalties = [PenaltySpec.parse(p) for p in d_penalties]
        rules = parse_rules(regularize)
        for rule in rules:
            if rule.action in ("penalty", "constraint"):
                raise BadInput("the GAN takes penalties on D as d_penalties; its rules insert, replace, set or wrap",
                               f"{rule.key}.{rule.action}")
        self.generator = generator.build()
        self.discriminator = discriminator.build()
        # Rules see both networks (paths generator.* and discriminator.*), before G's EMA copy is made.
        self.regularization = apply_rules(nn.ModuleDict({"generator": self.generator,
                                                         "discriminator": self.discriminator}), rules)
        if n_critic < 1:
            raise ValueError(f"n_critic must be >= 1, got {n_critic}")
        # Plain recipe values, not Spec objects, so checkpoints load with weights_only.
        save_recipe(self, **{
            "generator": generator.to_config(),
            "discriminator": discriminator.to_config(),
            "loss": loss.to_config(),
            "d_penalties": [p.to_config() for p in penalties],
            "n_critic": n_critic,
            "ema_decay": ema_decay,
            "metrics": metrics,
            "feature_classifier": feature_classifier,
            "regularize": [rule.to_config() for rule in rules],
            "compile": compile,
            "channels_last": channels_last,
        })
        self.loss = loss.build()
        self.penalties = nn.ModuleList([p.build() for p in penalties])
        self.penalty_names = [p.name for p in penalties]
        self.n_critic = n_critic
        self.g_optimizer_factory, self.d_optimizer_factory = g_optimizer, d_optimizer
        gradient_penalties = [n for n, p in zip(self.penalty_names, self.penalties) if isinstance(p, GradientPenalty)]
        if compile_options(compile) is not None and gradient_penalties:
            raise BadInput(f"d_penalties {', '.join(gradient_penalties)} differentiate D's input gradient (double "
                           f"backward), which torch.compile does not support; leave compile off with them", "compile")
        self.ema = EMA(self.generator, ema_decay) if ema_decay is not None else None
        # After the EMA copy, which stays eager (it only samples).
        self.compile_options, self.channels_last = apply_switches({"generator": self.generator, "discriminator": self.discriminator}, compile, channels_last)
        self.d_has_batch_norm = _has_batch_norm(self.discriminator)
        self.d_steps = 0
        self.scheduled_arguments = ScheduledArguments()  # components' arguments given as schedules
        # Pixel range of the data module's images, mapped to G's [-1, 1] (see on_fit_start).
        self.data_mean, self.data_std = 0.0, 1.0
        self.metrics = metrics
        if metrics:
            from regkit.gan.metrics import FeatureClassifier, classifier_fid, classifier_score

            classifier = FeatureClassifier(feature_classifier)
            # Plain metric keys (val/fid, val/classifier_score) suit ModelCheckpoint(monitor=...),
            # W&B panels and CSV headers; which features they use is in `metric_features`.
            self.fid_name, self.score_name = "fid", "classifier_score"
            self.metric_features = classifier.name
            self.fid = classifier_fid(classifier)
            self.classifier_score = classifier_score(classifier)
            # D's mean logit on held-out real images: beside train/d_real (its mean logit on the
            # training batches) it shows D overfitting, the two drifting apart (Karras et al., 2020, Fig. 1).
            self.d_real_held_out = torchmetrics.MeanMetric()

    def check_data(self, datamodule: Any, world_size: int = 1, training: bool = True) -> None:
        """Refuse real images G cannot make or D cannot take (their ``image_size`` / ``channels``,
        then a dry forward of each; regkit/tasks/data_checks.py).

        Raises:
            BadInput: keyed ``model.init_args.generator.<argument>`` or ``...discriminator.<argument>``.
        """
        check_gan_data(self, datamodule, world_size, training)

    def setup(self, stage: str) -> None:
        check_attached_data(self, stage)  # regkit's CLI checked it before the run; a plain Trainer here

    # ------------------------------------------------------------------ sampling
    @property
    def latent_dim(self) -> int:
        return self.generator.latent_dim

    def sampler(self) -> nn.Module:
        """The generator used for samples and metrics: the EMA copy when there is one."""
        return self.ema.module if self.ema is not None else self.generator

    @torch.no_grad()
    def generate(self, z: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] from latent vectors, with the sampling generator in eval mode."""
        g = self.sampler()
        was_training = g.training
        g.eval()
        try:
            return (g(z.to(self.device)).float().clamp(-1, 1) + 1) / 2
        finally:
            g.train(was_training)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.generate(z)

    def to_model_range(self, x: torch.Tensor) -> torch.Tensor:
        """Data module images (possibly standardized) to G's output range [-1, 1]."""
        return (x * self.data_std + self.data_mean) * 2 - 1

    def _read_data_range(self) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        if dm is not None and getattr(dm, "normalize", False) and hasattr(dm, "mean"):
            self.data_mean, self.data_std = float(dm.mean), float(dm.std)

    def on_fit_start(self) -> None:
        self._read_data_range()
        if self.metrics:  # the W&B config says what val/fid and val/classifier_score measure
            for logger in self.loggers:
                logger.log_hyperparams({"metric_keys": self.metric_descriptions()})

    on_validation_start = on_test_start = on_predict_start = _read_data_range

    def metric_descriptions(self) -> dict[str, str]:
        """What each logged metric key measures (also in the W&B config as ``metric_keys``)."""
        return {
            self.fid_name: f"FID (Heusel et al., 2017) on the penultimate features of the "
                           f"{self.metric_features}, generated vs real images",
            self.score_name: f"Inception-Score-style exp(E KL(p(y|x) || p(y))) with the "
                             f"{self.metric_features}'s softmax, generated images",
        }

    # ------------------------------------------------------------------ training
    def configure_optimizers(self) -> Any:
        return [
            self.g_optimizer_factory(self.generator.parameters()),
            self.d_optimizer_factory(self.discriminator.parameters()),
        ]

    def _backward_and_step(self, loss: torch.Tensor, optimizer: Any) -> None:
        optimizer.zero_grad(set_to_none=True)
        model = self.trainer.model
        if isinstance(model, DistributedDataParallel):
            with model.no_sync():  # DDP's reducer would wait for the other network's gradients
                self.manual_backward(loss)
            self._average_gradients(optimizer)
        else:
            self.manual_backward(loss)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)  # frees the memory; the other network's step starts clean

    def _average_gradients(self, optimizer: Any) -> None:
        params = [p for group in optimizer.param_groups for p in group["params"]]
        # A missing gradient counts as zeros, so the buffer has the same size on every rank.
        grads = [torch.zeros_like(p) if p.grad is None else p.grad for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= dist.get_world_size()
        for p, synced in zip(params, flat.split([g.numel() for g in grads])):
            p.grad = synced.view_as(p)  # views of the one buffer, no copy back

    def _penalty_loss(self, real: torch.Tensor, fake: torch.Tensor) -> Optional[torch.Tensor]:
        total = None
        for name, penalty in zip(self.penalty_names, self.penalties):
            interval = getattr(penalty, "interval", 1)
            if self.d_steps % interval:
                continue
            value = penalty(self.discriminator, real=real, fake=fake)
            if self.logging_due():
                self.log(f"train/penalty/{name}", value.detach(), on_step=True, on_epoch=False)
            total = value * interval if total is None else total + value * interval
        return total

    def training_step(self, batch: Any, batch_idx: int) -> None:
        real = self.to_model_range(batch[0] if isinstance(batch, (list, tuple)) else batch)
        n = real.shape[0]
        opt_g, opt_d = cast(list[LightningOptimizer], self.optimizers())  # two optimizers: a list

        # D step: G only produces samples, D's parameters alone get gradients.
        self.toggle_optimizer(opt_d)
        with torch.no_grad():
            fake = self.generator(self.generator.sample_latent(n, self.device))
        logits = self.discriminator(torch.cat([real, fake.to(real.dtype)]))
        real_logits, fake_logits = logits[:n], logits[n:]
        d_loss = self.loss.d_loss(real_logits, fake_logits)
        penalty = self._penalty_loss(real, fake)
        self._backward_and_step(d_loss if penalty is None else d_loss + penalty, opt_d)
        self.untoggle_optimizer(opt_d)
        self.d_steps += 1
        log = self.logging_due()
        if log:
            # No prog_bar: Lightning would read it as a float every step (a GPU sync);
            # regkit's ProgressBar shows it at the logging interval.
            self.log("train/d_loss", d_loss.detach())
            self.log("train/d_real", real_logits.detach().float().mean())
            self.log("train/d_fake", fake_logits.detach().float().mean())

        # G step: gradients flow through D to G; D's parameters are toggled off.
        if self.d_steps % self.n_critic == 0:
            self.toggle_optimizer(opt_g)
            fake = self.generator(self.generator.sample_latent(n, self.device))
            if self.d_has_batch_norm:
                fake_logits = self.discriminator(torch.cat([real, fake.to(real.dtype)]))[n:]
            else:
                fake_logits = self.discriminator(fake)
            g_loss = self.loss.g_loss(fake_logits)
            self._backward_and_step(g_loss, opt_g)
            self.untoggle_optimizer(opt_g)
            if self.ema is not None:
                self.ema.update(self.generator)
            if log:
                self.log("train/g_loss", g_loss.detach())

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> Optional[int]:
        super().on_train_batch_start(batch, batch_idx)
        self.scheduled_arguments.update(self, self.d_steps)  # one D step per batch
        return None

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["gan_d_steps"] = self.d_steps

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self.d_steps = int(checkpoint.get("gan_d_steps", 0))
        if TRAINED_BATCHES not in checkpoint:  # written before the count: one D step per batch
            self.trained_batches = self.d_steps

    # ------------------------------------------------------------------ evaluation
    def _evaluate(self, batch: Any) -> None:
        if not self.metrics or self.trainer.sanity_checking:
            return
        real = self.to_model_range(batch[0] if isinstance(batch, (list, tuple)) else batch)
        z = self.generator.sample_latent(real.shape[0], self.device)
        fake = self.generate(z) * 2 - 1
        self.fid.update(real, real=True)
        self.fid.update(fake, real=False)
        self.classifier_score.update(fake)
        self.d_real_held_out.update(self.discriminator(real).float().mean(), real.shape[0])

    def _report(self, stage: str) -> None:
        if not self.metrics or self.trainer.sanity_checking or self.fid.fake_features_num_samples < 2:
            return
        fid = self.fid.compute()
        score, score_std = self.classifier_score.compute()
        d_real = self.d_real_held_out.compute()
        self.fid.reset()
        self.classifier_score.reset()
        self.d_real_held_out.reset()
        self.log(f"{stage}/{self.fid_name}", fid, sync_dist=True)
        self.log(f"{stage}/{self.score_name}", score, sync_dist=True)
        self.log(f"{stage}/d_real", d_real, sync_dist=True)
        rank_zero_info(
            f"epoch {self.current_epoch} {stage}: {self.fid_name} = {fid.item():.3f}, "
            f"{self.score_name} = {score.item():.3f} ± {score_std.item():.3f} "
            f"({self.metric_features} features)"
        )

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch)

    def on_validation_epoch_end(self) -> None:
        self._report("val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch)

    def on_test_epoch_end(self) -> None:
        self._report("test")

    def predict_step(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        """One generated image per real image of the batch, and D's logits on both: ``samples``
        (N, C, H, W) in [0, 1] from the sampling generator (EMA when there is one), ``d_real`` and
        ``d_fake`` (N,), the discriminator's scores of the real images and of the samples."""
        real = self.to_model_range(batch[0] if isinstance(batch, (list, tuple)) else batch)
        n = real.shape[0]
        samples = self.generate(self.generator.sample_latent(n, self.device))
        return {
            "samples": samples,
            "d_real": self.discriminator(real).float().reshape(n),
            "d_fake": self.discriminator((samples * 2 - 1).to(real.dtype)).float().reshape(n),
        }


def load_gan(ckpt: str | Path, map_location: str = "cpu") -> GAN:
    """A :class:`GAN` from a Lightning checkpoint, loaded with ``weights_only`` (the task stores
    plain recipe values as hyperparameters). Metrics are not rebuilt."""
    checkpoint = torch.load(ckpt, map_location=map_location, weights_only=True)
    hparams = {k: v for k, v in checkpoint["hyper_parameters"].items() if not k.startswith("_")}
    model = GAN(**{**hparams, "metrics": False})
    state = {k: v for k, v in checkpoint["state_dict"].items() if not k.startswith(("fid.", "classifier_score.", "d_real_held_out."))}
    model.load_state_dict(state)
    return model.eval()
