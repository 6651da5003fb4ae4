"""Data modules that run offline on data shipped by packages, or on standard files you point to."""
from regkit.data.mnist import FashionMNISTDataModule, MNISTDataModule
from regkit.data.ptb import PTBDataModule
from regkit.data.resumable import EpochShuffle, ResumableDataLoader

__all__ = ["FashionMNISTDataModule", "MNISTDataModule", "PTBDataModule", "EpochShuffle", "ResumableDataLoader"]
