"""Speed switches (issue #27, docs/speed.md): ``compile`` on every task, ``channels_last`` for
convolutional networks, ``fused`` / ``foreach`` optimizers through the recipe; off by default, said
in the run summary. Bad values (exit 2 naming the key) are cases of tests/test_bad_input.py; the
compile contract of the components is tests/test_compile.py.

The default-suite runs here compile with ``backend: eager`` (dynamo's graph capture without
inductor's code generation, seconds instead of minutes on a CPU); the ``slow`` one uses inductor.
"""
from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
import torch

from regkit import cli
from regkit.cli.lightning import RegkitCLI

from conftest import RECIPES

SMALL = ["--trainer.max_steps=3", "--trainer.limit_val_batches=1", "--test_after_fit=false",
         "--trainer.num_sanity_val_steps=0", "--trainer.enable_checkpointing=false"]


def fit(*args: str) -> str:
    """``regkit fit ARGS`` in this process; returns what it printed (it must exit 0)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = cli.main(["fit", *args])
    assert code in (0, None), out.getvalue()[-3000:]
    return out.getvalue()


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
