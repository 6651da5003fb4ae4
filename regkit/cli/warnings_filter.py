"""The warnings and notices that only an upstream release can remove, silenced each by its message
AND the module that emits it (so the same text from anywhere else still shows); ``regkit`` installs
them before a run. Everything regkit itself caused is fixed at the source instead, and
tests/test_recipe_warnings.py runs every recipe and fails on any warning not handled here."""
from __future__ import annotations

import logging
import warnings

# (message regex, category, module regex, why only upstream can fix it)
UPSTREAM_WARNINGS: list[tuple[str, type[Warning], str, str]] = [
    (
        r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        FutureWarning,
        r"lightning\.pytorch\.utilities\._pytree",
        "Lightning 2.6's own pytree helper uses LeafSpec, deprecated by torch 2.13",
    ),
    (
        r"The '\w+' does not have many workers which may be a bottleneck",
        Warning,
        r"lightning\.pytorch\.trainer\.connectors\.data_connector",
        "shown on machines with more than 2 cores; regkit's data modules hold their tensors in "
        "memory, where loader workers add start-up cost and nothing else (num_workers stays settable)",
    ),
    (
        r"Your `IterableDataset` has `__len__` defined",
        Warning,
        r"lightning\.pytorch\.utilities\.data",
        "Lightning warns about every iterable dataset with a length, for the case of several loader "
        "workers; regkit's PTB windows are iterable (so Lightning inserts no DistributedSampler: each "
        "process reads its own slice in order) and read without workers, and the exact length is what "
        "lets Lightning resume at an epoch boundary and show a total",
    ),
]

# Informational notices Lightning logs (not warnings): (logger name, message start, text in it).
UPSTREAM_NOTICES: list[tuple[str, str, str]] = [
    ("lightning.pytorch.utilities.rank_zero", "💡 Tip:", "litlogger"),  # an advertisement
    ("lightning.pytorch.utilities.rank_zero", "💡 Tip:", "litmodels"),
]


class _DropNotices(logging.Filter):
    def __init__(self, notices: list[tuple[str, str]]) -> None:
        super().__init__()
        self.notices = notices

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(message.startswith(start) and text in message for start, text in self.notices)


_installed = False


def install() -> None:
    """Add the filters above (once per process)."""
    global _installed
    if _installed:
        return
    _installed = True
    for message, category, module, _why in UPSTREAM_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)
    by_logger: dict[str, list[tuple[str, str]]] = {}
    for name, start, text in UPSTREAM_NOTICES:
        by_logger.setdefault(name, []).append((start, text))
    for name, notices in by_logger.items():
        logging.getLogger(name).addFilter(_DropNotices(notices))
