"""Data modules that run offline on data shipped by packages, or on standard files you point to."""
from regkit.data.mnist import FashionMNISTDataModule, MNISTDataModule
from regkit.data.ptb import PTBDataModule

__all__ = ["FashionMNISTDataModule", "MNISTDataModule", "PTBDataModule"]
