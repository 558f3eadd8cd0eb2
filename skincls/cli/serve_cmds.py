"""``skincls evaluate``, ``export``, ``predict`` and ``explain``: the commands that use a trained
run. Registered on the app of :mod:`skincls.cli.root`; each parses options and calls one function."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from skincls.cli.common import (
    AgeBandsOpt,
    BootstrapOpt,
    BootstrapSeedOpt,
    ByOpt,
    DeviceChoice,
    GroupOpt,
    JsonOpt,
    MinSubgroupOpt,
    OverwriteOpt,
    RegionOpt,
    SkipBadOpt,
    Source,
    SourceOpt,
    print_error,
    print_json,
    stderr_console,
    stdout_console,
    user_errors,
)
from skincls.core.names import BOOTSTRAP_RESAMPLES, MIN_SUBGROUP
from skincls.core.outputs import check_dir, check_new_file
from skincls.run.artifacts import ONNX, REPORT


class Checkpoint(str, Enum):
    best = "best"
    last = "last"


CHECKPOINT_NAMES = {"best": "served checkpoint best/", "last": "last/, uncalibrated"}
CHECKPOINTS = (
    "best: the served weights, calibrated (the epoch --serve-epoch chose); last: the last "
    "epoch's raw weights, uncalibrated."
)


class Split(str, Enum):
    auto = "auto"
    all = "all"
    train = "train"
    val = "val"
    test = "test"


class Quantize(str, Enum):
    none = "none"
    int8 = "int8"
    fp16 = "fp16"


class Rule(str, Enum):
    selected = "selected"
    argmax = "argmax"


RuleOpt = Annotated[
    Rule,
    typer.Option(
        help="Decision rule: selected (the prior correction chosen on validation for the run's "
        "selection metric) or argmax (the most probable class: the highest plain accuracy)."
    ),
]
TargetPriorOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--target-prior",
        help="The deployment's class mix for a region: REGION=p1,p2,... (one share per class) "
        "or a JSON/YAML file {region: [shares] or {class: share}}; repeatable.",
        metavar="SPEC",
    ),
]


class Exporter(str, Enum):
    dynamo = "dynamo"
    torchscript = "torchscript"


EvalBatchOpt = Annotated[
    int | None, typer.Option(min=1, help="Batch size (default: the run's own).")
]
WorkersOpt = Annotated[int, typer.Option(min=0, help="Data loader processes.")]
DeviceOpt = Annotated[DeviceChoice, typer.Option(help="Where to run.")]


def evaluate(
    run: Annotated[Path, typer.Argument(help="Run directory.")],
    data: Annotated[Path | None, typer.Argument(help="Data (default: the run's data).")] = None,
    split: Annotated[
        Split, typer.Option(help="Part to score; auto: test on the run's data, else all.")
    ] = Split.auto,
    checkpoint: Annotated[
        Checkpoint, typer.Option(help=f"Checkpoint to score: {CHECKPOINTS}")
    ] = Checkpoint.best,
    region: RegionOpt = None,
    source: SourceOpt = Source("auto"),
    group_column: GroupOpt = None,
    batch_size: EvalBatchOpt = None,
    workers: WorkersOpt = 0,
    device: DeviceOpt = DeviceChoice("auto"),
    skip_bad: SkipBadOpt = False,
    rule: RuleOpt = Rule.selected,
    target_prior: TargetPriorOpt = None,
    reliability: Annotated[
        Path | None,
        typer.Option(help="Folder for a reliability diagram PNG per head.", metavar="DIR"),
    ] = None,
    report: Annotated[
        Path | None, typer.Option("--report", help="Also write an HTML report of this scoring.")
    ] = None,
    overwrite: OverwriteOpt = False,
    bootstrap: BootstrapOpt = BOOTSTRAP_RESAMPLES,
    bootstrap_seed: BootstrapSeedOpt = 0,
    by: ByOpt = None,
    age_bands: AgeBandsOpt = None,
    min_subgroup: MinSubgroupOpt = MIN_SUBGROUP,
    as_json: JsonOpt = False,
) -> None:
    """Accuracy, balanced accuracy, macro F1, QWK, grade MAE, per-class figures and
    calibration (ECE, Brier, NLL) per region, each figure with a 95% interval from a bootstrap
    over subjects (or lesions), not images."""
    from skincls.core.bootstrap import Bootstrap
    from skincls.serving import evaluate as lib
    from skincls.serving.subgroups import SubgroupOptions, parse_ages

    with user_errors(report, reliability):
        if report:
            check_new_file(report, "--report", overwrite)
        selection = lib.Selection(split.value, region or [], source.value, group_column, skip_bad)
        options = lib.EvalOptions(
            selection,
            checkpoint.value,
            rule.value,
            target_prior or [],
            batch_size,
            workers,
            device.value,
            reliability,
            overwrite,
            Bootstrap(bootstrap, bootstrap_seed),
            SubgroupOptions(by or [], parse_ages(age_bands), min_subgroup),
        )
        result = lib.evaluate(run, data, options)
        if report:
            from skincls.serving.report import Sections, build_report

            parts = Sections(by=by or [])
            written = build_report(
                run, report, data, split.value, checkpoint.value, overwrite, parts
            )
            stderr_console().print(f"report: {written['path']}")
    _say_undecodable(result.get("undecodable_reasons") or {})
    if as_json:
        print_json(result)
        return
    from skincls.core.console import print_eval, print_per_class

    console = stdout_console()
    print_eval(
        console,
        f"{run} ({CHECKPOINT_NAMES[checkpoint.value]}, epoch {result['epoch']}) on split "
        f"{result['split']}",
        result,
    )
    print_per_class(console, result)
    for path in result.get("reliability_files", []):
        console.print(f"reliability diagram: {path}")


def compare(
    run_a: Annotated[Path, typer.Argument(help="Run A (the reference).")],
    run_b: Annotated[Path, typer.Argument(help="Run B (the candidate).")],
    data: Annotated[
        Path | None, typer.Argument(help="Data (default: run A's; its test split).")
    ] = None,
    split: Annotated[
        Split, typer.Option(help="Part to score; auto: A's test split on A's data, else all.")
    ] = Split.auto,
    checkpoint: Annotated[
        Checkpoint, typer.Option(help=f"Checkpoint of each run: {CHECKPOINTS}")
    ] = Checkpoint.best,
    region: RegionOpt = None,
    source: SourceOpt = Source("auto"),
    group_column: GroupOpt = None,
    batch_size: EvalBatchOpt = None,
    workers: WorkersOpt = 0,
    device: DeviceOpt = DeviceChoice("auto"),
    skip_bad: SkipBadOpt = False,
    bootstrap: BootstrapOpt = BOOTSTRAP_RESAMPLES,
    bootstrap_seed: BootstrapSeedOpt = 0,
    as_json: JsonOpt = False,
) -> None:
    """Is B better than A? Both score the same samples; each figure's difference B - A with a
    paired bootstrap interval over subjects and a p-value, and one verdict line."""
    from skincls.core.bootstrap import Bootstrap
    from skincls.serving.compare import CompareOptions
    from skincls.serving.compare import compare as run_compare
    from skincls.serving.evaluate import Selection

    with user_errors():
        selection = Selection(split.value, region or [], source.value, group_column, skip_bad)
        options = CompareOptions(
            selection,
            checkpoint.value,
            Bootstrap(bootstrap, bootstrap_seed),
            batch_size,
            workers,
            device.value,
        )
        result = run_compare(run_a, run_b, data, options)
    if as_json:
        print_json(result)
        return
    from skincls.core.console import print_comparison

    print_comparison(stdout_console(), result)


def _say_undecodable(reasons: dict[str, str], shown: int = 3) -> None:
    """On stderr: how many images gave no pixels, by reason, and the first few."""
    if not reasons:
        return
    from skincls.data.images import unreadable_summary

    err = stderr_console()
    err.print(f"skipped {unreadable_summary(reasons)}; the figures leave them out", style="yellow")
    for path, why in list(reasons.items())[:shown]:
        err.print(f"  {path}: {why}")
    if len(reasons) > shown:
        err.print(f"  ... and {len(reasons) - shown} more (all in --json: undecodable_reasons)")


def export(
    run: Annotated[Path, typer.Argument(help="Run directory.")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="ONNX file (default RUN/model.onnx).")
    ] = None,
    region: RegionOpt = None,
    opset: Annotated[int, typer.Option(help="ONNX opset.")] = 18,
    checkpoint: Annotated[
        Checkpoint, typer.Option(help=f"Checkpoint to export: {CHECKPOINTS}")
    ] = Checkpoint.best,
    quantize: Annotated[
        Quantize,
        typer.Option(help="int8: static, calibrated on the run's or --data images."),
    ] = Quantize.none,
    exporter: Annotated[
        Exporter, typer.Option(help="dynamo (torch.export) or torchscript.")
    ] = Exporter.dynamo,
    data: Annotated[
        Path | None, typer.Option("--data", help="Also verify on real images of this data.")
    ] = None,
    rule: RuleOpt = Rule.selected,
    target_prior: TargetPriorOpt = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing file.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """One self-contained ONNX file, verified against PyTorch with onnxruntime; the decision
    rule is baked into its <region>_decision outputs."""
    from skincls.serving.export import ExportOptions, export_onnx

    with user_errors(output or run / ONNX):
        options = ExportOptions(
            region or [],
            opset,
            checkpoint.value,
            quantize.value,
            exporter.value,
            data,
            overwrite=overwrite,
            rule=rule.value,
            target_prior=target_prior or [],
        )
        report = export_onnx(run, output, options)
    if as_json:
        print_json(report)
        return
    stdout_console().print(
        f"wrote {report['path']} ({report['size_bytes'] / 1e6:.2f} MB, {report['method']}, "
        f"opset {report['opset']})\n"
        f"verified on {report['verified_samples']} inputs ({report['real_images']} real): "
        f"max |onnxruntime - torch| logits = {report['max_abs_diff']:.2e}, "
        f"class agreement {report['class_agreement']:.1%} ({report['class_agreement_on']})\n"
        f"outputs: {', '.join(report['outputs'])}"
    )


def predict(
    model: Annotated[Path, typer.Argument(help="Run directory or .onnx file.")],
    inputs: Annotated[
        list[Path], typer.Argument(help="Images, folders or AI Hub label JSON files.")
    ],
    region: RegionOpt = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per batch.")] = 16,
    checkpoint: Annotated[
        Checkpoint, typer.Option(help=f"Checkpoint of a run directory: {CHECKPOINTS}")
    ] = Checkpoint.best,
    csv_out: Annotated[
        Path | None, typer.Option("--csv", help="Also write predictions as CSV.")
    ] = None,
    rule: Annotated[
        Rule | None,
        typer.Option(
            help="Decision rule: selected (chosen on validation) or argmax; default: the run's "
            "selected rule, or the one baked into the ONNX file."
        ),
    ] = None,
    target_prior: TargetPriorOpt = None,
    overwrite: OverwriteOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Per-region grade and probabilities for each image; unreadable images are reported, exit 0."""
    from skincls.serving.predict import predict as run_predict
    from skincls.serving.predict import write_csv

    with user_errors(csv_out):
        if csv_out:
            check_new_file(csv_out, "--csv", overwrite)
        result = run_predict(
            model,
            inputs,
            region or [],
            batch_size,
            checkpoint.value,
            rule.value if rule else None,
            target_prior or [],
        )
        if csv_out:
            write_csv(result, csv_out)
    if as_json:
        print_json(result)
    else:
        _print_predictions(result)
    err = stderr_console()
    for e in result["errors"]:
        print_error(err, f"{e['path']}: {e['error']}", "skipped", "yellow")
    if result["errors"] and not result["predictions"]:
        print_error(err, f"no input gave a prediction ({len(result['errors'])} skipped, above)")
        raise typer.Exit(1)


def explain(
    run: Annotated[Path, typer.Argument(help="Run directory.")],
    images: Annotated[list[Path], typer.Argument(help="Images to explain.")],
    region: Annotated[str, typer.Option("--region", help="Region head to explain.")],
    out: Annotated[
        Path, typer.Option("--output", "-o", "--out", help="Directory for the PNG overlays.")
    ],
    checkpoint: Annotated[
        Checkpoint, typer.Option(help=f"Checkpoint to explain: {CHECKPOINTS}")
    ] = Checkpoint.best,
    overwrite: OverwriteOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Grad-CAM heat maps as PNG overlays: does the model look at skin or at background?"""
    from skincls.serving.explain import explain as run_explain

    with user_errors(out):
        check_dir(out, "--output")
        written = run_explain(run, images, region, out, checkpoint.value, overwrite=overwrite)
    if as_json:
        print_json(written)
        return
    for w in written:
        if "error" in w:
            print_error(stderr_console(), f"{w['path']}: {w['error']}", "skipped", "yellow")
        else:
            stdout_console().print(f"{w['output']}  (predicted {w['class']})")


def report(
    run: Annotated[Path, typer.Argument(help="Run directory.")],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="HTML file (default RUN/report.html, replaced)."),
    ] = None,
    data: Annotated[
        Path | None, typer.Option("--data", help="Score other data (default: the run's).")
    ] = None,
    split: Annotated[
        Split, typer.Option(help="Part to score; auto: test, else validation.")
    ] = Split.auto,
    checkpoint: Annotated[
        Checkpoint, typer.Option(help=f"Checkpoint to score: {CHECKPOINTS}")
    ] = Checkpoint.best,
    explain: Annotated[
        bool, typer.Option("--explain", help="Grad-CAM overlays for the worst mistakes.")
    ] = False,
    by: ByOpt = None,
    overwrite: OverwriteOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """One self-contained HTML page: data, training curves, confusion, worst mistakes, config."""
    from skincls.serving.report import Sections, build_report

    with user_errors(output or run / REPORT):
        parts = Sections(explain, by or [])
        written = build_report(run, output, data, split.value, checkpoint.value, overwrite, parts)
    if as_json:
        print_json(written)
    else:
        stdout_console().print(
            f"wrote {written['path']} ({written['size_bytes'] / 1e6:.2f} MB, split "
            f"{written['split']}, {written['seconds']:.1f} s)"
        )


def short_paths(paths: list[str], limit: int = 60) -> list[str]:
    """Paths as a table shows them: relative to the working folder where they are inside it,
    and longer ones cut in the middle with the file name kept (``--json``/``--csv`` keep them
    whole)."""
    import os

    out = []
    for path in paths:
        try:
            rel = os.path.relpath(path)
        except ValueError:  # another drive (Windows)
            rel = path
        rel = path if rel.startswith("..") else rel
        if len(rel) > limit:
            name = Path(rel).name
            rel = rel[: max(8, limit - len(name) - 4)] + ".../" + name
        out.append(rel)
    return out


def _print_predictions(result: dict[str, Any]) -> None:
    """The predictions table (an image per line and region), what was applied to images of
    unknown region, and each head's decision rule."""
    from rich.table import Table

    predictions = result["predictions"]
    rows = sum(len(p["regions"]) for p in predictions)
    table = Table(title=f"{len(predictions)} image(s), {rows} region prediction(s)")
    names = [n for p in predictions for n in p["regions"]]
    shown = short_paths([p["path"] for p in predictions])
    table.add_column("image", no_wrap=True)
    table.add_column("region", no_wrap=True, min_width=max(map(len, names), default=6))
    table.add_column("class", no_wrap=True)
    table.add_column("p", no_wrap=True)
    table.add_column("probabilities", overflow="fold")
    for p, path in zip(predictions, shown, strict=True):
        for name, r in p["regions"].items():
            median = " (median)" if r.get("decision") == "median" else ""
            spread = " ".join(f"{c}:{v:.2f}" for c, v in r["probs"].items())
            table.add_row(path, name, r["class"] + median, f"{r['probs'][r['class']]:.3f}", spread)
    stdout_console().print(table)
    unknown = sum(not p.get("region_known", True) for p in predictions)
    if unknown and len(names) > len(predictions):
        stdout_console().print(
            f"{unknown} image(s) of unknown region: every head was applied to each (an AI "
            "Hub label JSON or a CSV with a region column applies only the crop's own)",
            style="dim",
        )
    rules = {n: r["rule"] for p in predictions for n, r in p["regions"].items()}
    if rules:
        said = "; ".join(f"{n}: {r}" for n, r in rules.items())
        stdout_console().print(f"decision rule: {said}", style="dim")
