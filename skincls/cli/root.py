"""The ``skincls`` command line: each command parses options and calls one library function.

Heavy libraries (torch, timm, albumentations, wandb) are imported inside the functions that need
them, so ``skincls --help``, ``regions`` and ``analyze`` start fast.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from skincls.cli import data_cmds, serve_cmds, train_cmds
from skincls.cli.common import (
    set_debug,
)

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

app = typer.Typer(
    name="skincls",
    help="Train and ship per-region facial skin condition classifiers on imbalanced data.\n\n"
    "New here? Start with `skincls demo`.\n\n"
    "Results (tables, JSON, written paths) go to stdout; progress, warnings and errors go to "
    "stderr, so `skincls train ... > log.txt` keeps the results. Every command takes --help.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
regions_app = typer.Typer(
    help="List and validate region definitions.", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(regions_app, name="regions")


def _show_version(value: bool) -> None:
    if value:
        from skincls.core.version import __version__

        sys.stdout.write(f"skincls {__version__}\n")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks for user errors.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version and exit.", callback=_show_version, is_eager=True
        ),
    ] = False,
) -> None:
    """Train and ship per-region facial skin condition classifiers on imbalanced data.

    New here? Start with `skincls demo`: it generates a small graded data set and runs analyze,
    train, evaluate and export on it in a few minutes on CPU.

    Results (tables, JSON, file paths) go to stdout; progress, warnings and errors to stderr,
    so `skincls train ... > log.txt` keeps the results and the terminal keeps the progress.
    """
    set_debug(debug)


regions_app.command("list")(data_cmds.regions_list)
regions_app.command("validate")(data_cmds.regions_validate)
app.command()(data_cmds.analyze)
app.command()(data_cmds.prepare)
app.command(context_settings={"allow_interspersed_args": True})(train_cmds.train)
app.command()(train_cmds.demo)
app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(
    train_cmds.sweep
)
app.command()(serve_cmds.evaluate)
app.command()(serve_cmds.export)
app.command()(serve_cmds.predict)
app.command()(serve_cmds.explain)
app.command()(serve_cmds.report)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
