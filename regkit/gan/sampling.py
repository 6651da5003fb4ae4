"""Samples from a trained GAN, as a PNG grid (``python -m regkit.gan sample``)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from regkit.callbacks.sample_grid import save_image_grid


def sample_to_png(model: Any, out: str | Path, n: int = 64, nrow: int = 8, seed: int = 0,
                  scale: int = 1, device: str = "cpu") -> Path:
    """Write ``n`` samples of a GAN task's generator (its EMA copy when it has one) to ``out``
    (``model``: a ``regkit.tasks.GAN``, e.g. from ``regkit.tasks.gan.load_gan``)."""
    model = model.to(device)
    z = torch.randn(n, model.latent_dim, generator=torch.Generator().manual_seed(seed))
    return save_image_grid(model.generate(z.to(device)), out, nrow=nrow, scale=scale)
