"""Atomic files: each is written beside its final name and renamed into place, so a kill or a
full disk leaves the previous version intact; a failed write is one clear message."""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

from skincls.core.errors import SkinclsError


def file_mode() -> int:
    """Permissions a new file gets from the user's umask (0o644 under the usual 022)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


REASONS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EISDIR: "is a directory, where a file is expected",
    errno.ENOTDIR: "a file is in the way, where a folder is expected",
    errno.EEXIST: "already exists",
    errno.ENAMETOOLONG: "the name is too long for the file system",
}


def os_error_reason(err: OSError) -> str:
    """Why an operation on a path failed, in words."""
    return REASONS.get(err.errno or 0, err.strerror or str(err))


def write_error(path: Path, err: OSError, kept: str = "") -> SkinclsError:
    """A failed write as one clear message (disk full, read-only, permission)."""
    return SkinclsError(
        f"{path}: cannot write: {os_error_reason(err)}" + (f"; {kept}" if kept else "")
    )


def os_error_message(err: OSError) -> str | None:
    """One line for an ``OSError`` on a named path (the path and the reason), or None when it
    names no path."""
    if not err.filename:
        return None
    where = str(err.filename) + (f" -> {err.filename2}" if err.filename2 else "")
    verb = "cannot write: " if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS) else ""
    return f"{where}: {verb}{os_error_reason(err)}"


def remove_quietly(*paths: Path) -> None:
    """Remove leftover temporary files where possible; cleaning up never hides the error that
    made it necessary (a read-only location cannot hold a leftover anyway)."""
    for p in paths:
        with suppress(OSError):
            Path(p).unlink(missing_ok=True)


def atomic_write(
    path: Path, write: Callable[[Path], object], kept: str = "", sync: bool = True
) -> None:
    """Call ``write`` on a temporary name beside ``path`` and rename it into place: all or
    nothing. A failed write (disk full, read-only) removes the temporary file and is one clear
    error; ``kept`` says what is still intact (default: the previous version, if any).
    ``sync=False`` skips the fsync (many small files that a rerun would redo anyway)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}{path.suffix}")
    existed = path.exists()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        if sync:
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as err:
        raise write_error(
            path, err, kept or ("the previous version is intact" if existed else "")
        ) from None
    finally:
        remove_quietly(tmp)  # gone after the rename; a leftover after a failure


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` all or nothing; a failure leaves the previous file intact."""
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str))
