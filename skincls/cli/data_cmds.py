"""Commands on data and region definitions: ``regions list|validate``, ``analyze``, ``prepare``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from skincls.cli.common import (
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
    stderr_console,
    stdout_console,
    user_errors,
)
from skincls.core.errors import SkinclsError
from skincls.core.outputs import check_dir, check_new_file


def regions_list(
    regions_dir: RegionsDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The region definitions found and where each came from."""
    from skincls.data.regions import discover_regions

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


def regions_validate(
    paths: Annotated[list[Path], typer.Argument(help="Region YAML files or directories.")],
) -> None:
    """Validate region files; print every error with file and field; exit 1 if any."""
    from skincls.data.regions import validate_files

    problems = validate_files(paths)
    if problems:
        console = stderr_console()
        for p in problems:
            print_error(console, p)
        raise typer.Exit(1)
    count = sum(len(_yaml_files(p)) if p.is_dir() else 1 for p in paths)
    stdout_console().print(f"ok: {count} region file(s) valid")


def _yaml_files(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file()]


def analyze(
    data: Annotated[Path, typer.Argument(help="Data: CSV manifest, image folder or AI Hub tree.")],
    regions_dir: RegionsDirOpt = None,
    region: RegionOpt = None,
    source: SourceOpt = Source("auto"),
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
    from skincls.data import analyze as lib

    with user_errors(plot):
        if plot:
            check_new_file(plot, "--plot", overwrite)
            if plot.suffix.lower() not in (".png", ".pdf", ".svg"):
                raise SkinclsError(
                    f"--plot {plot}: expected a file name ending in .png, .pdf or .svg"
                )
        from skincls.data.sources import ReadOptions

        for name, value in (("--val-fraction", val_fraction), ("--test-fraction", test_fraction)):
            if not 0 <= value < 1:
                raise SkinclsError(f"{name}: expected a share from 0 to below 1, got {value}")
        if split and val_fraction + test_fraction >= 1:
            raise SkinclsError(
                f"--val-fraction {val_fraction} + --test-fraction {test_fraction}: must add up "
                "to less than 1 (the rest is the training share)"
            )
        fractions = (1 - val_fraction - test_fraction, val_fraction, test_fraction)
        summary = lib.analyze(
            data,
            regions_dir or [],
            region or [],
            ReadOptions(source.value, group_column, skip_bad),
            beta,
            fractions if split else None,
            seed,
        )
        keys = lib.plot(summary, plot) if plot else {}
    if as_json:
        print_json(summary)
    else:
        lib.render(summary, stdout_console())
        if plot:
            stdout_console().print(f"plot written to {plot}")
            for name, key in keys.items():
                stdout_console().print(f"  {name}: classes are numbered in the plot ({key})")


def prepare(
    data: Annotated[Path, typer.Argument(help="AI Hub data root (Training/Validation).")],
    out: Annotated[Path, typer.Option("--output", "-o", "--out", help="Cache directory to write.")],
    regions_dir: RegionsDirOpt = None,
    region: RegionOpt = None,
    max_side: Annotated[
        int, typer.Option(min=16, help="Longest side of each crop in pixels.")
    ] = 512,
    workers: Annotated[
        int, typer.Option(min=0, help="Worker processes (0: one per core, up to 8).")
    ] = 0,
    quality: Annotated[int, typer.Option(min=1, max=100, help="JPEG quality of the crops.")] = 95,
    skip_bad: SkipBadOpt = False,
    overwrite: OverwriteOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Crop every AI Hub region box once into a cache of small images plus a manifest."""
    from skincls.data.prepare import PrepareOptions
    from skincls.data.prepare import prepare as run_prepare

    with user_errors(out):
        check_dir(out, "--output")
        options = PrepareOptions(
            regions_dir or [],
            region or [],
            max_side,
            workers or None,
            quality,
            skip_bad,
            progress=not as_json,
            overwrite=overwrite,
        )
        result = run_prepare(data, out, options)
    if as_json:
        print_json(result)
    else:
        console = stdout_console()
        console.print(
            f"{result['written']} crops written, {result['reused']} already done, "
            f"{result['failed']} failed; manifest: {result['manifest']}"
        )
        for reason, n in result["skipped"].items():
            first = result["skipped_examples"].get(reason, [""])[0]
            console.print(f"skipped {n}: {reason}" + (f" (first: {first})" if first else ""))
