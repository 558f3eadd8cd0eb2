"""Atomic files: each is written beside its final name and renamed into place, so a kill or a
full disk leaves the previous version intact; a failed write is one clear message."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from skincls.core.errors import SkinclsError


def file_mode() -> int:
    """Permissions a new file gets from the user's umask (0o644 under the usual 022)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def write_error(path: Path, err: OSError, kept: str = "") -> SkinclsError:
    """A failed write as one clear message (disk full, read-only, permission)."""
    import errno

    reason = {
        errno.ENOSPC: "the disk is full",
        errno.EDQUOT: "the disk quota is exceeded",
        errno.EROFS: "the file system is read-only",
        errno.EACCES: "permission denied",
    }.get(err.errno or 0, err.strerror or str(err))
    return SkinclsError(f"{path}: cannot write: {reason}" + (f"; {kept}" if kept else ""))


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` all or nothing; a failure leaves the previous file intact."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise write_error(path, err, "the previous version is intact") from None


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str))
