"""The ``skincls`` command line: each command parses options and calls one library function.

Heavy libraries (torch, timm, albumentations, wandb) are imported inside the functions that need
them, so ``skincls --help``, ``regions`` and ``analyze`` start fast.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from skincls.cli_common import (
    GroupOpt,
    JsonOpt,
    OverwriteOpt,
    RegionOpt,
    RegionsDirOpt,
    SeedOpt,
    SkipBadOpt,
    Source,
    SourceOpt,
    print_error,
    print_json,
    set_debug,
    stderr_console,
    stdout_console,
    user_errors,
)
from skincls.cli_options import (
    clean_train_params,
    parse_train_args,
    with_train_options,
)
from skincls.errors import SkinclsError
from skincls.outputs import check_dir, check_new_file

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

app = typer.Typer(
    name="skincls",
    help="Train and ship per-region facial skin condition classifiers on imbalanced data.\n\n"
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
        from skincls import __version__

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

    Results (tables, JSON, file paths) go to stdout; progress, warnings and errors to stderr,
    so `skincls train ... > log.txt` keeps the results and the terminal keeps the progress.
    """
    set_debug(debug)


@regions_app.command("list")
def regions_list(
    regions_dir: RegionsDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The region definitions found and where each came from."""
    from skincls.regions import discover_regions

    with user_errors():
        registry = discover_regions(regions_dir or [])
    rows: list[dict[str, Any]] = [
        {
            "name": r.spec.name,
            "title": r.spec.title,
            "classes": r.spec.classes,
            "ordinal": r.spec.ordinal,
            "label_map": r.spec.label_map,
            "sources": [s.model_dump(exclude_none=True) for s in r.spec.sources],
            "origin": r.origin,
        }
        for r in registry.items()
    ]
    if as_json:
        print_json({"regions": rows})
        return
    from rich.table import Table

    table = Table(title=f"{len(rows)} regions")
    table.add_column("name", no_wrap=True, min_width=max((len(r["name"]) for r in rows), default=4))
    for col in ("classes", "sources", "origin"):
        table.add_column(col, overflow="fold")
    for r in rows:
        sources = ", ".join(
            f"{s.get('facepart', '*')}:{s['key']}" + (" (mirrored)" if s.get("mirror") else "")
            for s in r["sources"]
        )
        table.add_row(r["name"], " ".join(r["classes"]), sources or "-", r["origin"])
    stdout_console().print(table)


@regions_app.command("validate")
def regions_validate(
    paths: Annotated[list[Path], typer.Argument(help="Region YAML files or directories.")],
) -> None:
    """Validate region files; print every error with file and field; exit 1 if any."""
    from skincls.regions import validate_files

    problems = validate_files(paths)
    if problems:
        console = stderr_console()
        for p in problems:
            print_error(console, p)
        raise typer.Exit(1)
    stdout_console().print(f"ok: {len(paths)} path(s) valid")


@app.command()
def analyze(
    data: Annotated[Path, typer.Argument(help="Data: CSV manifest, image folder or AI Hub tree.")],
    regions_dir: RegionsDirOpt = None,
    region: RegionOpt = None,
    source: SourceOpt = Source.auto,
    group_column: GroupOpt = None,
    beta: Annotated[float, typer.Option(help="Beta of the class-balanced weights.")] = 0.999,
    split: Annotated[bool, typer.Option("--split", help="Show train/val/test counts.")] = False,
    val_fraction: Annotated[float, typer.Option(help="Validation share for --split.")] = 0.15,
    test_fraction: Annotated[float, typer.Option(help="Test share for --split.")] = 0.15,
    seed: SeedOpt = 0,
    skip_bad: SkipBadOpt = False,
    as_json: JsonOpt = False,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Write a bar chart (.png, .pdf or .svg).")
    ] = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Class distribution per region: counts, shares, imbalance ratio, CB weights."""
    from skincls import analyze as lib

    with user_errors():
        if plot:
            check_new_file(plot, "--plot", overwrite)
            if plot.suffix.lower() not in (".png", ".pdf", ".svg"):
                raise SkinclsError(
                    f"--plot {plot}: expected a file name ending in .png, .pdf or .svg"
                )
        summary = lib.analyze(
            data,
            regions_dir or [],
            region or [],
            source.value,
            group_column,
            beta,
            split,
            (1 - val_fraction - test_fraction, val_fraction, test_fraction),
            seed,
            skip_bad,
        )
    if plot:
        lib.plot(summary, plot)
    if as_json:
        print_json(summary)
    else:
        lib.render(summary, stdout_console())
        if plot:
            stdout_console().print(f"plot written to {plot}")


@app.command()
def prepare(
    data: Annotated[Path, typer.Argument(help="AI Hub data root (Training/Validation).")],
    out: Annotated[Path, typer.Option("--output", "-o", "--out", help="Cache directory to write.")],
    regions_dir: RegionsDirOpt = None,
    region: RegionOpt = None,
    max_side: Annotated[int, typer.Option(help="Longest side of each crop in pixels.")] = 512,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 0,
    quality: Annotated[int, typer.Option(help="JPEG quality of the crops.")] = 95,
    skip_bad: SkipBadOpt = False,
    overwrite: OverwriteOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Crop every AI Hub region box once into a cache of small images plus a manifest."""
    from skincls.prepare import prepare as run_prepare

    with user_errors():
        check_dir(out, "--output")
        result = run_prepare(
            data,
            out,
            regions_dir or [],
            region or [],
            max_side,
            workers or None,
            quality,
            skip_bad,
            progress=not as_json,
            overwrite=overwrite,
        )
    if as_json:
        print_json(result)
    else:
        stdout_console().print(
            f"{result['written']} crops written, {result['reused']} already done, "
            f"{result['failed']} failed; manifest: {result['manifest']}"
        )


@app.command(context_settings={"allow_interspersed_args": True})
@with_train_options
def train(**given: Any) -> None:
    """Train the shared backbone and one head per region; writes a run directory."""
    from skincls.train import train_from_options

    with user_errors():
        options = clean_train_params(given)
        config = given.get("config")
        result = train_from_options(options, str(config) if config else None)
    console = stdout_console()
    for line in result.next_steps():
        console.print(line)


@app.command()
def demo(
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Directory for data and runs.")
    ] = Path("skincls-demo"),
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 12,
    backbone: Annotated[str, typer.Option(help="timm backbone.")] = "resnet10t",
    image_size: Annotated[int, typer.Option(help="Input size.")] = 64,
    workers: Annotated[int, typer.Option(help="Data loader processes.")] = 2,
    seed: SeedOpt = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace an earlier demo in OUTPUT.")] = False,
) -> None:
    """The whole pipeline on a generated data set, on CPU, in a few minutes."""
    from skincls.demo import run_demo

    with user_errors():
        run_demo(output, epochs, backbone, image_size, workers, seed, overwrite, stdout_console())


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def sweep(
    ctx: typer.Context,
    data: Annotated[str, typer.Argument(help="Training data, as for skincls train.")],
    trials: Annotated[int, typer.Option(help="Total finished trials the study should reach.")] = 20,
    config: Annotated[
        Optional[Path],
        typer.Option(
            "--config",
            "--space",
            help="Sweep YAML: parameters (search space), fixed (train options).",
        ),
    ] = None,
    storage: Annotated[
        Optional[str], typer.Option(help="Optuna storage URL (default: sqlite in --output).")
    ] = None,
    study: Annotated[str, typer.Option("--study", help="Study name.")] = "skincls",
    timeout: Annotated[
        Optional[float], typer.Option(help="Stop starting trials after this many seconds.")
    ] = None,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Sweep directory (study, trial runs).")
    ] = Path("sweeps/skincls"),
    wandb_config: Annotated[
        Optional[Path],
        typer.Option("--wandb-config", help="Write an equivalent wandb sweep YAML and exit."),
    ] = None,
    overwrite: OverwriteOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Hyperparameter search (Optuna TPE + pruning); any skincls train option fixes that option.

    Every `skincls train` option is accepted here as written for train (see `skincls train
    --help`) and fixes that option in every trial, for example:
    `skincls sweep DATA --trials 20 --backbone resnet10t --epochs 8 --select macro_f1`.
    A trial overrides only the searched parameters (lr, dropout, weight decay, ... or those of
    --config). Progress is printed per trial; the study resumes when run again.
    """
    from skincls.sweep import load_space, render_sweep, run_sweep, write_wandb_config

    with user_errors():
        space = load_space(config)
        fixed = parse_train_args(ctx, [data, *ctx.args])
        base = {**space.fixed, **fixed}
        if wandb_config:
            check_new_file(wandb_config, "--wandb-config", overwrite)
            write_wandb_config(wandb_config, [data, *ctx.args], space, base)
            stdout_console().print(
                f"wrote {wandb_config}; start it with: wandb sweep {wandb_config}"
            )
            return
        base.setdefault("quiet", True)
        check_dir(output, "--output")
        err = stderr_console()
        result = run_sweep(
            base,
            output,
            trials,
            space,
            storage,
            study,
            timeout,
            base.get("seed", 0),
            progress=lambda line: err.print(line),
        )
    if as_json:
        print_json(result)
    else:
        render_sweep(result, stdout_console())


from skincls import cli_deploy  # noqa: E402,F401  (registers evaluate, export, predict, explain)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
