"""GAN parts: generators, discriminators (kinds ``generator``, ``discriminator``), losses (kind
``gan_loss``) and discriminator penalties; each kind's registry imports its module on first use.
Metrics, sampling and EMA are imported only by the GAN task and tools that use them (they pull in
torchmetrics and lightning, which ``regkit list`` should not pay for)."""
