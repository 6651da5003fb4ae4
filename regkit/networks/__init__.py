"""Networks (kind ``network``) assembled from registry parts."""
from regkit.networks.cnn import SmallCNN
from regkit.networks.mlp import MLP

__all__ = ["MLP", "SmallCNN"]
