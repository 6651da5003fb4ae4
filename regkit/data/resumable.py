"""Data loading Lightning can save and restore mid-epoch (no torchdata needed): a shuffle that
depends only on the seed and the epoch, and a DataLoader that remembers how far it got."""
from __future__ import annotations

from typing import Any, Iterator, Optional, Sized

import torch
from torch.utils.data import DataLoader, RandomSampler


class EpochShuffle(RandomSampler):
    """A random permutation per epoch, drawn from ``seed + epoch`` alone (like ``DistributedSampler``
    on one process). Lightning calls ``set_epoch`` before every epoch; under DDP it replaces this
    sampler by a ``DistributedSampler`` with shuffling (it is a ``RandomSampler``)."""

    def __init__(self, data_source: Sized, seed: int = 0) -> None:
        super().__init__(data_source)
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        yield from torch.randperm(len(self.data_source), generator=generator).tolist()


class ResumableDataLoader(DataLoader):
    """``torch.utils.data.DataLoader`` with ``state_dict`` / ``load_state_dict``, which Lightning
    saves in every checkpoint and restores on resume: the state is the epoch and the number of
    batches taken from it. Restored in the same epoch, the next iteration skips the batches already
    trained on (loaded and dropped: cheap for in-memory data); in a later epoch it starts afresh.
    Exact when the order of an epoch depends only on the epoch (:class:`EpochShuffle`, sequential
    data, ``DistributedSampler``). ``set_epoch`` is called by
    :class:`regkit.callbacks.resume.ExactResume` when a training epoch starts.

    Args: as ``DataLoader``; ``generator`` (the workers' base seed) defaults to seed 0.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("generator") is None:
            kwargs["generator"] = torch.Generator().manual_seed(0)
        super().__init__(*args, **kwargs)
        self.epoch = 0
        self.taken = 0
        self.trained: Optional[int] = None
        self.resume_from: Optional[dict[str, int]] = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def finish_epoch(self) -> None:
        """The epoch's last batch was trained on: the state is now "the next epoch, from its start"."""
        self.epoch, self.trained = self.epoch + 1, 0

    def state_dict(self) -> dict[str, int]:
        # ``trained`` (batches trained on, set by ExactResume after each batch) rather than the
        # batches handed out: Lightning fetches one batch ahead from a loader without a length.
        return {"epoch": self.epoch, "taken": self.taken if self.trained is None else self.trained}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        # Lightning resumes mid-epoch without announcing the epoch again; a new epoch it announces
        # (set_epoch) before the first batch, and then nothing is skipped.
        self.resume_from = dict(state_dict)
        self.epoch = state_dict["epoch"]

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        return self._batches(super().__iter__())

    def _batches(self, iterator: Iterator[Any]) -> Iterator[Any]:
        # Runs from the first next(): Lightning creates the iterator before it announces the epoch.
        skip = 0
        if self.resume_from is not None and self.resume_from["epoch"] == self.epoch:
            skip = self.resume_from["taken"]
        self.resume_from = None
        self.taken, self.trained = 0, None
        for batch in iterator:
            self.taken += 1
            if self.taken > skip:
                yield batch
