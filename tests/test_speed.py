"""Speed switches (issue #27, docs/speed.md): ``compile`` on every task, ``channels_last`` for
convolutional networks, ``fused`` / ``foreach`` optimizers through the recipe; off by default, said
in the run summary. Bad values (exit 2 naming the key) are cases of tests/test_bad_input.py; the
compile contract of the components is tests/test_compile.py.

The default-suite runs here compile with ``backend: eager`` (dynamo's graph capture without
inductor's code generation, seconds instead of minutes on a CPU); the ``slow`` one uses inductor.
"""
from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch

from regkit.components.regularizers.base import DropoutBase
from regkit.cli.lightning import RegkitCLI
from regkit.tasks.speed import CPU_COMPILE_NOTE

from conftest import RECIPES, regkit_main

SMALL = ["--trainer.max_steps=3", "--trainer.limit_val_batches=1", "--test_after_fit=false",
         "--trainer.num_sanity_val_steps=0", "--trainer.enable_checkpointing=false"]


def fit(*args: str) -> str:
    """``regkit fit ARGS`` in this process (conftest.regkit_main: the W&B run ends with it); returns
    what it printed (it must exit 0)."""
    result = regkit_main("fit", *args)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return result.stdout + result.stderr


def speed_line(output: str) -> str:
    return next((line for line in output.splitlines() if line.startswith("speed:")), "")


def test_switches_are_off_by_default_and_the_summary_says_nothing() -> None:
    output = fit("--config", str(RECIPES / "mlp_dropout.yaml"), "--data.init_args.limit_train=512", *SMALL)
    assert "run folder:" in output
    assert speed_line(output) == ""


def test_compile_and_fused_optimizer_train_and_show_in_the_summary() -> None:
    output = fit("--config", str(RECIPES / "mlp_dropout.yaml"), "--data.init_args.limit_train=512", *SMALL,
                 "--model.init_args.compile={backend: eager, fullgraph: true}",
                 "--model.init_args.optimizer.init_args.fused=true")
    assert speed_line(output) == "speed:        compile (backend=eager, fullgraph=True), fused SGD", output[-2000:]


def test_compiled_task_keeps_parameter_names_and_eager_outputs() -> None:
    """``nn.Module.compile`` in place: the state_dict is the eager one (checkpoints interchange) and
    eval outputs equal the eager network's."""
    args = ["--config", str(RECIPES / "mlp_dropout.yaml"), "--trainer.logger=false"]
    eager = RegkitCLI(args=args, run=False).model
    compiled = RegkitCLI(args=[*args, "--model.init_args.compile={backend: eager, fullgraph: true}"], run=False).model
    assert list(compiled.state_dict()) == list(eager.state_dict())
    compiled.load_state_dict(eager.state_dict())
    x = torch.randn(8, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(compiled.eval()(x), eager.eval()(x))
    assert compiled.hparams["compile"] == {"backend": "eager", "fullgraph": True}  # a checkpoint rebuilds it compiled


def test_channels_last_puts_conv_weights_and_images_in_channels_last() -> None:
    built = RegkitCLI(args=["--config", str(RECIPES / "cnn_spatial_dropout.yaml"), "--trainer.logger=false",
                            "--model.init_args.channels_last=true"], run=False)
    task = built.model
    convs = [m for m in task.network.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)
    seen = []
    hook = convs[0].register_forward_hook(lambda m, args, out: seen.append(args[0]))
    task(torch.randn(4, 1, 28, 28))
    hook.remove()
    assert seen[0].is_contiguous(memory_format=torch.channels_last)


CPU_NOTE = "regkit fit: compile is on for a CPU run"
ZERO_STEPS = ["--trainer.max_steps=0", "--trainer.limit_val_batches=0", "--test_after_fit=false",
              "--trainer.num_sanity_val_steps=0", "--trainer.enable_checkpointing=false", "--trainer.logger=false"]


@pytest.mark.parametrize("recipe,compile,noted", [
    ("mlp_dropout.yaml", "true", True),
    ("mlp_no_dropout.yaml", "true", True),
    ("mlp_dropout.yaml", "{backend: eager}", False),  # graph-break checks, no generated code
], ids=["dropout", "no-dropout", "eager-backend"])
def test_compile_on_a_cpu_says_where_it_does_not_pay(recipe: str, compile: str, noted: bool) -> None:
    """Inductor's code is slower than eager for some of regkit's networks on a CPU, with or without
    dropout (benchmarks/RESULTS.md, ``compile``), so a CPU run that compiles with inductor (the
    default) says so in one line at its start, citing docs/speed.md, and still compiles; the eager
    backend gets no line. No training step runs (max_steps 0): the line comes before compiling."""
    output = fit("--config", str(RECIPES / recipe), "--data.init_args.limit_train=512", *ZERO_STEPS,
                 f"--model.init_args.compile={compile}")
    notes = [line for line in output.splitlines() if line.startswith(CPU_NOTE)]
    assert len(notes) == (1 if noted else 0), output[-3000:]
    if noted:
        assert "docs/speed.md" in notes[0] and "fused optimizer" in notes[0] and "Compiling as asked" in notes[0]
    assert speed_line(output).startswith("speed:        compile ("), output[-2000:]  # it compiled all the same


def test_docs_show_the_cpu_compile_line_as_printed() -> None:
    assert CPU_COMPILE_NOTE in (RECIPES.parent / "docs" / "speed.md").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("recipe,extra", [
    ("mlp_dropout.yaml", ["--data.init_args.limit_train=512"]),
    ("gan.yaml", ["--data.init_args.limit_train=256", "--model.init_args.metrics=false"]),
], ids=["classifier", "gan"])
def test_inductor_compiled_recipe_trains(recipe: str, extra: list[str], tmp_path: Path) -> None:
    """With inductor (the real fast path) a recipe trains a few steps and the summary says so."""
    torch.compiler.reset()
    output = fit("--config", str(RECIPES / recipe), *extra, *SMALL, "--model.init_args.compile=true")
    assert speed_line(output).startswith("speed:        compile (torch defaults)"), output[-2000:]


class FailOnRecompile(L.Callback):
    """From the third training batch on, any recompilation is an error (torch.compiler.set_stance)."""

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: object, batch_idx: int) -> None:
        if batch_idx == 2:
            torch.compiler.set_stance("fail_on_recompile")

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        torch.compiler.set_stance("default")


def test_a_schedule_does_not_recompile_a_compiled_task() -> None:
    """A linear schedule sets both dropout rates of the MLP at every batch; the compiled network
    reads them from tensors, so no batch after the first compiles again."""
    built = RegkitCLI(args=[
        "--config", str(RECIPES / "mlp_dropout.yaml"), "--trainer.logger=false", "--data.init_args.limit_train=1024",
        "--trainer.max_steps=8", "--trainer.limit_val_batches=0", "--trainer.enable_checkpointing=false",
        "--model.init_args.network.dropout.p={schedule: linear, start: 0.1, end: 0.5}",
        "--model.init_args.network.input_dropout.p={schedule: cosine, start: 0.0, end: 0.2}",
        "--model.init_args.compile={backend: eager, fullgraph: true}"], run=False)
    built.trainer.callbacks.append(FailOnRecompile())
    torch.compiler.reset()
    try:
        built.trainer.fit(built.model, datamodule=built.datamodule)
    finally:
        torch.compiler.set_stance("default")
    assert built.trainer.global_step == 8
    rates = [m.p for m in built.model.network.modules() if isinstance(m, DropoutBase)]
    assert rates and max(rates) > 0.4, rates  # the schedules moved (to 0.5 and 0.2 by the last step)
