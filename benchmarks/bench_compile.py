"""The fast path (issue #27): regkit's tasks with the speed switches on (``compile: true``, a fused
optimizer) against the hand-written *eager* PyTorch loop, ms per training step on the CPU (or the GPU
when there is one), compile time apart.

Cases, each from the same initial weights on the same in-memory batches (logging, progress bar and
checkpointing off, as in the ``overhead`` benchmark's "logging off" row):

* ``hand-written eager loop``: what one writes without a framework: the same network with torch's
  own ``nn.Dropout`` layers where regkit has its ``dropout``, torch's Adam with its defaults
  (``bench_overhead.hand_loop`` for the classifiers, the alternating D / G steps of
  ``bench_gan_ddp.step`` for the DCGAN, a truncated-BPTT loop for the LM);
* ``regkit, eager``: the task through the Lightning Trainer, every switch off (the default);
* ``regkit, fused Adam``: the same with ``fused: true`` in the optimizer's ``init_args``;
* ``regkit, compile: true``: ``torch.compile`` (inductor, torch's defaults) of the networks;
* ``regkit, compile: true + fused Adam``: both switches.

Per-step time is the steady state after the warm-up steps (where compilation happens); "compile
time" is the compiled run's warm-up wall time minus the same number of its steady steps. Runs of the
cases alternate, so load from elsewhere hits all alike. Inductor's graph caches are off (its
kernel cache is kept: a first run on a new machine compiles longer than reported).
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

# Compile time closer to what a first run pays: inductor's graph caches off (else every repeat after
# the first reads the compiled graphs back in well under a second). Its cache of C++ kernels
# (/tmp/torchinductor_$USER) stays: a kernel compiled before is not compiled again, so a first run on a
# new machine takes longer than the "compile time" rows say.
os.environ.setdefault("TORCHINDUCTOR_FX_GRAPH_CACHE", "0")
os.environ.setdefault("TORCHINDUCTOR_AUTOGRAD_CACHE", "0")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_overhead import LR, S1_NETWORK, Stamps, adam, build_network, hand_loop, loader, mnist_batches  # noqa: E402
from bench_precision import gan, timed_fit  # noqa: E402
from common import cpu_flags, median_iqr, print_table, row  # noqa: E402

BENCHMARK = "compile"

ATTENTION_NETWORK: dict[str, Any] = {  # recipes/attention_dropout.yaml's network
    "name": "attention_classifier", "in_features": 28, "max_len": 28, "d_model": 64, "num_heads": 4,
    "num_layers": 2, "ff_dim": 128, "out_features": 10, "attn_dropout": 0.1,
    "dropout": {"name": "dropout", "p": 0.1},
}


LM_NETWORK: dict[str, Any] = {  # recipes/lstm_ptb_standard.yaml's network
    "name": "rnn_lm", "vocab_size": 10000, "cell": "lstm", "embedding_dim": 200, "hidden_size": 200,
    "num_layers": 2, "input_dropout": {"name": "dropout", "p": 0.5}, "layer_dropout": {"name": "dropout", "p": 0.5},
    "output_dropout": {"name": "dropout", "p": 0.5}, "tie_weights": True,
}


def fused_adam(params: Any) -> torch.optim.Optimizer:
    """Adam as in the other cases, one fused kernel for the whole update (``fused: true``)."""
    return torch.optim.Adam(params, lr=LR, fused=True)


def fused_gan_adam(params: Any) -> torch.optim.Optimizer:
    """The GAN's default optimizer (Adam, lr 2e-4, betas 0.5 / 0.999), fused."""
    return torch.optim.Adam(params, lr=2e-4, betas=(0.5, 0.999), fused=True)


def torch_dropouts(network: torch.nn.Module) -> torch.nn.Module:
    """``network`` with each of regkit's element-wise ``Dropout`` layers replaced by torch's
    ``nn.Dropout`` of the same rate: the layers one writes by hand (the weights are untouched)."""
    from regkit.components.regularizers.dropout import Dropout

    for name, child in network.named_children():
        if isinstance(child, Dropout):
            setattr(network, name, torch.nn.Dropout(child.p))
        else:
            torch_dropouts(child)
    return network


def token_batches(batches: int, batch_size: int = 20, bptt: int = 35) -> Any:
    """(inputs, targets) windows of random token ids, the PTB recipes' shapes (the ids do not change the
    time of a step)."""
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, LM_NETWORK["vocab_size"], (batches * batch_size, bptt + 1), generator=generator)
    return torch.utils.data.TensorDataset(tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous())


def language_model(compile: bool, fused: bool = False) -> Any:
    from regkit.tasks import LanguageModel

    torch.manual_seed(0)
    return LanguageModel(network=dict(LM_NETWORK), optimizer=fused_adam if fused else adam, compile=compile)


def hand_lm(data: Any, batches: int) -> Stamps:
    """The LSTM language model's truncated-BPTT step written by hand: the state carried, detached."""
    network = torch_dropouts(build_network(LM_NETWORK))
    optimizer = adam(network.parameters())
    network.train()
    stamps, state = Stamps(), None
    for i, (x, y) in enumerate(data):
        if i == batches:
            break
        stamps.start()
        out = network(x, state)
        state = tuple(s.detach() for s in out.state)
        loss = torch.nn.functional.cross_entropy(out.logits.reshape(-1, out.logits.size(-1)), y.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    stamps.stop()
    return stamps


def classifier(network: dict[str, Any], compile: bool, fused: bool = False) -> Any:
    from regkit.tasks import Classifier

    torch.manual_seed(0)
    return Classifier(network=dict(network), optimizer=fused_adam if fused else adam, compile=compile)


def gan_task(compile: bool, fused: bool = False) -> Any:
    return gan(compile, fused_gan_adam if fused else None)


def hand_gan(data: Any, batches: int) -> Stamps:
    """The DCGAN's alternating D / G steps written by hand (bench_gan_ddp.step, one process)."""
    from bench_gan_ddp import Pair, step

    torch.manual_seed(0)
    pair = Pair()
    torch_dropouts(pair.d)
    opts = {k: torch.optim.Adam(getattr(pair, k).parameters(), lr=2e-4, betas=(0.5, 0.999)) for k in "dg"}
    pair.train()
    stamps = Stamps()
    for i, (real,) in enumerate(data):
        if i == batches:
            break
        stamps.start()
        step(pair, pair, opts, real * 2 - 1, flat=False)
    stamps.stop()
    return stamps


CASES = {  # case: (compile, fused optimizer), the label of its rows
    "eager": ((False, False), "regkit, eager"),
    "fused": ((False, True), "regkit, fused Adam"),
    "compile": ((True, False), "regkit, compile: true"),
    "compile+fused": ((True, True), "regkit, compile: true + fused Adam"),
}


def run(quick: bool = False) -> list[dict]:
    batches, warmup, repeats = (15, 5, 1) if quick else (60, 10, 5)
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({cpu_flags()})"
    rows: list[dict] = []
    mnist = mnist_batches(batches * 128)
    pixels = torch.utils.data.TensorDataset(mnist.tensors[0][: batches * 64] * 0.3081 + 0.1307)  # [0, 1], as gan.yaml
    tokens = token_batches(batches)
    tasks: list[tuple[str, Callable[[], Stamps], Callable[..., Any], Any]] = [
        ("S1 MLP (recipes/mlp_dropout.yaml's network, batch 128)",
         lambda: hand_loop(torch_dropouts(build_network(S1_NETWORK)), loader(mnist), batches),
         lambda c, f: classifier(S1_NETWORK, c, f), loader(mnist)),
        ("S0 attention classifier (recipes/attention_dropout.yaml's network, batch 128)",
         lambda: hand_loop(torch_dropouts(build_network(ATTENTION_NETWORK)), loader(mnist), batches),
         lambda c, f: classifier(ATTENTION_NETWORK, c, f), loader(mnist)),
        ("S4 DCGAN (recipes/gan.yaml's G and D, batch 64; one D + one G step)",
         lambda: hand_gan(loader(pixels, 64), batches),
         gan_task, loader(pixels, 64)),
        ("S2 LSTM LM (recipes/lstm_ptb_standard.yaml's network, 20 x 35 tokens)",
         lambda: hand_lm(loader(tokens, 20), batches),
         language_model, loader(tokens, 20)),
    ]
    for name, hand, build, data in tasks:
        steps = batches * (2 if "DCGAN" in name else 1)  # the GAN's Trainer counts D and G steps
        times: dict[str, list[float]] = {"hand": [], **{case: [] for case in CASES}}
        compile_s: list[float] = []
        hand(), timed_fit(build(False, False), data, steps, "32-true")  # warm-up of the eager paths (allocator, imports)
        for _ in range(repeats):
            times["hand"].append(hand().per_step_ms(warmup))
            for case, ((compiled, fused), _) in CASES.items():
                torch.compiler.reset()  # each compiled repeat compiles afresh, so the compile time is a real one
                start = time.perf_counter()
                stamps = timed_fit(build(compiled, fused), data, steps, "32-true")
                steady = stamps.per_step_ms(warmup)
                times[case].append(steady)
                if case == "compile":
                    compile_s.append((stamps.starts[warmup] - start) - warmup * steady / 1000)
        base, base_iqr = median_iqr(times["hand"])
        rows.append(row(BENCHMARK, f"{name}: hand-written eager loop", "ms/batch", base, base_iqr,
                        note=f"{device}, {torch.get_num_threads()} torch threads, median of {repeats} runs of "
                        f"{batches - warmup} steady batches; torch's nn.Dropout, Adam"))
        for case, (_, label) in CASES.items():
            value, spread = median_iqr(times[case])
            rows.append(row(BENCHMARK, f"{name}: {label}", "ms/batch", value, spread, "hand-written eager loop", base))
        value, spread = median_iqr(compile_s)
        rows.append(row(BENCHMARK, f"{name}: compile time", "s", value, spread,
                        note="warm-up wall time of the compiled run minus as many steady steps (Trainer setup included; inductor graph caches off, its kernel cache kept)"))
    return rows


if __name__ == "__main__":
    print_table(run(quick="--quick" in sys.argv))
