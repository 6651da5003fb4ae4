"""Save a grid of generator samples as a PNG every epoch and log it to W&B."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, cast

import lightning as L
import torch
from lightning.pytorch.loggers import WandbLogger

from regkit.errors import check
from regkit.gan.sampling import ImageSampler, save_image_grid


class SampleGrid(L.Callback):
    """Every ``every_n_epochs`` training epochs, draw ``num_samples`` images from the task's generator
    with the same fixed noise (so epochs are comparable), save them as ``<run dir>/samples/epoch_XXX.png``
    and log the image to W&B (key ``samples``) when a WandbLogger is in use.

    The task must have ``latent_dim`` and ``generate(z) -> images in [0, 1]`` (``regkit.tasks.GAN`` has).

    Args:
        num_samples: images per grid.
        nrow: images per row.
        every_n_epochs: save every this many epochs (the last epoch is always saved).
        seed: seed of the fixed noise.
        dirpath: folder for the PNGs (null: ``samples/`` in the run's folder).
    """

    def __init__(
        self,
        num_samples: int = 64,
        nrow: int = 8,
        every_n_epochs: int = 1,
        seed: int = 0,
        dirpath: Optional[str] = None,
    ) -> None:
        super().__init__()
        check(locals(), positive="num_samples nrow every_n_epochs")
        self.num_samples, self.nrow, self.every_n_epochs = num_samples, nrow, every_n_epochs
        self.seed, self.dirpath = seed, dirpath
        self.noise: Optional[torch.Tensor] = None
        self.last_path: Optional[Path] = None

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = trainer.current_epoch
        last = trainer.max_epochs is not None and epoch + 1 >= trainer.max_epochs
        if (epoch + 1) % self.every_n_epochs and not (last or trainer.should_stop):
            return
        if not trainer.is_global_zero:
            return
        sampler = cast(ImageSampler, pl_module)  # the task must be one (see the class docstring)
        if self.noise is None:
            gen = torch.Generator().manual_seed(self.seed)
            self.noise = torch.randn(self.num_samples, sampler.latent_dim, generator=gen)
        images = sampler.generate(self.noise.to(pl_module.device))
        folder = Path(self.dirpath) if self.dirpath else Path(trainer.default_root_dir) / "samples"
        self.last_path = save_image_grid(images, folder / f"epoch_{epoch:03d}.png", self.nrow)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(key="samples", images=[str(self.last_path)], caption=[f"epoch {epoch}"], step=trainer.global_step)
