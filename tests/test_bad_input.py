"""Bad input never starts a run (issue #12).

Every case is a broken recipe or command line a user could plausibly write. Each must:
exit with code 2, name the YAML key (or the file) and what is wrong in the last line of the output,
print no traceback, and leave the directory it ran in empty (no runs/, wandb/, config.yaml,
checkpoint). The cases run in-process through ``regkit.cli.main`` (the function behind the ``regkit``
command; a parse-time failure takes well under a second there), and a few run as real subprocesses
to check what a user's terminal sees.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import pytest
import torch
import yaml

from conftest import RECIPES, ROOT, regkit_main, require_plugin, run_regkit

DELETE = object()
PLUGIN_RECIPES = ROOT / "plugins"

# Keep a case that wrongly starts training tiny (the test then fails on the written files).
GUARD = [
    "--trainer.max_steps=1",
    "--trainer.limit_train_batches=1",
    "--trainer.limit_val_batches=1",
    "--trainer.limit_test_batches=1",
    "--trainer.limit_predict_batches=1",
    "--test_after_fit=false",
]


@dataclass
class Case:
    id: str
    recipe: Optional[str] = None  # a file in recipes/ (or a path under plugins/)
    edits: dict[str, Any] = field(default_factory=dict)  # dotted key -> new value (DELETE removes)
    text: Optional[Callable[[str], str]] = None  # rewrite the recipe text instead
    args: list[str] = field(default_factory=list)  # extra command-line arguments ({tmp} = a scratch dir)
    expect: tuple[str, ...] = ()  # substrings of the last line (case-insensitive)
    subcommand: str = "fit"
    before: list[str] = field(default_factory=list)  # arguments before the subcommand (--plugins)


def _edit(config: dict, key: str, value: Any) -> None:
    *parents, last = key.split(".")
    node: Any = config
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    if value is DELETE:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


def _dup(after: str, line: str) -> Callable[[str], str]:
    """Insert ``line`` after the first line equal to ``after`` (both with indentation)."""

    def rewrite(text: str) -> str:
        assert after + "\n" in text
        return text.replace(after + "\n", after + "\n" + line + "\n", 1)

    return rewrite


MLP, LM, ATT, GAN, CNN = (
    "mlp_dropout.yaml",
    "lstm_ptb_standard.yaml",
    "attention_dropout.yaml",
    "gan.yaml",
    "cnn_spatial_dropout.yaml",
)
CONCRETE = "regkit-concrete-dropout/recipes/mlp_concrete_dropout.yaml"
CUTOUT = "regkit-cutout/recipes/mlp_cutout.yaml"
NET = "model.init_args.network"
MLPDATA = "data.init_args"

CASES = [
    # --- classifier (MLP) -------------------------------------------------------------------
    Case("mlp-arg-typo", MLP, {f"{NET}.dropuot": 0.3}, expect=("network", "dropuot", "dropout")),
    Case("mlp-regularizer-typo", MLP, {f"{NET}.dropout": {"name": "dropuot"}}, expect=("network", "dropout")),
    Case("mlp-negative-width", MLP, {f"{NET}.hidden": [1024, -1024]}, expect=("hidden", "-1024")),
    Case("mlp-zero-width", MLP, {f"{NET}.hidden": [0]}, expect=("hidden",)),
    Case("mlp-in-features-zero", MLP, {f"{NET}.in_features": 0}, expect=("in_features",)),
    Case("mlp-p-out-of-range", MLP, {f"{NET}.dropout.p": 1.5}, expect=("network", "1.5")),
    Case("mlp-order-twice", MLP, {f"{NET}.order": ["act", "act", "dropout"]}, expect=("network", "order")),
    Case("batch-size-zero", MLP, {f"{MLPDATA}.batch_size": 0}, expect=("data.init_args.batch_size", "0")),
    Case("batch-size-negative", MLP, {f"{MLPDATA}.batch_size": -5}, expect=("batch_size", "-5")),
    Case("val-size-zero", MLP, {f"{MLPDATA}.val_size": 0}, expect=("val_size",)),
    Case("val-size-too-big", MLP, {f"{MLPDATA}.val_size": 60000}, expect=("val_size", "60000")),
    Case("limit-train-negative", MLP, {f"{MLPDATA}.limit_train": -1}, expect=("limit_train",)),
    Case("num-workers-negative", MLP, {f"{MLPDATA}.num_workers": -2}, expect=("num_workers",)),
    Case("num-classes-zero", MLP, {"model.init_args.num_classes": 0}, expect=("num_classes",)),
    Case("mc-samples-negative", MLP, {"model.init_args.mc_samples": -1}, expect=("mc_samples",)),
    Case("lr-nan", MLP, {"model.init_args.optimizer.init_args.lr": float("nan")}, expect=("lr", "nan")),
    Case("lr-inf", MLP, {"model.init_args.optimizer.init_args.lr": float("inf")}, expect=("lr", "inf")),
    Case("lr-negative", MLP, {"model.init_args.optimizer.init_args.lr": -0.1}, expect=("optimizer", "-0.1")),
    Case("optimizer-arg-typo", MLP, {"model.init_args.optimizer.init_args.lrr": 0.1}, expect=("optimizer", "lrr")),
    # speed switches (regkit/tasks/speed.py, docs/speed.md)
    Case("compile-mode-typo", MLP, {"model.init_args.compile": {"mode": "max-autotun"}},
         expect=("model.init_args.compile.mode", "max-autotune")),
    Case("compile-option-typo", MLP, {"model.init_args.compile": {"fulgraph": True}},
         expect=("model.init_args.compile.fulgraph", "fullgraph")),
    Case("compile-backend-unknown", MLP, {"model.init_args.compile": {"backend": "indutor"}},
         expect=("model.init_args.compile.backend", "inductor")),
    Case("compile-not-a-flag", MLP, args=["--model.init_args.compile=fast"], expect=("compile", "fast")),
    Case("channels-last-no-conv", MLP, {"model.init_args.channels_last": True}, expect=("model.init_args.channels_last",)),
    Case("fused-and-foreach", MLP, {"model.init_args.optimizer.init_args.fused": True,
                                    "model.init_args.optimizer.init_args.foreach": True}, expect=("optimizer", "fused")),
    Case("compile-fullgraph-fused-lstm", LM, {"model.init_args.compile": {"fullgraph": True}},
         expect=("model.init_args.compile.fullgraph", "cell_loop")),
    Case("scheduler-tmax-zero", MLP, {"model.init_args.lr_scheduler.init_args.T_max": 0}, expect=("lr_scheduler",)),
    Case("task-class-typo", MLP, {"model.class_path": "regkit.tasks.Clasifier"}, expect=("model", "Clasifier")),
    Case("data-class-typo", MLP, {"data.class_path": "regkit.data.MNISTDataMdule"}, expect=("data", "MNISTDataMdule")),
    Case("trainer-flag-typo", MLP, {"trainer.max_epoch": 3}, expect=("max_epoch",)),
    Case("max-epochs-negative", MLP, {"trainer.max_epochs": -3}, expect=("trainer.max_epochs", "-3")),
    Case("trainer-flag-prefix", MLP, args=["--trainer.max_epoch", "3"], expect=("max_epoch",)),
    Case("max-steps-negative", MLP, args=["--trainer.max_steps=-7"], expect=("trainer.max_steps", "-7")),
    Case("limit-val-negative", MLP, args=["--trainer.limit_val_batches=-1"], expect=("trainer.limit_val_batches",)),
    Case("grad-clip-negative", MLP, {"trainer.gradient_clip_val": -1.0}, expect=("gradient_clip_val",)),
    Case("accumulate-zero", MLP, {"trainer.accumulate_grad_batches": 0}, expect=("accumulate_grad_batches",)),
    Case("accelerator-missing", MLP, {"trainer.accelerator": "gpu"}, expect=("trainer", "gpu")),
    Case("devices-zero", MLP, args=["--trainer.devices=0"], expect=("trainer", "devices")),
    Case("recipe-is-a-directory", args=["--config", "{tmp}/empty"], expect=("empty", "directory")),
    Case("logger-class-typo", MLP, {"trainer.logger.class_path": "regkit.loggers.WandbLoger"}, expect=("logger",)),
    Case("logger-arg-typo", MLP, {"trainer.logger.init_args.projet": "x"}, expect=("logger", "projet")),
    Case("seed-not-int", MLP, {"seed_everything": "zero"}, expect=("seed_everything", "zero")),
    Case("dup-key-network-arg", MLP, text=_dup("      out_features: 10", "      out_features: 100"),
         expect=("duplicate", "out_features")),
    Case("dup-key-top", MLP, text=lambda t: t + "seed_everything: 1\n", expect=("duplicate", "seed_everything")),
    Case("recipe-not-yaml", text=lambda t: "\x00\x01PK\x03\x04 binary\xff", expect=("recipe.yaml",)),
    Case("recipe-syntax-error", MLP, text=lambda t: t.replace("  max_epochs: 15", " max_epochs: [15"),
         expect=("recipe.yaml",)),
    Case("recipe-is-a-list", text=lambda t: "- trainer\n- model\n", expect=("recipe.yaml",)),
    Case("recipe-missing", args=["--config", "{tmp}/nope.yaml"], expect=("nope.yaml",)),
    Case("data-dir-missing", MLP, {f"{MLPDATA}.data_dir": "{tmp}/no_such_dir"}, expect=("data_dir", "no_such_dir")),
    Case("data-dir-empty", MLP, {f"{MLPDATA}.data_dir": "{tmp}/empty"}, expect=("data_dir", "train-images")),
    Case("data-dir-truncated-idx", MLP, {f"{MLPDATA}.data_dir": "{tmp}/truncated"},
         expect=("data_dir", "train-images-idx3-ubyte")),
    Case("data-dir-bad-magic", MLP, {f"{MLPDATA}.data_dir": "{tmp}/badmagic"}, expect=("data_dir", "idx")),
    Case("ckpt-missing", MLP, args=["--ckpt_path", "{tmp}/gone.ckpt"], expect=("ckpt_path", "gone.ckpt")),
    Case("ckpt-not-a-checkpoint", MLP, args=["--ckpt_path", "{tmp}/notes.txt"], expect=("ckpt_path", "notes.txt")),
    Case("ckpt-untrusted-class", MLP, args=["--ckpt_path", "{tmp}/zen.ckpt"], expect=("zen.ckpt", "this.Zen")),
    Case("ckpt-untrusted-nested", MLP, args=["--ckpt_path", "{tmp}/nested.ckpt"], expect=("nested.ckpt", "os.system")),
    # --- other subcommands --------------------------------------------------------------------
    Case("validate-arg-typo", MLP, {f"{NET}.hiden": [8]}, expect=("hiden",), subcommand="validate"),
    Case("test-batch-size-zero", MLP, {f"{MLPDATA}.batch_size": 0}, expect=("batch_size",), subcommand="test"),
    Case("predict-ckpt-garbage", MLP, args=["--ckpt_path", "{tmp}/notes.txt"], expect=("notes.txt",),
         subcommand="predict"),
    Case("test-ckpt-untrusted", MLP, args=["--ckpt_path", "{tmp}/zen.ckpt"], expect=("this.Zen",), subcommand="test"),
    # --- language model -----------------------------------------------------------------------
    Case("lm-hidden-zero", LM, {f"{NET}.hidden_size": 0}, expect=("hidden_size",)),
    Case("lm-layers-negative", LM, {f"{NET}.num_layers": -1}, expect=("num_layers",)),
    Case("lm-cell-typo", LM, {f"{NET}.cell": "lstn"}, expect=("cell", "lstm")),
    Case("lm-vocab-zero", LM, {f"{NET}.vocab_size": 0}, expect=("vocab_size",)),
    Case("lm-bptt-zero", LM, {"data.init_args.bptt": 0}, expect=("bptt",)),
    Case("lm-eval-batch-negative", LM, {"data.init_args.eval_batch_size": -1}, expect=("eval_batch_size",)),
    Case("lm-limit-tokens-negative", LM, {"data.init_args.limit_train_tokens": -100}, expect=("limit_train_tokens",)),
    Case("lm-data-dir-empty", LM, {"data.init_args.data_dir": "{tmp}/empty"}, expect=("data_dir", "ptb.train.txt")),
    Case("lm-layer-dropout-typo", LM, {f"{NET}.layer_dropout": {"name": "variatonal_dropout"}},
         expect=("layer_dropout",)),
    Case("lm-lr-nan-cli", LM, args=["--model.init_args.optimizer.init_args.lr=nan"], expect=("lr", "nan")),
    # --- attention ----------------------------------------------------------------------------
    Case("att-heads-do-not-divide", ATT, {f"{NET}.num_heads": 5}, expect=("network", "num_heads")),
    Case("att-d-model-zero", ATT, {f"{NET}.d_model": 0}, expect=("d_model",)),
    Case("att-dropout-rate", ATT, {f"{NET}.attn_dropout": 1.5}, expect=("attn_dropout", "1.5")),
    Case("att-max-len-negative", ATT, {f"{NET}.max_len": -28}, expect=("max_len",)),
    Case("att-callback-samples-zero", ATT, {"trainer.callbacks.0.init_args.num_samples": 0},
         expect=("callbacks", "num_samples")),
    Case("att-limit-train-negative", ATT, {"data.init_args.limit_train": -20000}, expect=("limit_train",)),
    # --- GAN ----------------------------------------------------------------------------------
    Case("gan-latent-zero", GAN, {"model.init_args.generator.latent_dim": 0}, expect=("latent_dim",)),
    Case("gan-width-negative", GAN, {"model.init_args.discriminator.width": -32}, expect=("width",)),
    Case("gan-loss-typo", GAN, {"model.init_args.loss": "non_saturatin"}, expect=("loss", "non_saturating")),
    Case("gan-ema-decay", GAN, {"model.init_args.ema_decay": 1.5}, expect=("ema_decay", "1.5")),
    Case("gan-betas", GAN, {"model.init_args.g_optimizer.init_args.betas": [1.5, 0.999]}, expect=("g_optimizer",)),
    Case("gan-compile-r1", GAN, {"model.init_args.compile": True, "model.init_args.d_penalties": [{"name": "r1"}]},
         expect=("model.init_args.compile", "r1")),
    Case("gan-d-lr-inf", GAN, {"model.init_args.d_optimizer.init_args.lr": float("inf")}, expect=("lr", "inf")),
    Case("gan-samples-negative", GAN, {"trainer.callbacks.0.init_args.num_samples": -1}, expect=("num_samples",)),
    Case("gan-checkpoint-arg-typo", GAN, args=["--checkpoint.save_lats=true"], expect=("save_lats", "save_last")),
    # --- CNN ----------------------------------------------------------------------------------
    Case("cnn-channel-zero", CNN, {f"{NET}.channels": [16, 0]}, expect=("channels",)),
    Case("cnn-image-size-zero", CNN, {f"{NET}.image_size": 0}, expect=("image_size",)),
    Case("cnn-norm-typo", CNN, {f"{NET}.norm": "bach_norm"}, expect=("norm", "batch_norm")),
    # --- plugins ------------------------------------------------------------------------------
    Case("concrete-p-zero", CONCRETE, {f"{NET}.dropout.p": 0.0}, expect=("network",)),
    Case("concrete-penalty-typo", CONCRETE, {"model.init_args.penalties.0.weight_regulariser": 1e-5},
         expect=("penalties", "weight_regulariser")),
    Case("cutout-size-negative", CUTOUT, {f"{NET}.input_dropout.size": -8}, expect=("network", "size")),
    Case("plugin-file-missing", MLP, before=["--plugins", "{tmp}/my_components.py"], expect=("my_components.py",)),
    Case("plugin-dir-missing", MLP, before=["--plugins", "{tmp}/my_plugins/"], expect=("my_plugins",)),
    Case("plugin-module-missing", MLP, before=["--plugins", "regkit_no_such_plugin"], expect=("regkit_no_such_plugin",)),
    Case("plugin-file-broken", MLP, before=["--plugins", "{tmp}/broken_plugin.py"], expect=("broken_plugin.py",)),
]


def _idx_bytes(count: int, rows: int = 28, cols: int = 28, truncate: int = 0) -> bytes:
    header = bytes([0, 0, 8, 3]) + count.to_bytes(4, "big") + rows.to_bytes(4, "big") + cols.to_bytes(4, "big")
    return header + bytes(count * rows * cols - truncate)


def _scratch(tmp: Path) -> None:
    """Files the cases point at: broken data directories, checkpoints, plugins."""
    (tmp / "empty").mkdir()
    truncated = tmp / "truncated"
    truncated.mkdir()
    labels = bytes([0, 0, 8, 1]) + (10).to_bytes(4, "big") + bytes(10)
    (truncated / "train-images-idx3-ubyte").write_bytes(_idx_bytes(10, truncate=100))
    (truncated / "train-labels-idx1-ubyte").write_bytes(labels)
    (truncated / "t10k-images-idx3-ubyte").write_bytes(_idx_bytes(10))
    (truncated / "t10k-labels-idx1-ubyte").write_bytes(labels)
    badmagic = tmp / "badmagic"
    badmagic.mkdir()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (badmagic / name).write_text("<html>404 not found</html>\n")
    (tmp / "notes.txt").write_text("not a checkpoint\n")
    state = {"state_dict": {}, "pytorch-lightning_version": "2.6.6", "epoch": 0, "global_step": 0}
    torch.save({**state, "hyper_parameters": {"_class_path": "this.Zen", "x": 1}}, tmp / "zen.ckpt")
    nested = {"_class_path": "regkit.tasks.Classifier", "network": {"class_path": "os.system", "init_args": {}}}
    torch.save({**state, "hyper_parameters": nested}, tmp / "nested.ckpt")
    (tmp / "broken_plugin.py").write_text("import regkit\nraise RuntimeError('half-written plugin')\n")


def _recipe_text(case: Case) -> Optional[str]:
    if case.recipe is None and case.text is None:
        return None
    source = ""
    if case.recipe is not None:
        path = RECIPES / case.recipe if "/" not in case.recipe else PLUGIN_RECIPES / case.recipe
        source = path.read_text()
    if case.edits:
        config = yaml.safe_load(source)
        for key, value in case.edits.items():
            _edit(config, key, value)
        source = yaml.safe_dump(config, sort_keys=False)
    if case.text is not None:
        source = case.text(source)
    return source


def _command(case: Case, tmp: Path) -> list[str]:
    text = _recipe_text(case)
    argv = [a.replace("{tmp}", str(tmp)) for a in case.before]
    argv += [case.subcommand]
    if text is not None:
        recipe = tmp / "recipe.yaml"
        recipe.write_text(text.replace("{tmp}", str(tmp)), encoding="utf-8", errors="surrogateescape")
        argv += ["--config", str(recipe)]
    argv += GUARD if case.subcommand == "fit" else GUARD[:-1]
    argv += [a.replace("{tmp}", str(tmp)) for a in case.args]
    return argv


def _run_in_process(argv: list[str]) -> tuple[int, str]:
    """``regkit ARGV`` in this process (conftest.regkit_main): its exit code and everything it printed.
    An exception that escapes ``main`` would be a traceback on the user's terminal, so it fails the test."""
    result = regkit_main(*argv)
    return result.returncode, result.stdout + result.stderr


def _last_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    return lines[-1] if lines else ""


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """(files the case may point at, an empty directory the case runs in)."""
    files, work = tmp_path / "files", tmp_path / "work"
    files.mkdir()
    work.mkdir()
    _scratch(files)
    monkeypatch.chdir(work)
    monkeypatch.setenv("WANDB_DIR", str(work))
    monkeypatch.delenv("REGKIT_DEBUG", raising=False)
    monkeypatch.delenv("REGKIT_PLUGINS", raising=False)
    monkeypatch.setattr(sys, "argv", ["regkit"])  # as LightningCLI sees it when run as `regkit`
    return files, work


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_stops_before_the_run(case: Case, scratch: tuple[Path, Path]) -> None:
    files, work = scratch
    if case.recipe is not None and (PLUGIN_RECIPES / case.recipe).is_file():
        require_plugin(case.recipe.split("/")[0])
    argv = _command(case, files)
    this_imported = "this" in sys.modules
    code, output = _run_in_process(argv)
    last = _last_line(output)
    assert code == 2, f"exit code {code}\n{output[-3000:]}"
    assert last.startswith(f"regkit {case.subcommand}: error: "), last  # names the subcommand
    for expected in case.expect:
        assert expected.lower() in last.lower(), f"{expected!r} not in the last line {last!r}\n{output[-3000:]}"
    assert "Traceback" not in output, output[-3000:]
    assert sorted(os.listdir(work)) == [], f"left behind: {sorted(os.listdir(work))}"
    assert ("this" in sys.modules) == this_imported, "a checkpoint's class path was imported"
    assert len([line for line in output.splitlines() if line.strip()]) <= 6, f"too long:\n{output}"


def test_no_usage_dump_but_a_hint(scratch: tuple[Path, Path]) -> None:
    files, _ = scratch
    recipe = files / "r.yaml"
    recipe.write_text((RECIPES / MLP).read_text())
    code, output = _run_in_process(["fit", "--config", str(recipe), "--trainer.max_epocs", "3"])
    lines = [line for line in output.splitlines() if line.strip() and not line.startswith("Seed set")]
    assert code == 2 and len(lines) == 2, output
    assert "--help" in lines[0] and "--trainer.max_epochs" in lines[1], output


def test_real_terminal_output_and_debug_switch(scratch: tuple[Path, Path]) -> None:
    """As a user sees it: a short message on stderr, exit 2, no traceback; REGKIT_DEBUG=1 adds one."""
    files, work = scratch
    recipe = files / "r.yaml"
    config = yaml.safe_load((RECIPES / MLP).read_text())
    config["model"]["init_args"]["network"]["hidden"] = [1024, -1024]
    recipe.write_text(yaml.safe_dump(config))
    result = run_regkit("fit", "--config", str(recipe))
    assert result.returncode == 2, result.stderr[-2000:]
    assert "hidden" in _last_line(result.stderr) and "Traceback" not in result.stderr
    assert os.listdir(work) == []
    ckpt = run_regkit("test", "--config", str(recipe), "--ckpt_path", str(files / "zen.ckpt"),
                      env={"REGKIT_DEBUG": "1"})
    assert ckpt.returncode != 0 and "Beautiful is better than ugly" not in ckpt.stdout + ckpt.stderr
    assert "Traceback" in ckpt.stderr and "this.Zen" in ckpt.stderr
    assert os.listdir(work) == []


# --- a bug is not bad input: it shows its traceback (regkit/cli/error_keys.py says which is which)
FRAGILE_NET = '''
from typing import Any

import torch

import regkit


@regkit.register("network")
class TestOnlyFragileNet(torch.nn.Module):
    """Its width is untyped, so torch checks it; with bug=True its constructor has a bug."""

    def __init__(self, width: Any = 4, bug: bool = False) -> None:
        super().__init__()
        self.layers = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, width), torch.nn.Linear(width, 10))
        if bug:
            self.no_such_attribute

    def forward(self, x):
        return self.layers(x)
'''


@pytest.fixture
def fragile_net(scratch: tuple[Path, Path]) -> Any:
    """``regkit --plugins fragile.py fit`` with the fragile network and ``network.init`` arguments."""
    from regkit import registry

    files, _ = scratch
    plugin = files / "fragile.py"
    plugin.write_text(FRAGILE_NET)

    def command(**network: Any) -> list[str]:
        value = yaml.safe_dump({"name": "test_only_fragile_net", **network}, default_flow_style=True).strip()
        return ["--plugins", str(plugin), "fit", "--config", str(RECIPES / MLP), *GUARD,
                f"--model.init_args.network={value}"]

    yield command
    registry.unregister("network", "test_only_fragile_net")


def test_a_value_a_library_refuses_is_bad_input(fragile_net: Any, scratch: tuple[Path, Path]) -> None:
    """torch's TypeError for the user's value (raised outside regkit) is reported against the key."""
    code, output = _run_in_process(fragile_net(width=2.5))
    assert code == 2, output[-3000:]
    assert "model.init_args.network" in _last_line(output) and "Traceback" not in output, output[-3000:]
    assert os.listdir(scratch[1]) == []


def test_a_constructor_bug_shows_its_traceback(fragile_net: Any, scratch: tuple[Path, Path]) -> None:
    from regkit import cli

    with pytest.raises(AttributeError, match="no_such_attribute"):  # exit 1 with its traceback, not exit 2
        cli.main(fragile_net(bug=True))
    assert os.listdir(scratch[1]) == []


def test_a_type_error_in_regkit_code_is_a_bug_when_built_and_when_parsed(
    scratch: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A TypeError raised in regkit's own code (a wrong call) is a bug, whether a constructor runs
    while the task is built (the network) or while the recipe is parsed (a regularizer's trial build)."""
    import regkit.components.regularizers.base
    import regkit.networks.mlp
    from regkit import cli

    argv = ["fit", "--config", str(RECIPES / MLP), *GUARD]
    with monkeypatch.context() as patch:
        patch.setattr(regkit.networks.mlp, "check", None)  # MLP.__init__ calls check(...)
        with pytest.raises(TypeError, match="not callable"):
            cli.main(argv)
    with monkeypatch.context() as patch:
        patch.setattr(regkit.components.regularizers.base, "check_rate", None)  # Dropout.__init__ calls it
        with pytest.raises(TypeError, match="not callable"):
            cli.main(argv)
    assert os.listdir(scratch[1]) == []


def test_a_bug_in_a_real_process_exits_1_with_its_traceback(fragile_net: Any) -> None:
    result = run_regkit(*fragile_net(bug=True))
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" in result.stderr
    assert _last_line(result.stderr).startswith("AttributeError:") and "no_such_attribute" in result.stderr


def test_what_is_bad_input_and_what_is_a_bug() -> None:
    from regkit.errors import BadInput, is_bad_input, join_key

    def raised(make: Callable[[], Any]) -> BaseException:
        try:
            make()
        except Exception as err:
            return err
        raise AssertionError("nothing raised")

    def wrapped(err: BaseException) -> BaseException:  # as jsonargparse wraps a constructor's error
        try:
            raise ValueError("Problem with given class_path") from err
        except ValueError as outer:
            return outer

    outside_type_error = raised(lambda: torch.nn.Linear(784, 2.5))  # type: ignore[arg-type]
    regkit_type_error = raised(lambda: join_key(1, 2))  # type: ignore[arg-type]
    attribute_error = raised(lambda: torch.nn.Linear(2, 2).no_such_attribute)
    assert is_bad_input(BadInput("must be > 0", "hidden")) and is_bad_input(wrapped(BadInput("x")))
    assert is_bad_input(raised(lambda: float("wide"))) and is_bad_input(wrapped(raised(lambda: open("/no/such/file"))))
    assert is_bad_input(outside_type_error) and is_bad_input(wrapped(outside_type_error))
    assert not is_bad_input(regkit_type_error) and not is_bad_input(wrapped(regkit_type_error))
    assert not is_bad_input(attribute_error) and not is_bad_input(wrapped(attribute_error))
    assert not is_bad_input(raised(lambda: {}["key"])) and not is_bad_input(raised(lambda: [][0]))
    assert is_bad_input(raised(lambda: {}["key"]), parsing=True)  # jsonargparse's unknown option
    assert not is_bad_input(regkit_type_error, parsing=True)


def test_print_config_reports_a_component_that_does_not_resolve(scratch: tuple[Path, Path]) -> None:
    code, output = _run_in_process(["fit", "--config", str(RECIPES / MLP), "--print_config",
                                    "--model.init_args.network.dropout.name", "dropuot"])
    assert code == 2, output[-3000:]
    assert "model.init_args.network.dropout: unknown regularizer 'dropuot'" in _last_line(output), output[-3000:]
    assert "trainer:" not in output  # no recipe printed


def test_a_misspelt_component_or_argument_is_named_with_its_full_key(scratch: tuple[Path, Path]) -> None:
    files, _ = scratch
    for dropout, message in [({"name": "dropuot", "p": 0.5}, "unknown regularizer 'dropuot'; did you mean 'dropout'"),
                             ({"name": "dropout", "rate": 0.5}, "regularizer 'dropout' has no argument 'rate'")]:
        config = yaml.safe_load((RECIPES / MLP).read_text())
        config["model"]["init_args"]["network"]["dropout"] = dropout
        (files / "r.yaml").write_text(yaml.safe_dump(config))
        code, output = _run_in_process(["fit", "--config", str(files / "r.yaml")])
        assert code == 2 and f"model.init_args.network.dropout: {message}" in _last_line(output), output[-3000:]
        assert "Epoch" not in output
