"""Lightning callbacks: pictures and logs (attention maps, GAN sample grids, predictions, the progress
bar), exact resume, last.ckpt on a preemption signal, and per-process random streams under DDP."""
from regkit.callbacks.regularize import Regularize

__all__ = ["Regularize"]
