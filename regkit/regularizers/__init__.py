"""Layer regularizers (kind ``regularizer``): modules that act inside the forward pass. Every module
in this package is imported on first registry use, so a new file registers itself with no edit here."""
from regkit._autoimport import import_submodules

import_submodules(__name__, __path__)
