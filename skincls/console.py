"""Consoles that print users' text as written.

Paths, labels and messages come from users' files, so rich markup is off everywhere: a label
``[/i]`` or a folder ``scans [left]`` prints as it is. Colour is given with ``style=`` instead.
Tables and progress go to the console they are given; ``stdout`` carries results, ``stderr``
carries progress, warnings and errors (so ``> log.txt`` keeps the results).
"""

from __future__ import annotations

from typing import Any


def make_console(stderr: bool = False, quiet: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, quiet=quiet, markup=False, highlight=False, soft_wrap=stderr)
