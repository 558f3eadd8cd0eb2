"""What every command module shares: the option types, the consoles, and the wrapper that turns
a user mistake into one line on stderr and a non-zero exit (a traceback with ``--debug``)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from skincls.cli.options import choice_enum
from skincls.core.errors import SkinclsError
from skincls.core.names import SOURCES

_debug = {"on": False}


def set_debug(on: bool) -> None:
    """``--debug``: let :func:`user_errors` re-raise, so a user error shows its traceback."""
    _debug["on"] = on


def stderr_console():
    from skincls.core.console import make_console

    return make_console(stderr=True)


def stdout_console():
    from skincls.core.console import make_console

    return make_console()


@contextmanager
def user_errors(*writes: Path | None) -> Iterator[None]:
    """Turn a user mistake into one message on stderr and a non-zero exit, without a traceback.
    ``writes``: the outputs the command writes (None: not asked for), each locked
    (:func:`skincls.core.locks.output_lock`) from the command's checks to its last write, so
    a second command writing the same output at once is refused."""
    from contextlib import ExitStack

    from skincls.core.locks import output_lock

    try:
        with ExitStack() as held:
            for target in writes:
                if target is not None:
                    held.enter_context(output_lock(target))
            yield
    except SkinclsError as err:
        if _debug["on"]:
            raise
        console = stderr_console()
        lines = str(err).splitlines() or [type(err).__name__]
        for line in lines:
            print_error(console, line)
        raise typer.Exit(err.exit_code) from None
    except OSError as err:
        from skincls.core.fileio import os_error_message

        message = os_error_message(err)
        if _debug["on"] or message is None:
            raise
        print_error(stderr_console(), message)
        raise typer.Exit(SkinclsError.exit_code) from None


def print_error(console: Any, message: str, label: str = "error:", style: str = "red") -> None:
    from rich.text import Text

    console.print(Text.assemble((label, style), " ", message))


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


Source = Enum("Source", {name: name for name in SOURCES}, type=str)  # type: ignore[misc]
"""The ``--source`` choices (:data:`skincls.core.names.SOURCES`)."""


RegionsDirOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--regions-dir", help="Extra directory of region YAML files (repeatable).", metavar="DIR"
    ),
]
RegionOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--region",
        help="Region to use (repeatable); default: every region with data.",
        metavar="NAME",
    ),
]
SourceOpt = Annotated[Source, typer.Option("--source", help="Data source type.")]
GroupOpt = Annotated[
    str | None,
    typer.Option("--group-column", help="CSV column that groups samples (subject, lesion)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print only JSON to stdout.")]
SkipBadOpt = Annotated[
    bool, typer.Option("--skip-bad", help="Skip and count bad records instead of stopping.")
]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed.")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace output files that exist.")]


DeviceChoice: Any = choice_enum("device")
