"""Consoles that print users' text as written.

Paths, labels and messages come from users' files, so rich markup is off everywhere: a label
``[/i]`` or a folder ``scans [left]`` prints as it is. Colour is given with ``style=`` instead.
Tables and progress go to the console they are given; ``stdout`` carries results, ``stderr``
carries progress, warnings and errors (so ``> log.txt`` keeps the results).
"""

from __future__ import annotations

from typing import Any

PIPE_WIDTH = 160
"""Width of tables written to a pipe or file (a terminal's own width is used otherwise), so a
redirected table never cuts or wraps a region name or an option."""


def make_console(stderr: bool = False, quiet: bool = False) -> Any:
    import os
    import sys

    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None
    if not (hasattr(stream, "isatty") and stream.isatty()) and "COLUMNS" not in os.environ:
        width = PIPE_WIDTH
    return Console(
        stderr=stderr, quiet=quiet, markup=False, highlight=False, soft_wrap=True, width=width
    )
