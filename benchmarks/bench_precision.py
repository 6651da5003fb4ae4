"""bf16-mixed vs 32-true: training step time of the classifier (S1 MLP) and the GAN (recipes/gan.yaml's
DCGAN) through regkit's tasks and the Lightning Trainer, on the CPU (or the GPU when there is one).

Each case trains the same network from the same weights on the same in-memory MNIST batches with
``trainer.precision`` set to ``32-true`` or ``bf16-mixed`` (autocast to bfloat16; weights and
optimizer in float32), logging, progress bar and checkpointing off. Runs of the two precisions
alternate, so load from elsewhere hits both. On a CPU, bf16 pays off only with native bf16 matrix
instructions (AVX-512 BF16 / AMX, see the machine's flags); without them it is usually slower.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_overhead import S1_NETWORK, Stamps, loader, mnist_batches  # noqa: E402
from common import cpu_flags, median_iqr, print_table, row  # noqa: E402

BENCHMARK = "precision"
PRECISIONS = ("32-true", "bf16-mixed")


def classifier() -> Any:
    from regkit.tasks import Classifier

    torch.manual_seed(0)
    return Classifier(network=dict(S1_NETWORK), optimizer=lambda p: torch.optim.Adam(p, lr=1e-3))


def gan(compile: bool = False, optimizer: Any = None) -> Any:
    """recipes/gan.yaml's DCGAN task (``compile``: torch.compile G and D, and ``optimizer`` for both
    instead of the recipe's Adam: for bench_compile)."""
    from regkit.tasks import GAN

    torch.manual_seed(0)
    return GAN(
        generator={"name": "dcgan_generator", "latent_dim": 64, "width": 32, "norm": "batch_norm",
                   "activation": "relu"},
        discriminator={"name": "dcgan_discriminator", "width": 32, "dropout": {"name": "dropout", "p": 0.3}},
        ema_decay=0.999, metrics=False, compile=compile,
        **({"g_optimizer": optimizer, "d_optimizer": optimizer} if optimizer else {}),
    )


def timed_fit(task: Any, data: Any, steps: int, precision: str) -> Stamps:
    import lightning as L

    stamps = Stamps()

    class StampCallback(L.Callback):
        def on_train_batch_start(self, *args: Any) -> None:
            stamps.start()

        def on_train_batch_end(self, *args: Any) -> None:
            stamps.stop()

    trainer = L.Trainer(
        accelerator="auto", devices=1, max_steps=steps, precision=precision, logger=False,
        enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False,
        callbacks=[StampCallback()],
    )
    trainer.fit(task, train_dataloaders=data)
    return stamps


def run(quick: bool = False) -> list[dict]:
    batches, warmup, repeats = (15, 5, 2) if quick else (40, 10, 5)
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({cpu_flags()})"
    rows = []
    for name, build, batch_size, steps_per_batch in (("classifier (S1 MLP, batch 128)", classifier, 128, 1),
                                                     ("GAN (DCGAN of recipes/gan.yaml, batch 64)", gan, 64, 2)):
        dataset = mnist_batches(batches * batch_size)
        if build is gan:  # [0, 1] pixels, as recipes/gan.yaml (normalize: false) gives them
            dataset = torch.utils.data.TensorDataset(dataset.tensors[0] * 0.3081 + 0.1307)
        data = loader(dataset, batch_size)
        times: dict[str, list[float]] = {p: [] for p in PRECISIONS}
        for p in PRECISIONS:  # warm-up run of each
            timed_fit(build(), data, 3 * steps_per_batch, p)
        for _ in range(repeats):
            for p in PRECISIONS:
                stamps = timed_fit(build(), data, batches * steps_per_batch, p)
                times[p].append(stamps.per_step_ms(warmup))
        base, base_iqr = median_iqr(times["32-true"])
        rows.append(row(BENCHMARK, f"{name}, 32-true", "ms/batch", base, base_iqr,
                        note=f"{device}, {torch.get_num_threads()} torch threads, median of {repeats} runs of "
                        f"{batches - warmup} steady batches"))
        value, spread = median_iqr(times["bf16-mixed"])
        rows.append(row(BENCHMARK, f"{name}, bf16-mixed", "ms/batch", value, spread, "32-true", base,
                        note=device))
    return rows


if __name__ == "__main__":
    print_table(run(quick="--quick" in sys.argv))
