"""Lightning callback for Concrete Dropout: log each layer's learned rate."""
from __future__ import annotations

import lightning as L

from regkit_concrete_dropout import ConcreteDropout


class LogDropoutRates(L.Callback):
    """Log the learned rate of every ConcreteDropout layer as ``concrete_dropout/<layer>`` at the end
    of each training epoch (shown in W&B next to the loss)."""

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for name, m in pl_module.named_modules():
            if isinstance(m, ConcreteDropout):
                pl_module.log(f"concrete_dropout/{name or 'p'}", m.p.detach().float(), sync_dist=False)
