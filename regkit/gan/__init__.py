"""GAN parts: generators, discriminators (kinds ``generator``, ``discriminator``), losses (kind
``gan_loss``) and discriminator penalties. The component modules register on first registry use;
metrics, sampling and EMA are imported only by the GAN task and tools that use them (they pull in
torchmetrics and lightning, which ``regkit list`` should not pay for)."""
from regkit.gan import discriminators, generators, losses, penalties  # noqa: F401  (registration)
