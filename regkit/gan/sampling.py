"""Samples from a trained GAN as a PNG grid (``python -m regkit.gan sample``, the SampleGrid callback)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch


class ImageSampler(Protocol):
    """What samples are drawn from (``regkit.tasks.GAN`` is one): the latent size and images in
    [0, 1] from latent vectors."""

    @property
    def latent_dim(self) -> int: ...

    def generate(self, z: torch.Tensor) -> torch.Tensor: ...


def sample_to_png(model: Any, out: str | Path, n: int = 64, nrow: int = 8, seed: int = 0,
                  scale: int = 1, device: str = "cpu") -> Path:
    """Write ``n`` samples of a GAN task's generator (its EMA copy when it has one) to ``out``
    (``model``: a ``regkit.tasks.GAN``, e.g. from ``regkit.tasks.gan.load_gan``)."""
    model = model.to(device)
    z = torch.randn(n, model.latent_dim, generator=torch.Generator().manual_seed(seed))
    return save_image_grid(model.generate(z.to(device)), out, nrow=nrow, scale=scale)


def image_grid(images: torch.Tensor, nrow: int = 8, padding: int = 2, pad_value: float = 1.0) -> np.ndarray:
    """(N, C, H, W) images in [0, 1] -> one (H', W') or (H', W', C) uint8 array, ``nrow`` per row."""
    n, c, h, w = images.shape
    rows = (n + nrow - 1) // nrow
    grid = torch.full((c, rows * (h + padding) + padding, nrow * (w + padding) + padding), pad_value)
    for i, img in enumerate(images.detach().float().cpu().clamp(0, 1)):
        r, col = divmod(i, nrow)
        top, left = padding + r * (h + padding), padding + col * (w + padding)
        grid[:, top : top + h, left : left + w] = img
    array = (grid * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return array[..., 0] if c == 1 else array


def save_image_grid(images: torch.Tensor, path: str | Path, nrow: int = 8, scale: int = 1) -> Path:
    """Write ``images`` (N, C, H, W) in [0, 1] as a PNG grid, each pixel ``scale`` x ``scale``."""
    from PIL import Image

    array = image_grid(images, nrow)
    if scale > 1:
        array = array.repeat(scale, axis=0).repeat(scale, axis=1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, optimize=True)
    return path
