"""Parts that disagree stop before the run (issue #25).

Each value of these recipes is valid alone; the combination is not (a network sized for other
images than the data's, fewer classes than labels, a vocabulary that is not the data's, a batch
larger than the training split). Each case must do what tests/test_bad_input.py asks of bad input:
exit 2, the last line naming the model's key and the data's value, no traceback, nothing written.
Today's main trained on, crashed mid-run, or failed only after the run folder was written.

Also here: every recipe's defaults pass the same checks (none is refused), and the batch-norm bug of
a training set whose size leaves a last batch of one.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch
import yaml

from conftest import RECIPES, ROOT, require_package
from test_bad_input import Case, _command, _last_line, _run_in_process, scratch  # noqa: F401  (a fixture)

MLP, BN, LM, ATT, GAN, CNN = ("mlp_dropout.yaml", "mlp_batchnorm_dropout.yaml", "lstm_ptb_standard.yaml",
                              "attention_dropout.yaml", "gan.yaml", "cnn_spatial_dropout.yaml")
NET = "model.init_args.network"
DATA = "data.init_args"
SMALL = {f"{NET}.hidden": [32]}  # a case that wrongly trains stays quick
FOREIGN_LINEAR = {"class_path": "torch.nn.Linear", "init_args": {"in_features": 100, "out_features": 10}}
DDP = ["--trainer.accelerator=cpu", "--trainer.strategy=ddp", "--trainer.devices=4"]

CASES = [
    # --- network versus images ----------------------------------------------------------------
    Case("cnn-image-size-32", CNN, {f"{NET}.image_size": 32},
         expect=(f"{NET}.image_size", "32", "MNISTDataModule", "28x28", "image_size: 28")),
    Case("cnn-image-size-2", CNN, {f"{NET}.image_size": 2}, expect=(f"{NET}.image_size", "2", "28x28")),
    Case("cnn-in-channels-3", CNN, {f"{NET}.in_channels": 3},
         expect=(f"{NET}.in_channels", "is 3", "1-channel 28x28")),
    Case("mlp-in-features", MLP, {**SMALL, f"{NET}.in_features": 100},
         expect=(f"{NET}.in_features", "100", "in_features: 784")),
    Case("att-max-len-10", ATT, {f"{NET}.max_len": 10}, expect=(f"{NET}.max_len", "10", "28x28", "max_len: 28")),
    Case("att-in-features-14", ATT, {f"{NET}.in_features": 14}, expect=(f"{NET}.in_features", "14", "28x28")),
    Case("gan-generator-32", GAN, {"model.init_args.generator.image_size": 32},
         expect=("model.init_args.generator.image_size", "32", "28x28")),
    Case("gan-discriminator-32", GAN, {"model.init_args.discriminator.image_size": 32},
         expect=("model.init_args.discriminator.image_size", "32", "28x28")),
    Case("gan-generator-channels", GAN, {"model.init_args.generator.channels": 3},
         expect=("model.init_args.generator.channels", "3", "1-channel")),
    Case("foreign-network-input", MLP, {NET: FOREIGN_LINEAR}, expect=(NET, "MNISTDataModule", "100")),
    # --- outputs versus labels and vocabulary -------------------------------------------------------
    Case("num-classes-below-labels", MLP, {**SMALL, "model.init_args.num_classes": 5},
         expect=("model.init_args.num_classes", "5", "10 classes")),
    Case("out-features-below-labels", MLP, {**SMALL, f"{NET}.out_features": 5},
         expect=(f"{NET}.out_features", "5", "10 classes")),
    Case("foreign-network-outputs", MLP, {NET: {"class_path": "torch.nn.Flatten", "init_args": {"start_dim": 2}}},
         expect=(NET, "shape", "(N, classes)")),
    Case("lm-vocab-100", LM, {f"{NET}.vocab_size": 100},
         expect=(f"{NET}.vocab_size", "100", "PTBDataModule", "10000 word types")),
    # --- batch size and processes versus the splits ---------------------------------------------
    Case("batch-size-over-train", MLP, {**SMALL, f"{DATA}.limit_train": 100},
         expect=(f"{DATA}.batch_size", "128", "limit_train is 100")),
    Case("lm-batch-size-over-train", LM, {f"{DATA}.limit_train_tokens": 30},
         expect=(f"{DATA}.batch_size", "20", "30 tokens")),
    Case("lm-eval-batch-over-valid", LM, {f"{DATA}.eval_batch_size": 50000},
         expect=(f"{DATA}.eval_batch_size", "50000", "valid")),
    Case("lm-ddp-shards", LM, {f"{DATA}.limit_train_tokens": 120}, args=DDP,
         expect=(f"{DATA}.batch_size", "4 processes")),
    Case("mnist-ddp-more-processes", MLP, {**SMALL, f"{DATA}.limit_train": 3, f"{DATA}.batch_size": 1}, args=DDP,
         expect=(f"{DATA}.limit_train", "4 processes")),
    # --- a learning rate the weights' dtype cannot hold: SGD fails at the first step, Adam makes inf
    Case("lr-overflows-sgd", MLP, {**SMALL, "model.init_args.optimizer.init_args.lr": 1e308},
         expect=("model.init_args.optimizer.init_args.lr", "1e+308", "float32")),
    Case("lr-overflows-adamw", ATT, {"model.init_args.optimizer.init_args.lr": 1e39},
         expect=("model.init_args.optimizer.init_args.lr", "1e+39", "float32")),
    Case("lr-overflows-float16", MLP, {**SMALL, "model.init_args.optimizer.init_args.lr": 1e5,
                                       "trainer.precision": "16-true"},
         expect=("model.init_args.optimizer.init_args.lr", "float16", "16-true")),
    Case("batch-norm-batch-of-one", BN, {f"{NET}.hidden": [32, 32], f"{DATA}.batch_size": 1},
         expect=(NET, "batch of one", "batch_size: 1", "more than 1 value")),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_parts_that_disagree_stop_before_the_run(case: Case, scratch: tuple[Path, Path]) -> None:  # noqa: F811
    files, work = scratch
    code, output = _run_in_process(_command(case, files))
    last = _last_line(output)
    assert code == 2, f"exit code {code}\n{output[-3000:]}"
    for expected in case.expect:
        assert expected.lower() in last.lower(), f"{expected!r} not in the last line {last!r}\n{output[-3000:]}"
    assert "Traceback" not in output, output[-3000:]
    assert sorted(os.listdir(work)) == [], f"left behind: {sorted(os.listdir(work))}"


def _recipe_parts(recipe: Path) -> tuple[object, object, object]:
    """The task, data module and trainer a recipe builds with its defaults, without running it."""
    from regkit.cli.lightning import RegkitCLI

    cli = RegkitCLI(args=["--config", str(recipe)], run=False)
    return cli.model, cli.datamodule, cli.trainer


ALL_RECIPES = sorted(RECIPES.glob("*.yaml")) + sorted((ROOT / "plugins").glob("*/recipes/*.yaml"))
NEEDS = {"hf_vit_dropout.yaml": "transformers", "timm_resnet_dropblock.yaml": "timm"}


@pytest.mark.parametrize("recipe", ALL_RECIPES, ids=[p.name for p in ALL_RECIPES])
def test_every_recipe_passes_the_check(recipe: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The check is exact: no recipe as shipped is refused (fit, on the devices it names)."""
    from regkit.cli.lightning import check_parts_agree

    if recipe.name in NEEDS:
        require_package(NEEDS[recipe.name])
    if recipe.parent.name == "recipes" and recipe.parent.parent.parent.name == "plugins":
        from conftest import require_plugin

        require_plugin(recipe.parent.parent.name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["regkit"])
    config = yaml.safe_load(recipe.read_text())
    if "Fashion" in str(config.get("data", {}).get("class_path", "")) and not Path(
            "/usr/share/datasets/fashion-mnist").is_dir():
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    model, datamodule, trainer = _recipe_parts(recipe)
    before = {k: v.clone() for k, v in model.state_dict().items()}  # type: ignore[attr-defined]
    state = torch.random.get_rng_state()
    check_parts_agree(model, datamodule, trainer, "fit")  # raises BadInput if refused
    after = model.state_dict()  # type: ignore[attr-defined]
    assert all(torch.equal(before[k], after[k]) for k in before), "the dry forward changed the model"
    assert torch.equal(state, torch.random.get_rng_state()), "the dry forward drew random numbers"


# ---------------------------------------------------------------- a last training batch of one
@pytest.mark.parametrize("limit, batches, last", [(129, 1, 128), (130, 2, 2), (128, 1, 128), (257, 2, 128)])
def test_a_last_training_batch_of_one_is_left_out(limit: int, batches: int, last: int) -> None:
    """Batch norm cannot train on one example: an epoch that would end on a batch of one ends a
    batch earlier (a different example left out each epoch); any other last batch is kept."""
    from regkit.data.mnist import MNISTDataModule

    dm = MNISTDataModule(batch_size=128, val_size=1000, limit_train=limit)
    dm.setup("fit")
    sizes = [len(y) for _, y in dm.train_dataloader()]
    assert len(sizes) == batches and sizes[-1] == last, sizes
    assert dm.smallest_train_batch() == min(sizes)


def test_last_batch_of_one_per_process_under_ddp() -> None:
    """Under DDP each of W processes gets ceil(N / W) examples: the rule applies to that count."""
    from regkit.data.mnist import MNISTDataModule

    dm = MNISTDataModule(batch_size=128, val_size=1000, limit_train=258)
    assert dm.drops_last_train_batch(world_size=2) and not dm.drops_last_train_batch(world_size=1)
    assert dm.smallest_train_batch(world_size=2) == 128 and dm.smallest_train_batch(world_size=1) == 2


def test_batch_norm_trains_when_the_data_leaves_a_batch_of_one(scratch: tuple[Path, Path]) -> None:  # noqa: F811
    """The red-team case: ``limit_train 129`` with batch 128 crashed mid-epoch ("Expected more than 1
    value per channel when training"); now two epochs of one full batch each train and test."""
    files, work = scratch
    argv = ["fit", "--config", str(RECIPES / BN), "--model.init_args.network.hidden", "[16, 16]",
            "--data.init_args.limit_train", "129", "--data.init_args.val_size", "1000", "--trainer.max_epochs", "2",
            "--trainer.limit_val_batches", "1", "--trainer.limit_test_batches", "1", "--test_after_fit", "true",
            "--trainer.enable_progress_bar", "false", "--trainer.log_every_n_steps", "1"]
    code, output = _run_in_process(argv)
    assert code == 0, output[-3000:]
    csv = next(work.rglob("metrics.csv")).read_text().splitlines()
    steps = {line.split(",")[csv[0].split(",").index("step")] for line in csv[1:]}
    assert "Traceback" not in output and max(int(s) for s in steps if s) <= 2, (csv, output[-2000:])


# ---------------------------------------------------------------- memory
@pytest.mark.parametrize("optimizer, states", [
    (lambda w: torch.optim.SGD(w, lr=0.1), 0), (lambda w: torch.optim.SGD(w, lr=0.1, momentum=0.9), 1),
    (lambda w: torch.optim.Adam(w), 2), (lambda w: torch.optim.AdamW(w, amsgrad=True), 3)])
def test_optimizer_states_per_weight_are_counted(optimizer, states: int) -> None:
    from regkit.cli.memory import states_per_weight

    assert states_per_weight(optimizer([torch.nn.Parameter(torch.zeros(3))])) == states


def test_a_network_too_large_for_the_memory_limit_stops_before_the_run(tmp_path: Path) -> None:
    """An MLP of 0.7 GiB of weights under an address-space limit 1.25 GiB above what torch and
    Lightning take: training needs 2.2 GiB (weights, gradients, SGD momentum). Today's main builds
    it, starts the run folder and dies of a MemoryError; now exit 2 with the estimate, nothing written."""
    import resource
    import subprocess

    # what a fresh process takes once torch, Lightning and regkit's CLI are imported (not this pytest
    # process, whose size depends on the tests that ran before: inductor's, say)
    probe = ("import pathlib, lightning, torch, regkit.cli.lightning; print(next(int(l.split()[1]) * 1024 for l in "
             "pathlib.Path('/proc/self/status').read_text().splitlines() if l.startswith('VmSize:')))")
    size = int(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                              timeout=300).stdout.split()[-1])
    limit = size + int(1.25 * 2**30)

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    command = [sys.executable, "-m", "regkit.cli", "fit", "--config", str(RECIPES / MLP),
               "--model.init_args.network.hidden", "[250000]", "--trainer.max_steps", "1"]
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path)}
    result = subprocess.run(command, cwd=tmp_path, env=env, preexec_fn=limited, capture_output=True, text=True,
                            timeout=300)
    last = _last_line(result.stderr)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "model" in last and "GiB" in last and "ulimit -v" in last, last
    assert "Traceback" not in result.stderr and os.listdir(tmp_path) == [], result.stderr[-3000:]


def test_a_plain_trainer_gets_the_same_check_at_setup(tmp_path: Path) -> None:
    """Without regkit's CLI: ``Trainer.fit`` stops in the task's ``setup`` hook, before a step."""
    import lightning as L

    from regkit.data.mnist import MNISTDataModule
    from regkit.errors import BadInput
    from regkit.tasks import Classifier

    model = Classifier({"name": "small_cnn", "image_size": 32, "channels": [4]})
    trainer = L.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path)
    with pytest.raises(BadInput, match="image_size.*28x28") as raised:
        trainer.fit(model, MNISTDataModule(batch_size=8, val_size=100, limit_train=64))
    assert raised.value.key == "model.init_args.network.image_size" and trainer.global_step == 0
