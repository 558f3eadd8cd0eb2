"""The two lines every benchmark table starts with: the command that reproduces it, and the
machine and versions it ran on."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path


def provenance(script: str, argv: list[str] | None) -> str:
    """``command: ...`` and ``machine: ...`` lines (newline-terminated) for ``script``."""
    import torch

    args = " ".join(argv or sys.argv[1:])
    return (
        f"command: python benchmarks/{Path(script).name} {args}\n"
        f"machine: {platform.machine()}, {os.cpu_count()} cores, python "
        f"{platform.python_version()}, torch {torch.__version__}\n"
    )
