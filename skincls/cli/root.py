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
from skincls.cli.common import WordsCommand, set_debug

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


SHORT = {
    "analyze": "Class counts, imbalance and CB weights per region.",
    "prepare": "Crop the AI Hub region boxes once into a cache.",
    "train": "Train one backbone with a head per region.",
    "demo": "The whole pipeline on generated data, in minutes.",
    "sweep": "Hyperparameter search with Optuna.",
    "cv": "Grouped k-fold cross-validation, out-of-fold figures.",
    "evaluate": "Score a run on its test split or other data.",
    "compare": "Is run B better than run A? Paired intervals.",
    "export": "One verified ONNX file for apps.",
    "predict": "Grades and probabilities of new images.",
    "explain": "Grad-CAM overlays: where the model looks.",
    "report": "One self-contained HTML page about a run.",
}
"""Summaries in ``skincls --help`` (short enough not to be cut at 80 columns)."""

regions_app.command("list", cls=WordsCommand)(data_cmds.regions_list)
regions_app.command("validate", cls=WordsCommand)(data_cmds.regions_validate)
for module, name, settings in (
    (data_cmds, "analyze", None),
    (data_cmds, "prepare", None),
    (train_cmds, "train", {"allow_interspersed_args": True}),
    (train_cmds, "demo", None),
    (train_cmds, "sweep", {"allow_extra_args": True, "ignore_unknown_options": True}),
    (train_cmds, "cv", {"allow_extra_args": True, "ignore_unknown_options": True}),
    (serve_cmds, "evaluate", None),
    (serve_cmds, "compare", None),
    (serve_cmds, "export", None),
    (serve_cmds, "predict", None),
    (serve_cmds, "explain", None),
    (serve_cmds, "report", None),
):
    app.command(name, cls=WordsCommand, short_help=SHORT[name], context_settings=settings)(
        getattr(module, name)
    )


def main() -> None:
    app()


if __name__ == "__main__":
    main()
