"""Multi-task training: ``train(config)`` is the plain function behind ``skincls train``.

It reads as a table of contents: load the data, build the model (before anything is written, so
a failure leaves nothing behind), split and create (or reopen) the run directory, build the
components, restore a resumed run, fit epoch by epoch with callbacks, and test the best
checkpoint. Resuming restores the split, sampler epoch, optimizer, scheduler, scaler, RNG states
and ``TrainState``, so on CPU an interrupted and resumed run ends with the same weights as an
uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from skincls.core import distributed as D
from skincls.core.config import TrainConfig, build_config
from skincls.core.errors import SkinclsError
from skincls.core.runtime import resolve_device, seed_everything
from skincls.data.samples import Dataset
from skincls.model.heads import check_ordinal_use
from skincls.run.rundir import RunDir, resume_config
from skincls.training import phases
from skincls.training.callbacks import Callback, EpochHook
from skincls.training.components import build_kit
from skincls.training.context import RunContext, resolve_config
from skincls.training.fit import TrainingInterrupted, fit
from skincls.training.result import RunResult
from skincls.training.run_summary import print_run_summary

__all__ = ["Display", "RunResult", "TrainingInterrupted", "train", "train_from_options"]


@dataclass(frozen=True)
class Display:
    """What a run prints: the test table at the end (``show_test``) and the validation table of
    every epoch (``epoch_tables``; otherwise only the last)."""

    show_test: bool = True
    epoch_tables: bool = True


def train(
    config: TrainConfig,
    on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None,
    console: Any = None,
    wandb_group: str | None = None,
    callbacks: Sequence[Callback] = (),
    display: Display = Display(),
    split: Mapping[str, str] | None = None,
) -> RunResult:
    """Train, validate each epoch, keep ``best/`` and ``last/``, evaluate the best on test (the test
    and validation tables are printed as ``display`` says). ``on_epoch_end(epoch, record)`` and
    ``callbacks`` run after the built-in callbacks; what they raise stops the run. ``split``
    (sample key -> train, val or test) replaces the run's own split of a new run (``skincls
    cv`` gives each fold's).

    Under ``torchrun`` every rank trains on its share of each epoch's draw, predictions are
    gathered before metrics are computed, and only rank 0 writes files and logs to wandb.
    """
    from skincls.core.console import make_console
    from skincls.model.network import create_model

    dctx = D.init_distributed(config.device)
    run: RunDir | None = None
    console = (
        console
        if dctx.is_main and console
        else make_console(quiet=config.quiet or not dctx.is_main)
    )
    try:
        config, notes = resolve_config(config, dctx)
        run, dataset = _open_data(config, dctx)
        device = _device(config, dctx)
        seed_everything(config.seed, device=device)
        model = create_model(config, dataset.regions, pretrained=not config.resume)
        run, parts = _split(config, run, dataset, dctx, split)
        kit = build_kit(config, model, dataset.regions, parts, device, dctx)
        ctx = RunContext(
            config, run, dataset, parts, kit, dctx, console, epoch_tables=display.epoch_tables
        )
        state = phases.restore(ctx)
        ctx = replace(ctx, tracker=phases.start(ctx, wandb_group))
        print_run_summary(ctx)
        for note in notes:
            console.print(note)
        hooks = [*callbacks, *([EpochHook(on_epoch_end)] if on_epoch_end else [])]
        stopped = fit(ctx, state, hooks)
        phases.calibrate_served(ctx, state)
        test = phases.test_served(ctx, state)
        result = phases.finish(ctx, state, test, stopped, display.show_test)
        ctx.tracker.finish()
        return result
    finally:
        if run is not None:
            run.close()
        D.cleanup(dctx)


def _open_data(config: TrainConfig, dctx) -> tuple[RunDir | None, Dataset]:
    """The samples of the run's regions; a resumed run is opened (and locked) first."""
    from skincls.data.regions import discover_regions
    from skincls.data.sources import ReadOptions, load_data

    run = None
    if config.resume:
        run = RunDir.open(config.resume, lock=dctx.is_main)
        registry = run.registry()
        selected = registry.names()
    else:
        if dctx.is_main:
            RunDir.check_new(config.output, config.overwrite)
        registry = discover_regions(config.regions_dir)
        selected = config.region
    read = ReadOptions(config.source, config.group_column, config.skip_bad)
    dataset = load_data(config.data, registry, selected, read)
    check_ordinal_use(dataset.regions, config.loss, config.select, config.decision)
    return run, dataset


def _device(config: TrainConfig, dctx) -> torch.device:
    if dctx.backend == "nccl":
        return torch.device("cuda", dctx.local_rank)
    return resolve_device("cpu" if dctx.enabled else config.device)


def _split(config, run, dataset, dctx, given=None) -> tuple[RunDir, dict[str, list[Any]]]:
    """The train/val/test parts: the saved split of a resumed run, or a new split written into
    a new run directory (created by rank 0; other ranks learn its path or its error)."""
    from skincls.data.split import partition, split_samples

    if run is not None:
        assignment = run.split(dataset.samples)
    else:
        split_seed = config.seed if config.split_seed is None else config.split_seed
        if given is None:
            assignment = split_samples(dataset.samples, config.fractions, split_seed)
        else:
            missing = [s.key for s in dataset.samples if s.key not in given]
            if missing:
                raise SkinclsError(f"the given split has no part for {missing[0]}")
            assignment = {s.key: given[s.key] for s in dataset.samples}
        created: tuple[str, str] | None = None
        if dctx.is_main:
            try:
                run = RunDir.create(config.output, config.overwrite)
                run.write_setup(
                    config,
                    dataset.regions,
                    dataset.samples,
                    assignment,
                )
                created = ("ok", str(run.path))
            except SkinclsError as err:
                created = ("error", str(err))
        created = D.broadcast(created, dctx)
        assert created is not None
        if created[0] == "error":
            raise SkinclsError(created[1])
        run = run or RunDir(Path(created[1]))
    parts = partition(dataset.samples, assignment)
    if not parts["train"]:
        raise SkinclsError(f"{config.data}: the training split is empty")
    return run, parts


def train_from_options(options: dict[str, Any], config_file: str | None = None) -> RunResult:
    """Merge defaults < config file < ``options`` (only those given), then train or resume."""
    from skincls.core.config import load_config_file

    values: dict[str, Any] = {}
    if config_file:
        values.update(load_config_file(config_file))
    values.update(options)
    resume = values.get("resume")
    if resume:
        overrides = {k: v for k, v in values.items() if k != "resume"}
        config = resume_config(Path(resume), overrides)
    else:
        if not values.get("data"):
            raise SkinclsError("DATA: missing; give the data path (or use --resume RUN)")
        config = build_config(values, config_file or "options")
    return train(config)
