"""GAN parts: generators, discriminators (kinds ``generator``, ``discriminator``) and losses
(kind ``gan_loss``). Every module in this package is imported on first registry use."""
from regkit._autoimport import import_submodules

import_submodules(__name__, __path__)
