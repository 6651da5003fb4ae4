"""Plot the attention maps of a few fixed validation inputs during training (PNG files and W&B images)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import lightning as L
import torch
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_warn

from regkit.components.attention import record_attention
from regkit.errors import check


def plot_attention_maps(inputs: torch.Tensor, maps: dict[str, torch.Tensor], title: str = "", max_maps: int = 4) -> Any:
    """A matplotlib Figure: one row per input, the input then each recorded attention map.

    Self-attention weights (N, H, L, S) are shown as L x S heat maps averaged over heads (query
    down, key across); pooling weights (N, H, L) as L x H columns, aligned with the input's rows;
    channel gates (N, C) as a 1 x C strip. Uses the Agg canvas
    directly, so the global matplotlib backend is left alone.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = list(maps)[:max_maps]
    show_input = inputs.dim() in (3, 4) and (inputs.dim() == 3 or inputs.shape[1] in (1, 3))
    cols = len(names) + int(show_input)
    rows = inputs.shape[0]
    # pooling columns (a 2-D map per input) are drawn narrow
    widths = [1.0] * int(show_input) + [0.45 if maps[n][0].dim() == 2 else 1.0 for n in names]
    fig = Figure(figsize=(2.1 * sum(widths) + 0.3, 2.0 * rows + 0.4), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False, width_ratios=widths)
    for i in range(rows):
        col = 0
        if show_input:
            img = inputs[i].float().cpu()
            img = img.permute(1, 2, 0) if img.dim() == 3 and img.shape[0] == 3 else img.reshape(img.shape[-2:])
            axes[i, 0].imshow(img.numpy(), cmap="gray")
            axes[i, 0].set_title("input" if i == 0 else "", fontsize=8)
            col = 1
        for j, name in enumerate(names):
            w = maps[name][i].float().cpu()
            if w.dim() == 3:  # (H, L, S): the head average, queries down, keys across
                w = w.mean(0)
            elif w.dim() == 2:  # (H, L) pooling weights: a column per head, beside the input's rows
                w = w.T
            else:  # (C,) gates
                w = w[None]
            ax = axes[i, col + j]
            im = ax.imshow(w.numpy(), cmap="viridis", aspect="equal" if w.shape[0] == w.shape[1] else "auto")
            if i == 0:
                ax.set_title(name, fontsize=8)
            fig.colorbar(im, ax=ax, shrink=0.8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


class AttentionMaps(L.Callback):
    """At the end of validation epochs, plot the attention maps of a few fixed validation inputs
    to PNG files under the run directory, and log them as W&B images when a logger is a
    WandbLogger.

    Works with any network containing regkit attention blocks (every
    :class:`~regkit.components.attention.AttentionBlock`, found with :func:`~regkit.components.attention.record_attention`).
    The inputs are the first ``num_samples`` of the first validation batch, taken once.

    Args:
        num_samples: inputs to plot (one row each).
        every_n_epochs: plot every n-th validation epoch (and never in the sanity check).
        dirpath: where the PNGs go; default ``<run dir>/attention_maps`` (see :mod:`regkit.cli.run_folder`).
        max_maps: most attention blocks shown (in module order).
        log_wandb: also log the PNG to W&B as ``val/attention_maps``.
    """

    def __init__(
        self,
        num_samples: int = 4,
        every_n_epochs: int = 1,
        dirpath: Optional[str] = None,
        max_maps: int = 4,
        log_wandb: bool = True,
    ) -> None:
        super().__init__()
        check(locals(), positive="num_samples every_n_epochs max_maps")
        self.num_samples, self.every_n_epochs, self.max_maps = num_samples, every_n_epochs, max_maps
        self.dirpath, self.log_wandb = dirpath, log_wandb
        self.inputs: Optional[torch.Tensor] = None
        self.saved: list[Path] = []
        self._warned = False

    def output_dir(self, trainer: L.Trainer) -> Path:
        if self.dirpath is not None:
            return Path(self.dirpath)
        return Path(trainer.default_root_dir) / "attention_maps"

    def _fixed_inputs(self, trainer: L.Trainer) -> Optional[torch.Tensor]:
        if self.inputs is None:
            loaders = trainer.val_dataloaders
            if isinstance(loaders, (list, tuple)):
                loaders = loaders[0] if loaders else None
            if loaders is None:
                return None
            batch = next(iter(loaders))
            x = batch[0] if isinstance(batch, (list, tuple)) else batch
            self.inputs = x[: self.num_samples].detach().cpu().clone()
        return self.inputs

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        if trainer.current_epoch % self.every_n_epochs:
            return
        x = self._fixed_inputs(trainer)
        if x is None:
            return
        was_training = pl_module.training
        pl_module.eval()
        try:
            with torch.no_grad(), trainer.precision_plugin.forward_context(), record_attention(pl_module) as maps:
                pl_module(x.to(pl_module.device))
        finally:
            pl_module.train(was_training)
        if not maps:
            if not self._warned:
                rank_zero_warn("AttentionMaps: the model has no regkit attention blocks; nothing to plot")
                self._warned = True
            return
        fig = plot_attention_maps(x, maps, f"epoch {trainer.current_epoch}", self.max_maps)
        path = self.output_dir(trainer) / f"epoch={trainer.current_epoch:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=72)
        self.saved.append(path)
        if self.log_wandb:
            for logger in trainer.loggers:
                if isinstance(logger, WandbLogger):
                    logger.log_image(
                        key="val/attention_maps", images=[str(path)], step=trainer.global_step,
                        caption=[f"epoch {trainer.current_epoch}"],
                    )
