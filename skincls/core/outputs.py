"""Checks for the files and folders a user names as output: nothing a user made is replaced
without ``--overwrite``, and a wrong kind of path is one clear error before any work starts."""

from __future__ import annotations

from pathlib import Path

from skincls.core.errors import SkinclsError


def check_new_file(path: str | Path, option: str, overwrite: bool = False) -> Path:
    """``path`` may be written: not a directory, its folder exists, and it does not exist yet
    (or ``overwrite``)."""
    path = Path(path)
    if path.is_dir():
        raise SkinclsError(f"{option} {path}: is a directory; give a file name")
    parent = path.parent
    if not parent.is_dir():
        what = "is a file, not a folder" if parent.exists() else "does not exist"
        raise SkinclsError(f"{option} {path}: the folder {parent} {what}")
    if path.exists() and not overwrite:
        raise SkinclsError(f"{option} {path}: exists; pass --overwrite to replace it")
    check_writable(parent, f"{option} {path}")
    return path


def check_dir(path: str | Path, option: str) -> Path:
    """``path`` is a directory or can be made one (no file in the way)."""
    path = Path(path)
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                where = "" if p == path else f" ({p} is a file)"
                raise SkinclsError(f"{option} {path}: expected a directory, found a file{where}")
            check_writable(p, f"{option} {path}")
            break
    return path


def check_writable(folder: str | Path, what: str) -> None:
    """A file can be created in ``folder`` (read-only file system, permissions): checked by
    creating and removing an empty one, before any work is done."""
    import tempfile

    from skincls.core.fileio import os_error_reason

    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".skincls-probe-"):
            pass
    except OSError as err:
        raise SkinclsError(f"{what}: cannot write in {folder}: {os_error_reason(err)}") from None


def check_targets(paths: list[Path], option: str, overwrite: bool = False) -> None:
    """None of the files a command would write into its output folder exists (or ``overwrite``)."""
    existing = [p for p in paths if p.exists()]
    if existing and not overwrite:
        names = ", ".join(str(p) for p in existing[:3]) + (" ..." if len(existing) > 3 else "")
        raise SkinclsError(
            f"{option}: {len(existing)} file(s) exist ({names}); pass --overwrite to replace them"
        )
