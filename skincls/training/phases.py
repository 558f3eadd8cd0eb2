"""The phases of a training run after its setup, each given the run's :class:`RunContext`:
restore a resumed run, start tracking, (fit, in :mod:`skincls.training.fit`), calibrate the
served checkpoint, test it, and finish (status, report, result)."""

from __future__ import annotations

from typing import Any

import torch

from skincls.core.errors import SkinclsError
from skincls.core.runtime import set_rng_state
from skincls.run import artifacts as A
from skincls.run.artifacts import Evaluation
from skincls.run.checkpoints import check_state_matches, load_trainer_state
from skincls.run.rundir import check_meta
from skincls.training.context import RunContext
from skincls.training.loop import TrainState, served
from skincls.training.optim import restore_scheduler
from skincls.training.result import RunResult


def restore(ctx: RunContext) -> TrainState:
    """A fresh state, or a resumed run's state after checking that its files agree."""
    run, config, kit, console = ctx.run, ctx.config, ctx.kit, ctx.console
    state = TrainState()
    if not config.resume:
        return state
    if not run.has_checkpoint("last"):
        console.print(f"{run.path}: no epoch was completed before; starting from epoch 1")
        return state
    weights, meta = run.load_checkpoint("last")
    last = run.checkpoint("last")
    origin = str(last)
    check_meta(meta, origin, config, ctx.regions, run.path)
    e = kit.engine
    check_state_matches(e.model.state_dict(), weights, origin)
    e.model.load_state_dict(weights)
    saved = load_trainer_state(last)
    planned, now = _apply_trainer_state(ctx, state, saved, str(last / A.TRAINER))
    state.history = run.history()[: state.epoch]
    if state.epoch >= config.epochs:
        console.print(f"{run.path}: already trained {state.epoch} of {config.epochs} epochs")
    elif planned != now and ctx.writes:
        _record_new_schedule(ctx, state)
    return state


def _apply_trainer_state(
    ctx: RunContext, state: TrainState, saved: dict[str, Any], origin: str
) -> tuple[int, int]:
    """Load each part of ``trainer.pt`` into the engine; a damaged or mistyped field is one
    clear error naming it. Returns the scheduler's planned and current length in updates."""
    e = ctx.kit.engine
    if e.ema is not None and "ema" not in saved:
        raise SkinclsError(f"{origin}: no EMA weights in the trainer state to resume from")
    steps: list[tuple[str, Any]] = [
        ("optimizer", lambda: e.optimizer.load_state_dict(saved["optimizer"])),
        ("train_state", lambda: state.load_state_dict(saved["train_state"])),
        (
            "scheduler",
            lambda: restore_scheduler(
                e.scheduler, saved["scheduler"], int(saved["train_state"]["updates"])
            ),
        ),
        ("ema", lambda: e.ema.module.load_state_dict(saved["ema"]) if e.ema else None),
        ("scaler", lambda: e.scaler.load_state_dict(_mapping(saved["scaler"]))),
        ("rng", lambda: set_rng_state(saved["rng"])),
    ]
    results = {}
    for field, step in steps:
        try:
            results[field] = step()
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError) as err:
            raise SkinclsError(
                f"{origin}: damaged trainer state: {field} cannot be restored "
                f"({type(err).__name__}: {str(err)[:200]}); resume from a copy of the run or "
                "start a new one"
            ) from None
    return results["scheduler"]


def _mapping(value: Any) -> dict[str, Any]:
    """``value`` if it is a mapping: a disabled GradScaler (CPU) would ignore anything else."""
    if not isinstance(value, dict):
        raise TypeError(f"expected a mapping, got {type(value).__name__}")
    return value


def _record_new_schedule(ctx: RunContext, state: TrainState) -> None:
    """Say that ``--epochs`` changed the schedule of a resumed run, and record it: the new
    number of epochs in ``config.yaml`` (a later ``--resume`` keeps it) and each schedule with
    its first epoch in ``run.json``."""
    from skincls.core.config import save_config

    run, config = ctx.run, ctx.config
    saved = run.config()
    verb = "extends" if config.epochs > saved.epochs else "shortens"
    ctx.console.print(
        f"--epochs {config.epochs} {verb} the run's schedule of {saved.epochs} epochs: from epoch "
        f"{state.epoch + 1} on, the learning rate follows the schedule of a {config.epochs}-epoch "
        "run (recorded in config.yaml and run.json)"
    )
    history = [s.model_dump() for s in run.status().schedules or []] or [
        {"epochs": saved.epochs, "from_epoch": 1}
    ]
    history.append({"epochs": config.epochs, "from_epoch": state.epoch + 1})
    run.update_status(schedules=history)
    save_config(saved.model_copy(update={"epochs": config.epochs}), run.path / A.CONFIG)


def start(ctx: RunContext, group: str | None) -> Any:
    """The wandb tracker (rank 0 only; same id on resume) and the run's status file."""
    from skincls.core.tracking import Tracker
    from skincls.core.version import __version__

    run, config, dctx = ctx.run, ctx.config, ctx.dctx
    tracker = Tracker(
        config.wandb if dctx.is_main else "disabled",
        run.path,
        config.model_dump(mode="json"),
        config.wandb_project,
        config.wandb_entity,
        config.wandb_name,
        config.wandb_tags,
        run_id=run.status().wandb_id if config.resume else None,
        group=group,
    )
    if dctx.is_main:
        e = ctx.kit.engine
        run.update_status(
            wandb_id=tracker.run_id,
            wandb_mode=config.wandb,
            status="running",
            device=str(e.device),
            world_size=dctx.world_size,
            amp=str(e.dtype) if e.dtype else "off",
            skincls_version=__version__,
            torch_version=torch.__version__,
            **_pretrained_match(ctx),
        )
    return tracker


def _pretrained_match(ctx: RunContext) -> dict[str, str]:
    """``run.json``'s record of how the pretrained file was matched (a new run only: a resumed
    one loads its own checkpoint, and keeps what its start recorded)."""
    how = getattr(ctx.kit.engine.model, "pretrained_match", None)
    return {"pretrained_match": how} if how and not ctx.config.resume else {}


def calibrate_served(ctx: RunContext, state: TrainState) -> None:
    """Fit the served checkpoint's temperatures and decision rules on the validation split, store
    them in ``best/meta.json`` and serve them from the model (``--no-calibrate``: neither)."""
    from skincls.data.samples import label_counts
    from skincls.model.calibration import apply_serving, calibrate
    from skincls.model.inference import collect_logits

    run, config, kit, dctx = ctx.run, ctx.config, ctx.kit, ctx.dctx
    if not config.calibrate or kit.val_loader is None or state.best_epoch <= 0:
        return
    e = kit.engine
    weights, meta = run.load_checkpoint("best")
    e.model.load_state_dict(weights)
    val = collect_logits(e.model, kit.val_loader, e.device, e.dtype, e.channels_last, dctx)
    counts = label_counts(ctx.regions, ctx.parts["train"])
    calibration = calibrate(e.model, val, ctx.regions, counts, config.select)
    apply_serving(e.model, calibration)
    if ctx.writes:
        run.write_meta("best", meta.model_copy(update={"calibration": calibration}))
        for name, c in calibration.items():
            v = c["val"]
            ctx.console.print(
                f"calibrated {name}: temperature {c['temperature']:.2f} (validation ECE "
                f"{v['ece_before']:.3f} -> {v['ece_after']:.3f}), decision rule tau "
                f"{c['tau']:g} for {c['select']}"
            )


def test_served(ctx: RunContext, state: TrainState) -> dict[str, Any] | None:
    """Scores of the served checkpoint (``best/``) on the test split (never used for
    selection)."""
    from skincls.data.dataset import SampleDataset
    from skincls.data.sampler import EvalSampler
    from skincls.model.inference import gathered, make_loader, metrics_of

    run, config, kit, dctx, regions = ctx.run, ctx.config, ctx.kit, ctx.dctx, ctx.regions
    samples, tracker = ctx.parts["test"], ctx.tracker
    epoch = served(state, config.serve_epoch)[0]
    if not samples or epoch <= 0:
        return None
    e = kit.engine
    weights, _ = run.load_checkpoint("best")
    e.model.load_state_dict(weights)  # calibration (not weights) stays as calibrate_served set it
    names = [r.name for r in regions]
    ds = SampleDataset(samples, names, kit.eval_transforms, config.image_size)
    sampler = EvalSampler(len(ds), dctx.rank, dctx.world_size)
    loader = make_loader(ds, sampler, config.batch_size, config.workers, e.device)
    p = gathered(e.model, loader, e.device, e.dtype, e.channels_last, dctx)
    result = metrics_of(p, regions, [s.group for s in samples])
    _list_bad_test_images(ctx, [samples[i] for i in result.pop("bad_indices", [])])
    result.update({"split": "test", "checkpoint": "best", "epoch": epoch})
    if ctx.writes:
        run.write_evaluation(Evaluation.parse(result, str(run.path / A.EVALUATION)))
    for name, m in result["regions"].items():
        classes = next(r.classes for r in regions if r.name == name)
        tracker.log_confusion(name, classes, m["confusion_matrix"], step=len(state.history))
    tracker.summary({f"test/{k}": v for k, v in result["mean"].items()})
    return result


def finish(ctx: RunContext, state: TrainState, test, stopped, show_test: bool) -> RunResult:
    """Print the test table (if ``show_test``), record how the run ended in ``run.json``, write
    the report; the run's result."""
    run, config, console = ctx.run, ctx.config, ctx.console
    epoch, metric = served(state, config.serve_epoch)
    if test is not None and show_test:
        from skincls.core.console import print_eval

        print_eval(console, f"test (served checkpoint: epoch {epoch})", test)
    if ctx.writes:
        run.update_status(
            status="finished",
            best_epoch=state.best_epoch,
            best_metric=state.best_metric,
            served_epoch=epoch,
            served_metric=metric,
            stopped_early=stopped,
        )
        _write_report(ctx)
    return RunResult(
        run.path,
        state.best_epoch,
        state.best_metric,
        epoch,
        metric,
        state.history,
        test,
        config.select,
        config.wandb,
    )


def _list_bad_test_images(ctx: RunContext, bad_samples: list[Any]) -> None:
    """Test images that gave no pixels join ``bad_images.txt`` and are counted on stderr, like
    training and validation images: the test figures are over the others."""
    from skincls.core.console import make_console
    from skincls.data.images import unreadable_summary, why_unreadable

    if not bad_samples or not ctx.writes:
        return
    bad = {s.path: why_unreadable(s) for s in bad_samples}
    ctx.run.write_bad_images({**ctx.run.bad_images(), **bad})
    make_console(stderr=True).print(
        f"test: skipped {unreadable_summary(bad)}; the test figures leave them out; list in "
        f"{ctx.run.path / A.BAD_IMAGES}",
        style="yellow",
    )


def _write_report(ctx: RunContext) -> None:
    """``RUN/report.html`` (unless ``--no-report``); a report that cannot be built is a warning
    naming the error, never a failed run (``skincls report RUN`` can build it later)."""
    run, config, console = ctx.run, ctx.config, ctx.console
    if not config.report:
        return
    from skincls.serving.report import build_report

    try:
        report = build_report(run.path)
    except Exception as err:  # an optional page must never fail a finished run
        console.print(f"report not written: {type(err).__name__}: {err}", style="yellow")
        return
    console.print(f"report: {report['path']} ({report['size_bytes'] / 1e6:.1f} MB)")
