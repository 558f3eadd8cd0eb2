"""What every command module shares: the option types, the consoles, and the wrapper that turns
a user mistake into one line on stderr and a non-zero exit (a traceback with ``--debug``)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperArgument, TyperCommand

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
BootstrapOpt = Annotated[
    int,
    typer.Option(
        "--bootstrap",
        min=0,
        metavar="N",
        help="Resamples of subjects/lesions for the 95% intervals (0: no intervals).",
    ),
]
ByOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--by",
        metavar="FIELD",
        help="Figures by subgroup of a field (repeatable): AI Hub device, angle, gender, age, "
        "age_band, skin_type, sensitive; a CSV manifest's columns.",
    ),
]
AgeBandsOpt = Annotated[
    str | None,
    typer.Option(
        "--age-bands",
        metavar="AGES",
        help="Lower edges of the age bands of --by age_band, e.g. 20,30,45 (default: decades).",
    ),
]
MinSubgroupOpt = Annotated[
    int,
    typer.Option("--min-subgroup", min=1, help="Labels under which a subgroup is marked small."),
]
BootstrapSeedOpt = Annotated[
    int, typer.Option("--bootstrap-seed", help="Random seed of the bootstrap resamples.")
]


DeviceChoice: Any = choice_enum("device")


class WordsCommand(TyperCommand):
    """A command whose help names values in words (``--batch-size N``, ``MODEL PATH``,
    ``INPUTS PATH...``) instead of Typer's types (``<int range>``, ``<list[Path]>``); choices
    are still listed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            word = _type_word(param)
            if isinstance(param, TyperArgument):
                param.metavar = param.metavar or param.name.upper()  # type: ignore[union-attr]
                shown = "" if word in (None, "TEXT") else str(word)
                text = shown + ("..." if param.nargs != 1 and shown else "")
                param.display_type_rich = partial(_fixed, text or None)  # type: ignore[method-assign]
            elif param.metavar is None and word is not None:
                param.metavar = word


def _fixed(text: str | None, ctx: Any) -> str | None:
    return text


def _type_word(param: Any) -> str | None:
    """The word a value of ``param`` is shown as; None for choices and flags."""
    from pathlib import PurePath
    from typing import get_args, get_origin

    desc = getattr(param, "type_descriptor", None)
    if desc is None or getattr(param, "is_flag", False) or desc.is_choice:
        return None
    kind = desc.annotation
    if get_origin(kind) is list:
        kind = (get_args(kind) or (str,))[0]
    if desc.is_path or (isinstance(kind, type) and issubclass(kind, PurePath)):
        return "PATH"
    if kind is bool:
        return None
    if kind is int:
        return "N"
    if kind is float:
        return "X"
    return "TEXT"
