"""Exclusive locks on what a command writes, so two processes never write one output at once.

An ``flock`` on a lock file: the kernel releases it when the process exits, so a killed
command never leaves its output locked. A run directory holds its own ``.lock``
(:class:`skincls.run.rundir.RunLock`); any other output (an ONNX file, a report, a prepare
cache, a folder of overlays) is locked through ``.<name>.lock`` beside it, removed when the
command ends. No-op where ``fcntl`` is missing (Windows).
"""

from __future__ import annotations

import os
import socket
from contextlib import suppress
from pathlib import Path
from typing import Any

from skincls.core.errors import SkinclsError
from skincls.core.fileio import write_error


class FileLock:
    """Hold ``path`` (a lock file) exclusively or refuse at once, naming the holder.

    ``busy`` ends the message a second process gets about ``what`` (default: the lock file's
    folder): what it should do; ``remove`` deletes the
    lock file on release (it is checked after locking that the file locked is still the one at
    ``path``, so a release racing a new start never lets two processes hold it)."""

    def __init__(self, path: Path, busy: str, remove: bool = False, what: Path | None = None):
        self.path, self.busy, self.remove = Path(path), busy, remove
        self.what = what or self.path.parent
        self._fd: int | None = None

    def acquire(self) -> FileLock:
        try:
            import fcntl
        except ImportError:
            return self
        if not self.path.parent.is_dir():
            return self  # nothing written there yet; the command's own checks speak first
        if self.path.is_dir():
            raise SkinclsError(f"{self.path}: is a directory; a lock file belongs there: remove it")
        for _ in range(10):
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = _read(fd) or "another process"
                os.close(fd)
                raise SkinclsError(f"{self.what}: in use by {holder}; {self.busy}") from None
            if _same_file(fd, self.path):
                break
            os.close(fd)  # released and removed by its holder meanwhile: lock the new one
        else:
            raise SkinclsError(f"{self.path}: cannot be locked (it keeps being replaced)")
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"process {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        except OSError as err:
            os.close(fd)
            raise write_error(self.path, err) from None
        self._fd = fd
        return self

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise write_error(self.path, err) from None

    def release(self) -> None:
        if self._fd is None:
            return
        if self.remove:
            with suppress(OSError):
                self.path.unlink()
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> FileLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def output_lock(target: str | Path) -> FileLock:
    """The lock of an output file or folder ``target``: ``.<name>.lock`` beside it."""
    target = Path(target).absolute()
    return FileLock(
        target.with_name(f".{target.name}.lock"),
        "another skincls command is writing it; wait for it to finish or choose another output",
        remove=True,
        what=target,
    )


def _read(fd: int) -> str:
    try:
        return os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    except OSError:
        return ""


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
