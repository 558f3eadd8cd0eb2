"""Fitting: epochs until the configured number, each followed by the callbacks; the run's
status says how it ended (finished, interrupted, failed, pruned). Images that give no pixels are
listed with their reason and, over ``--max-bad-fraction`` (decided on the global count under
torchrun), stop the run."""

from __future__ import annotations

import contextlib
import math
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

from skincls.core import distributed as D
from skincls.core.errors import SkinclsError
from skincls.core.names import ALL_METRICS, LOWER_IS_BETTER
from skincls.core.runtime import GracefulStop, rng_state
from skincls.run import artifacts as A
from skincls.run.checkpoints import TRAINER_FORMAT
from skincls.training.callbacks import (
    Callback,
    CheckpointSaver,
    ConsoleReporter,
    EarlyStopping,
    EpochEnd,
    HistoryWriter,
    StopEarly,
    WandbLogger,
)
from skincls.training.components import Kit
from skincls.training.context import RunContext
from skincls.training.loop import TrainState


class TrainingInterrupted(SkinclsError):
    exit_code = 130


def fit(ctx: RunContext, state: TrainState, hooks: list[Callback]) -> str | None:
    """Epochs until ``config.epochs`` or an early stop; the run's status says how it ended, and
    every callback's ``on_fit_end`` hears it. Returns the early-stopping reason, or None."""
    from skincls.core.console import make_console

    run, config, dctx, console = ctx.run, ctx.config, ctx.dctx, ctx.console
    notes = make_console(stderr=True, quiet=config.quiet or not dctx.is_main)
    write = dctx.is_main
    callbacks = _callbacks(ctx, state, hooks)
    early = callbacks[-1]
    bad: dict[str, str] = {}
    times: list[float] = []
    status = "failed"
    stopped = early.reason(state)  # a resumed run that had already stopped early
    try:
        with GracefulStop() as stop:
            while state.epoch < config.epochs and stopped is None:
                end = run_epoch(ctx, state, stop, bad, notes)
                times.append(end.seconds)
                end.remaining = (config.epochs - state.epoch) * sum(times) / len(times)
                try:
                    for cb in callbacks:
                        cb.on_epoch_end(end)
                except StopEarly as reason:
                    stopped = str(reason)
        status = "finished"
        if stopped:
            console.print(f"stopped early: {stopped}")
    except KeyboardInterrupt:
        status = "interrupted"
        if write:
            run.update_status(status=status)
        kept = (
            f"{run.path / 'last'} holds the last completed epoch ({state.epoch})"
            if state.history
            else "no epoch was completed"
        )
        raise TrainingInterrupted(
            f"interrupted; {kept}. Continue with: skincls train --resume "
            f"{shlex.quote(str(run.path))}"
        ) from None
    except BaseException as err:
        status = "pruned" if type(err).__name__ == "TrialPruned" else "failed"
        if write:
            with contextlib.suppress(SkinclsError):  # a full disk: the error raised says so
                run.update_status(status=status, error=str(err))
        raise
    finally:
        if bad and write:
            run.write_bad_images({**run.bad_images(), **bad})  # a resumed run keeps earlier ones
            notes.print(_bad_summary(bad, run.path), style="yellow")
        for cb in callbacks:
            cb.on_fit_end(status)
        if status != "finished":
            ctx.tracker.finish(exit_code=1)
    return stopped


def _callbacks(ctx: RunContext, state: TrainState, hooks: list[Callback]) -> list[Any]:
    """The built-in callbacks around the user's ``hooks``, early stopping last (an epoch is
    saved and reported before a stop)."""
    run, config, kit, dctx = ctx.run, ctx.config, ctx.kit, ctx.dctx
    callbacks: list[Any] = [HistoryWriter(run)] if dctx.is_main else []
    callbacks += [
        CheckpointSaver(
            run,
            weights=kit.engine.model.state_dict,
            best_weights=lambda end: _selected(kit, end).state_dict(),
            meta=lambda end: _meta(config, kit.regions, kit, end),
            trainer_state=lambda: _trainer_state(kit, state, dctx),
            write=dctx.is_main,
            dctx=dctx,
            serve_epoch=config.serve_epoch,
        ),
        WandbLogger(ctx.tracker),
        ConsoleReporter(ctx.console, config.epochs, every_table=ctx.epoch_tables),
        *hooks,
        EarlyStopping(config.patience, config.select),
    ]
    return callbacks


def run_epoch(ctx: RunContext, state: TrainState, stop, bad: dict[str, str], notes) -> EpochEnd:
    """One epoch of training and validation; returns what the callbacks are given. ``bad``
    collects the images that gave no pixels, ``notes`` is the stderr console."""
    import time

    from skincls.model.inference import score

    config, kit, parts, regions, dctx = ctx.config, ctx.kit, ctx.parts, ctx.regions, ctx.dctx
    t0 = time.perf_counter()
    kit.sampler.set_epoch(state.epoch)
    with _progress(notes, config, state, kit.steps_per_epoch) as update:
        stats = kit.engine.train_epoch(
            kit.train_loader,
            kit.steps_per_epoch,
            state,
            stop,
            on_bad=lambda idx: _on_bad(idx, parts, bad, config, dctx),
            progress=update,
        )
    if stats.skipped_nan_steps:
        notes.print(
            f"epoch {state.epoch + 1}: skipped {stats.skipped_nan_steps} step(s) with a "
            "non-finite loss",
            style="yellow",
        )
    e = kit.engine
    val = ema_val = None
    D.sync_buffers(e.model, dctx)  # the statistics rank 0 saves are the ones validated
    if kit.val_loader is not None:
        val = score(e.model, kit.val_loader, regions, e.device, e.dtype, e.channels_last, dctx)
        for i in val.pop("bad_indices", []):
            _note_bad(bad, parts["val"][i])
        if e.ema is not None:
            ema_val = score(e.ema.module, kit.val_loader, regions, e.device, e.dtype, False, dctx)
            ema_val.pop("bad_indices", None)
    bad.update(D.merge_dicts(bad, dctx))
    _check_bad_fraction(bad, len(parts["train"]) + len(parts["val"]), config)
    lower = config.select in LOWER_IS_BETTER
    value = val["mean"][config.select] if val else math.nan
    weights = "raw"
    if ema_val is not None:
        ema_value = ema_val["mean"][config.select]
        if (ema_value < value) if lower else (ema_value > value):
            value, weights = ema_value, "ema"
    record: dict[str, Any] = {
        "epoch": state.epoch + 1,
        "lr": e.optimizer.param_groups[0]["lr"],
        "train_loss": stats.train_loss,
        "train_images_per_s": stats.images_per_s,
        "train_seconds": stats.seconds,
        "skipped_nan_steps": stats.skipped_nan_steps,
        "select": None if math.isnan(value) else value,  # None: no validation split
    }
    if ema_val is not None:
        record["selected_weights"] = weights
        record.update({f"val_ema_{k}": v for k, v in ema_val["mean"].items()})
    if val:
        record.update({f"val_{k}": v for k, v in val["mean"].items()})
        for name, m in val["regions"].items():
            record.update({f"val_{name}_{k}": m[k] for k in ALL_METRICS if k in m})
    state.epoch += 1
    improved = state.improve(record["select"], lower)
    state.history.append(record)
    return EpochEnd(state.epoch, record, val, improved, state, time.perf_counter() - t0)


class _progress:
    """A transient progress bar on stderr (terminals only) with loss, img/s and ETA."""

    def __init__(self, console, config, state: TrainState, steps: int):
        from skincls.core.console import progress_bar

        self.bar = progress_bar(console, config.quiet)
        self.title = f"epoch {state.epoch + 1}/{config.epochs}"
        self.steps = steps

    def __enter__(self) -> Callable[[float, float], None]:
        self.bar.__enter__()
        task = self.bar.add_task(self.title, total=self.steps, info="")

        def update(loss: float, rate: float) -> None:
            shown = "-" if math.isnan(loss) else f"{loss:.4f}"  # read every log_every steps
            self.bar.update(task, advance=1, info=f"loss {shown}  {rate:.1f} img/s")

        return update

    def __exit__(self, *exc: Any) -> None:
        self.bar.__exit__(*exc)


def _trainer_state(kit: Kit, state: TrainState, dctx) -> dict[str, Any]:
    e = kit.engine
    return {
        "format": TRAINER_FORMAT,
        "optimizer": e.optimizer.state_dict(),
        "scheduler": e.scheduler.state_dict(),
        "scaler": e.scaler.state_dict(),
        "rng": rng_state(),
        "train_state": state.state_dict(),
        "sampler": kit.sampler.state_dict(),
        "world_size": dctx.world_size,
        **({"ema": e.ema.module.state_dict()} if e.ema is not None else {}),
    }


def _selected(kit: Kit, end: EpochEnd) -> Any:
    """The module whose weights this epoch's selection metric was measured on."""
    e = kit.engine
    return e.ema.module if end.record.get("selected_weights") == "ema" else e.model


def _meta(config, regions, kit: Kit, end: EpochEnd) -> A.CheckpointMeta:
    """``meta.json`` of a checkpoint: what inference needs without the config."""
    from skincls.core.version import __version__
    from skincls.model.losses import loss_of
    from skincls.run.settings import record_settings

    return A.CheckpointMeta(
        skincls_version=__version__,
        backbone=config.backbone,
        image_size=config.image_size,
        mean=list(kit.mean),
        std=list(kit.std),
        regions=[A.HeadMeta(name=r.name, classes=r.classes, ordinal=r.ordinal) for r in regions],
        losses={r.name: loss_of(r, config.loss) for r in regions},
        heads=dict(getattr(kit.engine.model, "kinds", {})),
        decisions=dict(getattr(kit.engine.model, "decisions", {})),
        epoch=end.epoch,
        weights=end.record.get("selected_weights", "raw"),
        select=config.select,
        metric=end.record["select"],
        dropout=config.dropout,
        settings=record_settings(config, regions),
    )


def _on_bad(indices: list[int], parts, bad: dict[str, str], config, dctx) -> None:
    for i in indices:
        _note_bad(bad, parts["train"][i])
    if not dctx.enabled:  # under torchrun the limit is decided on the global count
        _check_bad_fraction(bad, len(parts["train"]) + len(parts["val"]), config)


def _note_bad(bad: dict[str, str], sample: Any) -> None:
    from skincls.data.images import why_unreadable

    if sample.path not in bad:
        bad[sample.path] = why_unreadable(sample)


def _bad_summary(bad: dict[str, str], run_dir: Path) -> str:
    from skincls.data.images import unreadable_summary

    return f"skipped {unreadable_summary(bad)}; list in {run_dir / A.BAD_IMAGES}"


def _check_bad_fraction(bad: dict[str, str], total: int, config: Any) -> None:
    """Stop the run (every rank alike: ``bad`` is global under torchrun) over the limit; the
    list is written when the run ends."""
    if len(bad) > config.max_bad_fraction * total:
        raise SkinclsError(
            f"{len(bad)} of {total} training and validation images cannot be decoded, more than "
            f"--max-bad-fraction {config.max_bad_fraction}; list in {Path(config.output) / A.BAD_IMAGES}"
        )
