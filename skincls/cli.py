"""The ``skincls`` command line: each command parses options and calls one library function.

Heavy libraries (torch, timm, albumentations, wandb) are imported inside the functions that need
them, so ``skincls --help``, ``regions`` and ``analyze`` start fast.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

app = typer.Typer(
    name="skincls",
    help="Train and ship per-region facial skin condition classifiers on imbalanced data.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
regions_app = typer.Typer(help="List and validate region definitions.", no_args_is_help=True)
app.add_typer(regions_app, name="regions")

_DEBUG = False


@app.callback()
def _root(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks for user errors.")
    ] = False,
) -> None:
    global _DEBUG
    _DEBUG = debug


def _stderr():
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def _stdout():
    from rich.console import Console

    return Console(highlight=False)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn a user mistake into one message on stderr and a non-zero exit, without a traceback."""
    from skincls.errors import SkinclsError

    try:
        yield
    except SkinclsError as err:
        if _DEBUG:
            raise
        console = _stderr()
        lines = str(err).splitlines() or [type(err).__name__]
        console.print(f"[red]error:[/red] {lines[0]}", markup=True)
        for line in lines[1:]:
            console.print(f"[red]error:[/red] {line}", markup=True)
        raise typer.Exit(err.exit_code) from None


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


class Source(str, Enum):
    auto = "auto"
    aihub = "aihub"
    folder = "folder"
    csv = "csv"


RegionsDirOpt = Annotated[
    list[Path] | None,
    typer.Option("--regions-dir", help="Extra directory of region YAML files (repeatable)."),
]
RegionOpt = Annotated[
    list[str] | None,
    typer.Option("--region", help="Region to use (repeatable); default: every region with data."),
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


@regions_app.command("list")
def regions_list(
    regions_dir: RegionsDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The region definitions found and where each came from."""
    from skincls.regions import discover_regions

    with user_errors():
        registry = discover_regions(regions_dir or [])
    rows = [
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
        _print_json({"regions": rows})
        return
    from rich.table import Table

    table = Table(title=f"{len(rows)} regions")
    for col in ("name", "classes", "sources", "origin"):
        table.add_column(col)
    for r in rows:
        sources = ", ".join(
            f"{s.get('facepart', '*')}:{s['key']}" + (" (mirrored)" if s.get("mirror") else "")
            for s in r["sources"]
        )
        table.add_row(r["name"], " ".join(r["classes"]), sources or "-", r["origin"])
    _stdout().print(table)


@regions_app.command("validate")
def regions_validate(
    paths: Annotated[list[Path], typer.Argument(help="Region YAML files or directories.")],
) -> None:
    """Validate region files; print every error with file and field; exit 1 if any."""
    from skincls.regions import validate_files

    problems = validate_files(paths)
    if problems:
        console = _stderr()
        for p in problems:
            console.print(f"[red]error:[/red] {p}")
        raise typer.Exit(1)
    _stdout().print(f"ok: {len(paths)} path(s) valid")


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
    plot: Annotated[Path | None, typer.Option("--plot", help="Write a bar chart PNG.")] = None,
) -> None:
    """Class distribution per region: counts, shares, imbalance ratio, CB weights."""
    from skincls import analyze as lib

    with user_errors():
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
        _print_json(summary)
    else:
        lib.render(summary, _stdout())
        if plot:
            _stdout().print(f"plot written to {plot}")


@app.command()
def prepare(
    data: Annotated[Path, typer.Argument(help="AI Hub data root (Training/Validation).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Cache directory to write.")],
    regions_dir: RegionsDirOpt = None,
    region: RegionOpt = None,
    max_side: Annotated[int, typer.Option(help="Longest side of each crop in pixels.")] = 512,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 0,
    quality: Annotated[int, typer.Option(help="JPEG quality of the crops.")] = 95,
    skip_bad: SkipBadOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Crop every AI Hub region box once into a cache of small images plus a manifest."""
    from skincls.prepare import prepare as run_prepare

    with user_errors():
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
        )
    if as_json:
        _print_json(result)
    else:
        _stdout().print(
            f"{result['written']} crops written, {result['reused']} already done, "
            f"{result['failed']} failed; manifest: {result['manifest']}"
        )


def main() -> None:
    app()


if __name__ == "__main__":
    main()
