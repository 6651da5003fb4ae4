"""Regularizing a model regkit did not build: a timm ResNet-18 (or, without timm, a Hugging Face
ViT) with DropBlock and drop-path placed by rules and trained by regkit's Classifier in the
Lightning Trainer, against the same model with the same modules inserted by hand (``nn.Sequential``
around the layers, as one would write it) trained by a hand-written PyTorch loop.

Both sides build the model after the same seed, insert the same modules at the same places, see
the same MNIST batches in the same order and use the same optimizer (AdamW); regkit's side runs
with logging, progress bar and checkpointing off, so the ratio is what the rules (forward hooks)
and the task cost. Runs are interleaved (hand, regkit, hand, ...) so machine load hits both alike.

Goal (issue #23): regkit / hand <= 1.02 per steady-state step.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_overhead import Stamps, hand_loop, loader, mnist_batches, seed_at_train_start, trainer_callback  # noqa: E402
from common import median_iqr, print_table, row  # noqa: E402

BENCHMARK = "surgery"
SEED = 0
BATCH_SIZE = 64
HAVE_TIMM = importlib.util.find_spec("timm") is not None

if HAVE_TIMM:
    MODEL = "timm resnet18 (1x28x28, random weights)"
    NETWORK: dict[str, Any] = {"class_path": "timm.create_model", "init_args": {
        "model_name": "resnet18", "pretrained": False, "num_classes": 10, "in_chans": 1, "zero_init_last": False}}
    RULES: list[dict[str, Any]] = [
        {"path": "layer[34].*.bn1", "insert": {"name": "drop_block", "p": 0.1, "block_size": 3}},
        {"path": "layer*.*.bn2", "insert": {"name": "drop_path", "p": 0.1}, "depth": "linear"},
    ]
else:
    MODEL = "Hugging Face ViT (4 layers, 64 wide, 7x7 patches)"
    NETWORK = {"class_path": "transformers.ViTForImageClassification", "init_args": {"config": {
        "class_path": "transformers.ViTConfig", "init_args": {
            "image_size": 28, "patch_size": 7, "num_channels": 1, "hidden_size": 64, "num_hidden_layers": 4,
            "num_attention_heads": 4, "intermediate_size": 128, "num_labels": 10}}}}
    RULES = [{"path": "vit.layers.*.mlp", "insert": {"name": "drop_path", "p": 0.1}, "depth": "linear"}]


def adamw(params: Any) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=1e-3)


def by_hand() -> nn.Module:
    """The model with the same modules inserted the way one writes it without regkit."""
    from regkit.components.regularizers.drop_path import DropPath
    from regkit.components.regularizers.spatial import DropBlock
    from regkit.registry import NetworkSpec

    torch.manual_seed(SEED)
    model = NetworkSpec.parse(NETWORK).build()
    if HAVE_TIMM:
        for stage in (model.layer3, model.layer4):
            for block in stage:
                block.bn1 = nn.Sequential(block.bn1, DropBlock(0.1, block_size=3))
        blocks = [b for stage in (model.layer1, model.layer2, model.layer3, model.layer4) for b in stage]
        for i, block in enumerate(blocks):
            block.bn2 = nn.Sequential(block.bn2, DropPath(round(0.1 * (i + 1) / len(blocks), 12)))
    else:
        layers = list(model.vit.layers)
        for i, layer in enumerate(layers):
            layer.mlp = nn.Sequential(layer.mlp, DropPath(round(0.1 * (i + 1) / len(layers), 12)))
    return model


def logits(output: Any) -> torch.Tensor:
    return output if isinstance(output, torch.Tensor) else output.logits


def regkit_run(data: Any, steps: int) -> Stamps:
    import lightning as L

    from regkit.tasks import Classifier

    torch.manual_seed(SEED)
    task = Classifier(network=NETWORK, regularize=RULES, optimizer=adamw)
    stamps = Stamps()
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=steps, logger=False, enable_progress_bar=False,
                        enable_checkpointing=False, enable_model_summary=False,
                        callbacks=[seed_at_train_start(SEED), trainer_callback(stamps)])
    trainer.fit(task, train_dataloaders=data)
    return stamps


def run(quick: bool = False, repeats: int = 0) -> list[dict]:
    import lightning as L  # noqa: F401  (imported before timing)

    steps, warmup, default_repeats = (15, 5, 2) if quick else (45, 5, 5)
    repeats = repeats or int(os.environ.get("REGKIT_BENCH_REPEATS", "0")) or default_repeats
    data = loader(mnist_batches(steps * BATCH_SIZE), BATCH_SIZE)
    fns: dict[str, Callable[[int], Stamps]] = {
        "hand": lambda n: hand_loop(by_hand(), data, n, SEED, optimizer_of=adamw, logits_of=logits),
        "regkit": lambda n: regkit_run(data, n),
    }
    for fn in fns.values():
        fn(3)
    per_step: dict[str, list[float]] = {k: [] for k in fns}
    curves: dict[str, torch.Tensor] = {}
    for _ in range(repeats):
        for key, fn in fns.items():
            stamps = fn(steps)
            per_step[key].append(stamps.per_step_ms(warmup))
            curves[key] = stamps.loss_curve()
    hand, hand_iqr = median_iqr(per_step["hand"])
    value, spread = median_iqr(per_step["regkit"])
    diff = (curves["regkit"] - curves["hand"]).abs().max().item()
    ratios = [a / b for a, b in zip(per_step["regkit"], per_step["hand"])]
    ratio, ratio_iqr = median_iqr(ratios)
    note = f"{MODEL}, batch {BATCH_SIZE}, {torch.get_num_threads()} torch threads, {repeats} x {steps - warmup} steps"
    return [
        row(BENCHMARK, "modules inserted by hand, hand-written loop", "ms/step", hand, hand_iqr, note=note),
        row(BENCHMARK, "rules through regkit's Classifier (logging off)", "ms/step", value, spread,
            "hand-written loop", hand, note=f"max abs loss diff vs hand over {steps} steps: {diff:.1e}"),
        row(BENCHMARK, "GOAL: rules in regkit / by hand in a hand loop", "wall time ratio", ratio, ratio_iqr,
            note=f"goal <= 1.02: {'met' if ratio <= 1.02 else 'NOT met'}; per-repeat ratios "
            + ", ".join(f"{r:.3f}" for r in ratios)),
    ]


if __name__ == "__main__":
    print_table(run(quick="--quick" in sys.argv))
