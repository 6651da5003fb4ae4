"""Layer regularizers (kind ``regularizer``): modules that act inside the forward pass."""
from regkit.regularizers.dropout import Dropout

__all__ = ["Dropout"]
