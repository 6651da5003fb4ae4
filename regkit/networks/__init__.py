"""Networks (kind ``network``) assembled from registry parts. Every module in this package is
imported on first registry use, so a new network file registers itself with no edit here."""
from regkit._autoimport import import_submodules

import_submodules(__name__, __path__)
