"""Samples from a trained GAN checkpoint, as a PNG grid (``python -m regkit.gan sample``)."""
from __future__ import annotations

from pathlib import Path

import torch

from regkit.callbacks.sample_grid import save_image_grid


def load_gan(ckpt: str | Path, map_location: str = "cpu"):  # -> regkit.tasks.GAN
    """A ``regkit.tasks.GAN`` from a Lightning checkpoint, loaded with ``weights_only`` (the task
    stores plain recipe values as hyperparameters). Metrics are not rebuilt."""
    from regkit.tasks.gan import GAN

    checkpoint = torch.load(ckpt, map_location=map_location, weights_only=True)
    hparams = {**checkpoint["hyper_parameters"], "metrics": False}
    model = GAN(**hparams)
    state = {k: v for k, v in checkpoint["state_dict"].items() if not k.startswith(("fid.", "classifier_score."))}
    model.load_state_dict(state)
    return model.eval()


def sample_to_png(ckpt: str | Path, out: str | Path, n: int = 64, nrow: int = 8, seed: int = 0,
                  scale: int = 1, device: str = "cpu") -> Path:
    """Write ``n`` samples of the checkpoint's generator (its EMA copy when it has one) to ``out``."""
    model = load_gan(ckpt).to(device)
    z = torch.randn(n, model.latent_dim, generator=torch.Generator().manual_seed(seed))
    return save_image_grid(model.generate(z.to(device)), out, nrow=nrow, scale=scale)
