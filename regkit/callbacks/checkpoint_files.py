"""Checkpoint files that a crash or a full disk cannot leave half-written, and the check that tells
a complete checkpoint from a broken one.

Every checkpoint a ``regkit`` run writes goes through :class:`SameFolderCheckpointIO`, Lightning's
CheckpointIO plugin that the CLI installs unless the recipe gives its own (``trainer.plugins``):
the bytes go to a hidden file beside the checkpoint (``.last.ckpt.<host>.<pid>.partial``), are
flushed and fsync'd, then ``os.replace`` gives the file its name and the folder is fsync'd. A
reader sees the previous complete file or the new complete one, never part of one, and nothing is
written to /tmp (so a run folder on another filesystem than /tmp is no different). A full disk
(ENOSPC, EFBIG) removes the hidden file and ends the run with :class:`DiskFull` (exit 2), the
previous checkpoint intact. The hidden files of a killed save are removed when the next run in
that folder starts (:func:`remove_partial_saves`); no ``*.ckpt`` glob matches them meanwhile.

:func:`problem` says why a file is not a complete checkpoint (zip CRCs, a memory-mapped
``torch.load(weights_only=True)`` and the keys); :func:`newest_complete` is what ``--ckpt_path
last|auto`` resumes from (regkit/cli/run_folder.py).
"""
from __future__ import annotations

import errno
import io
import os
import re
import shutil
import socket
import zipfile
from pathlib import Path
from typing import Any, Optional

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from regkit.errors import RegkitError, describe

PARTIAL = re.compile(r"\.(?P<name>.+)\.(?P<host>[^.]*)\.(?P<pid>\d+)\.partial")
# What Lightning needs to continue training from a checkpoint (a weights-only one lacks the last two).
RESUMABLE_KEYS = ("state_dict", "epoch", "global_step", "optimizer_states", "loops")
DISK_FULL = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)


class DiskFull(RegkitError):
    """A checkpoint did not fit on its disk (or under the process's file size limit)."""


def host() -> str:
    return socket.gethostname().replace(".", "_") or "host"


def partial_path(path: Path) -> Path:
    """The hidden file a save of ``path`` writes first: same folder, a name no ``*.ckpt`` matches."""
    return path.with_name(f".{path.name}.{host()}.{os.getpid()}.partial")


def fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX; a no-op where folders cannot be opened)."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def size_text(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"  # pragma: no cover


def disk_full(err: OSError, path: Path, size: int) -> DiskFull:
    """The message of a save that did not fit: the folder, its free space, what was kept."""
    folder = path.parent
    free = size_text(shutil.disk_usage(folder).free)
    why = ("the file size limit of this process (ulimit -f) is below it" if err.errno == errno.EFBIG
           else "no space left on device")
    kept = sorted(p.name for p in folder.glob("*.ckpt"))
    return DiskFull(
        f"checkpoint {path} ({size_text(size)}) not saved: {why}; {folder} has {free} free. The run "
        f"stopped; {'the checkpoints there are intact: ' + ', '.join(kept) if kept else 'no checkpoint was written'}. "
        "Free space (or pick another --run_dir / --checkpoint.dirpath), then continue with --ckpt_path last",
    )


def write_durably(path: Path, data: Any) -> None:
    """Write ``data`` (bytes, or a readable binary file) to ``path`` through its partial file:
    written, flushed, fsync'd, renamed onto ``path``, folder fsync'd. Raises :class:`DiskFull`."""
    temporary = partial_path(path)
    written = 0
    try:
        with open(temporary, "wb") as file:
            if isinstance(data, (bytes, bytearray, memoryview)):
                file.write(data)
                written = len(data)
            else:
                while chunk := data.read(1 << 24):
                    written += file.write(chunk)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except OSError as err:
        temporary.unlink(missing_ok=True)
        if err.errno in DISK_FULL:
            size = len(data) if isinstance(data, (bytes, bytearray, memoryview)) else max(written, os.fstat(data.fileno()).st_size)
            raise disk_full(err, path, size) from None
        raise
    fsync_folder(path.parent)


def copy_durably(source: str | Path, target: str | Path) -> None:
    """``shutil.copyfile`` that cannot leave part of a file under ``target`` (see :func:`write_durably`)."""
    with open(source, "rb") as file:
        write_durably(Path(target), file)


def replace_durably(source: str | Path, target: str | Path) -> None:
    """``os.replace`` whose result survives a power loss (the folder is fsync'd)."""
    os.replace(source, target)
    fsync_folder(Path(target).parent)


class SameFolderCheckpointIO(TorchCheckpointIO):
    """Lightning's torch checkpoint files, written atomically in their own folder (see the module
    docstring). Remote paths (``s3://`` and other fsspec URLs) are Lightning's own saves."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Optional[Any] = None) -> None:
        if storage_options is not None or "://" in str(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()  # serialized first (as Lightning does): no file exists until the bytes do
        torch.save(checkpoint, buffer)
        write_durably(target, buffer.getbuffer())

    def remove_checkpoint(self, path: Any) -> None:
        super().remove_checkpoint(path)
        if "://" not in str(path) and Path(path).parent.is_dir():
            fsync_folder(Path(path).parent)


def with_checkpoint_io(plugins: Any, strategy: Any = None) -> list[Any]:
    """The Trainer's ``plugins`` with :class:`SameFolderCheckpointIO` added, unless one of them is a
    CheckpointIO already (the user's own way of writing checkpoints is kept) or the strategy is
    XLA's (its tensors are saved by its own CheckpointIO)."""
    from lightning.pytorch.plugins.io import CheckpointIO

    given = [] if plugins is None else list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
    strategy_name = strategy if isinstance(strategy, str) else type(strategy).__name__
    if any(isinstance(plugin, CheckpointIO) for plugin in given) or "xla" in strategy_name.lower():
        return given
    return [*given, SameFolderCheckpointIO()]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_partial_saves(folder: str | Path) -> list[Path]:
    """Remove the partial files that killed saves of processes on this host left in ``folder``
    (those of live processes and of other hosts stay); the files removed."""
    removed: list[Path] = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = PARTIAL.fullmatch(entry.name)
        if match and match["host"] == host() and not alive(int(match["pid"])):
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def load_as_data(path: str | Path) -> Any:
    """``torch.load`` of a checkpoint as plain data (``weights_only``), memory-mapped where its format
    allows, so that checking one does not read its tensors into memory."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # an old (non-zip) checkpoint cannot be memory-mapped
        return torch.load(path, map_location="cpu", weights_only=True)


def problem(path: str | Path, resumable: bool = True) -> Optional[str]:
    """Why ``path`` is not a complete Lightning checkpoint (``resumable``: one that training can
    continue from), or None. Reads the file once (zip CRCs) and maps its tensors without loading them."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as file:
            magic = file.read(4)
    except OSError as err:
        return f"cannot be read ({err.strerror})"
    if size == 0:
        return "is empty (0 bytes)"
    if magic.startswith(b"PK"):  # torch's zip format: every record has a CRC
        try:
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
            return f"is truncated or damaged ({size_text(size)}: {describe(err)})"
        if bad is not None:
            return f"is damaged (record {bad} fails its CRC check)"
    elif not magic.startswith(b"\x80"):  # nor the pickle of torch's old format
        return f"is not a PyTorch checkpoint file ({size_text(size)} that start with neither a zip nor a pickle header)"
    try:
        ckpt = load_as_data(path)
    except Exception as err:
        return f"does not load as a PyTorch checkpoint ({describe(err).split('. ')[0][:200]})"
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        return "is not a Lightning checkpoint (no state_dict)"
    missing = [key for key in (RESUMABLE_KEYS if resumable else ()) if key not in ckpt]
    if missing:
        return f"cannot resume training (it has no {', '.join(missing)}: a weights-only checkpoint)"
    return None


def newest_complete(folder: str | Path, resumable: bool = True) -> tuple[Optional[Path], list[tuple[Path, str]]]:
    """The checkpoint of ``folder`` to continue from: ``last.ckpt`` when it is complete, else the
    newest complete ``*.ckpt``; and the broken ones passed over, with :func:`problem`'s reason."""
    def order(p: Path) -> tuple[bool, int]:
        try:
            return p.name != "last.ckpt", -p.stat().st_mtime_ns
        except OSError:
            return True, 0

    broken: list[tuple[Path, str]] = []
    for candidate in sorted((p for p in Path(folder).glob("*.ckpt") if p.is_file()), key=order):
        why = problem(candidate, resumable)
        if why is None:
            return candidate, broken
        broken.append((candidate, why))
    return None, broken
