"""Penn Treebank data, the LanguageModel task and the sequence recipes."""
from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
import yaml

from regkit.data.ptb import EOS, BPTTWindows, PTBDataModule, batchify, load_corpus, shard
from regkit.tasks import LanguageModel
from regkit.errors import BadInput

try:
    from conftest import RECIPES, regkit_main
except ImportError:  # pragma: no cover
    from tests.conftest import RECIPES, regkit_main


def test_offline_ptb_is_the_mikolov_split() -> None:
    vocab, streams = load_corpus()
    assert len(vocab) == 10000 and EOS in vocab.stoi and "<unk>" in vocab.stoi
    assert {k: v.numel() for k, v in streams.items()} == {"train": 929589, "valid": 73760, "test": 82430}
    assert vocab.decode(streams["valid"][:3]) == ["consumers", "may", "want"]


def _write_ptb(directory: Path, which: tuple[str, ...] = ("train", "valid", "test")) -> None:
    texts = {"train": " the cat sat \n the dog sat \n", "valid": " the cat \n", "test": " the dog \n"}
    for split in which:
        (directory / f"ptb.{split}.txt").write_text(texts[split])


def test_data_dir_is_read_and_windows_shift_by_one(tmp_path: Path) -> None:
    _write_ptb(tmp_path)
    dm = PTBDataModule(data_dir=str(tmp_path), batch_size=2, eval_batch_size=1, bptt=2)
    dm.setup("fit")
    assert dm.vocab_size == 5  # the cat sat <eos> dog
    assert dm.vocab.decode(dm.streams["train"].flatten()) == "the cat sat <eos> the dog sat <eos>".split()
    windows = list(dm.train_dataloader())
    assert len(windows) == dm.train_dataloader().dataset.num_windows == 2  # 4 columns -> 3 targets -> 2 windows
    x, y = windows[0]
    assert x.shape == (2, 2)
    torch.testing.assert_close(x[:, 1], y[:, 0])
    x2, _ = windows[1]
    torch.testing.assert_close(y[:, -1], x2[:, 0])  # the next window continues each row
    # a word the training text lacks is an error when the vocabulary has no <unk>
    (tmp_path / "ptb.test.txt").write_text(" a dog \n")
    load_corpus.cache_clear()
    with pytest.raises(ValueError, match="test text has the word 'a'"):
        PTBDataModule(data_dir=str(tmp_path)).setup("test")


def test_missing_files_are_named(tmp_path: Path) -> None:
    _write_ptb(tmp_path, which=("train",))
    with pytest.raises(BadInput) as err:  # found when the data module is built, before any run starts
        PTBDataModule(data_dir=str(tmp_path))
    assert "ptb.valid.txt" in str(err.value) and "ptb.test.txt" in str(err.value)
    assert "lacks ptb.train.txt" not in str(err.value)


def test_ranks_get_disjoint_equal_slices() -> None:
    stream = torch.arange(103)
    parts = [shard(stream, r, 3) for r in range(3)]
    assert all(p.numel() == 34 for p in parts)
    assert torch.equal(torch.cat(parts), stream[:102])
    dms = []
    for rank in range(2):
        dm = PTBDataModule(batch_size=4, limit_train_tokens=1000)
        dm.trainer = SimpleNamespace(global_rank=rank, world_size=2)  # what a DDP trainer tells each process
        dm.setup("fit")
        dms.append(dm)
    a, b = (set(dm.streams["train"].flatten().tolist()) for dm in dms)
    _, streams = load_corpus()
    assert torch.equal(dms[0].streams["train"].flatten(), streams["train"][:500])
    assert torch.equal(dms[1].streams["train"].flatten(), streams["train"][500:1000])
    assert dms[0].train_dataloader().dataset.num_windows == dms[1].train_dataloader().dataset.num_windows  # same step count: no DDP hang


def test_batchify_rows_are_contiguous() -> None:
    data = batchify(torch.arange(10), 3)
    assert data.tolist() == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    assert BPTTWindows(data, 5).num_windows == len(list(BPTTWindows(data, 5))) == 1


def _tiny_model(**kw: object) -> LanguageModel:
    network = {
        "name": "rnn_lm", "embedding_dim": 64, "hidden_size": 64, "num_layers": 1, "tie_weights": True,
        "input_dropout": {"name": "variational_dropout", "p": 0.2},
        "weight_drop": {"name": "weight_drop", "p": 0.2},
    }
    return LanguageModel(
        network=network, optimizer=lambda p: torch.optim.Adam(p, lr=0.01),
        penalties=[{"name": "ar", "strength": 1.0}, {"name": "tar", "strength": 1.0}], **kw,
    )


def _trainer(**kw: object) -> L.Trainer:
    return L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, accelerator="cpu", **kw)


def test_short_ptb_run_perplexity_falls() -> None:
    L.seed_everything(0)
    dm = PTBDataModule(batch_size=16, eval_batch_size=16, bptt=20, limit_train_tokens=16 * 20 * 50)
    model = _tiny_model(mc_samples=2)
    before = _trainer(limit_val_batches=8).validate(model, dm, verbose=False)[0]["val/ppl"]
    _trainer(max_epochs=1, limit_val_batches=8, gradient_clip_val=0.25).fit(model, dm)
    assert model._state["train"][0].requires_grad is False  # carried state is detached
    after = _trainer(limit_val_batches=8).validate(model, dm, verbose=False)[0]["val/ppl"]
    assert before > 5000  # untrained: close to uniform over 10k words
    assert after < 0.15 * before, (before, after)
    test = _trainer(limit_test_batches=4).test(model, dm, verbose=False)[0]
    assert math.isfinite(test["test/mc_ppl"]) and abs(math.log(test["test/mc_ppl"] / test["test/ppl"])) < 0.3


def test_predict_scores_every_test_token_and_agrees_with_test_perplexity() -> None:
    """predict's per-token nll, in corpus order, averages to the perplexity test reports."""
    L.seed_everything(0)
    dm = PTBDataModule(batch_size=4, eval_batch_size=4, bptt=10, limit_train_tokens=400)
    model = _tiny_model(mc_samples=2)
    test = _trainer(limit_test_batches=5).test(model, dm, verbose=False)[0]
    (out,) = [_trainer(limit_predict_batches=5).predict(model, dm)]
    targets = torch.cat([o["targets"] for o in out])
    nll = torch.cat([o["nll"] for o in out])
    assert targets.shape == nll.shape == (50, 4)  # (tokens per stream, streams)
    assert torch.equal(targets.T.flatten(), dm.streams["test"][:, 1:51].flatten())  # corpus order
    assert math.isclose(nll.mean().exp().item(), test["test/ppl"], rel_tol=1e-4)
    mc_nll = torch.cat([o["mc_nll"] for o in out])
    assert (mc_nll > 0).all() and not torch.equal(mc_nll, nll)


def test_vocab_mismatch_is_reported(tmp_path: Path) -> None:
    _write_ptb(tmp_path)
    dm = PTBDataModule(data_dir=str(tmp_path), batch_size=2, eval_batch_size=1, bptt=2)
    with pytest.raises(ValueError, match="vocab_size: 5"):
        _trainer(fast_dev_run=True).fit(_tiny_model(), dm)


SMALL = ["lstm_ptb_variational.yaml", "lstm_ptb_standard.yaml", "gru_ptb_variational.yaml"]
MEDIUM = ["lstm_ptb_variational_medium.yaml", "lstm_ptb_standard_medium.yaml"]


@pytest.mark.parametrize(
    "recipe", SMALL + [pytest.param(r, marks=pytest.mark.slow) for r in MEDIUM]
)
def test_recipe_fast_dev_run(recipe: str) -> None:
    result = regkit_main("fit", "--config", str(RECIPES / recipe), "--trainer.fast_dev_run", "true",
                         "--trainer.logger", "false")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "test/ppl" in result.stdout  # test_after_fit ran


@pytest.mark.parametrize("recipe", MEDIUM)
def test_medium_recipes_take_the_papers_sgd_step_for_a_per_token_mean_loss(recipe: str) -> None:
    """Zaremba's and Gal's SGD (lr 1, gradient norm clipped at 5) is on the loss summed over the bptt
    steps and averaged over the batch; regkit's loss is the per-token mean, so the recipe's lr and
    clip must give the same parameter update, clipped or not."""
    config = yaml.safe_load((RECIPES / recipe).read_text())
    bptt = config["data"]["init_args"]["bptt"]
    lr = config["model"]["init_args"]["optimizer"]["init_args"]["lr"]
    clip = config["trainer"]["gradient_clip_val"]
    torch.manual_seed(0)
    for scale in (1e-4, 1.0):  # a gradient below the clipping norm, and one far above it
        mean_loss_grad = scale * torch.randn(1000)
        steps = []
        for grad, rate, max_norm in ((mean_loss_grad * bptt, 1.0, 5.0), (mean_loss_grad, lr, clip)):
            weight = torch.nn.Parameter(torch.zeros(1000))
            weight.grad = grad.clone()
            torch.nn.utils.clip_grad_norm_([weight], max_norm)
            torch.optim.SGD([weight], lr=rate).step()
            steps.append(weight.detach())
        torch.testing.assert_close(steps[1], steps[0], rtol=1e-4, atol=1e-12)
