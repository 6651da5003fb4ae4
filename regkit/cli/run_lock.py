"""One process at a time writes a run folder: ``regkit fit`` makes the folder and takes
``<run>/run.lock`` before anything else is written, and holds it until the command ends.

The lock is an ``fcntl.flock`` on that file, so the kernel releases it when its process ends in any
way (a crash, SIGKILL): the file a dead process left behind is simply taken over, never a stale lock
to delete by hand. It holds the process id and host of its holder, for the message a second process
gets (exit 2, naming the folder). Under DDP only the launching process (global rank 0) takes it; the
processes it starts write into the same folder. A folder that cannot be made or written (a
read-only file system, no permission) is the same kind of error: one line naming the folder.
"""
from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import NoReturn, Optional

from regkit.cli.error_report import fail

try:
    import fcntl
except ImportError:  # Windows: no flock; runs are not locked there
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = "run.lock"


def make_run_folder(run_dir: str | Path) -> None:
    """``run_dir`` and its parents, or exit 2 naming the folder when it cannot be made."""
    try:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
    except OSError as err:
        not_writable(run_dir, err)


def not_writable(run_dir: str | Path, err: OSError) -> NoReturn:
    where = f" ({err.filename})" if err.filename and str(err.filename) != str(run_dir) else ""
    fail(f"cannot write the run folder {run_dir}{where}: {err.strerror or err}. Run from a folder you "
         "can write, or give one with --run_dir PATH (or the logger's save_dir)")


class RunLock:
    """The lock of one run folder (see the module's docstring); :meth:`release` ends it early."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self.fd: Optional[int] = None

    def acquire(self) -> "RunLock":
        """Take the lock, or exit 2 naming the folder and the process that holds it."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            not_writable(self.run_dir, err)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
                os.close(fd)
                fail(f"the run folder {self.run_dir} is in use by another regkit run ({holder}, which holds "
                     f"{self.path}); two runs cannot write one folder. Wait for it to end, or start a "
                     "separate run (without --ckpt_path last|auto, or with another --run_dir)")
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
        except OSError as err:
            os.close(fd)
            not_writable(self.run_dir, err)
        self.fd = fd
        return self

    def release(self) -> None:
        """Let another process have the folder (the file stays: removing it would race a new holder)."""
        if self.fd is not None:
            os.close(self.fd)  # closing the last descriptor releases the flock
            self.fd = None
