"""Multi-task training: ``train(config)`` is the plain function behind ``skincls train``.

It reads as a table of contents: load the data, build the model (before anything is written, so
a failure leaves nothing behind), split and create (or reopen) the run directory, build the
components, restore a resumed run, fit epoch by epoch with callbacks, and test the best
checkpoint. Resuming restores the split, sampler epoch, optimizer, scheduler, scaler, RNG states
and ``TrainState``, so on CPU an interrupted and resumed run ends with the same weights as an
uninterrupted one.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from skincls.core import distributed as D
from skincls.core.config import TrainConfig, build_config
from skincls.core.errors import SkinclsError
from skincls.core.names import DEFAULT_SELECT
from skincls.core.runtime import resolve_device, seed_everything, set_rng_state
from skincls.data.samples import Dataset
from skincls.model.heads import check_ordinal_use
from skincls.run.artifacts import EVALUATION, Evaluation
from skincls.run.checkpoints import (
    check_state_matches,
    load_trainer_state,
)
from skincls.run.rundir import RunDir, check_meta, resume_config
from skincls.training.callbacks import Callback, EpochHook
from skincls.training.components import Kit, build_kit
from skincls.training.fit import TrainingInterrupted, fit
from skincls.training.loop import TrainState, served
from skincls.training.optim import restore_scheduler
from skincls.training.recipe import resolve_recipe
from skincls.training.run_summary import print_run_summary

__all__ = ["RunResult", "TrainingInterrupted", "train", "train_from_options"]


@dataclass
class RunResult:
    """How a run ended: the best validation epoch and its selection figure, the epoch whose
    weights ``best/`` holds and every command serves (``--serve-epoch``) and its figure, the
    per-epoch records and the test scores of the served weights."""

    run_dir: Path
    best_epoch: int
    best_metric: float
    served_epoch: int
    served_metric: float
    history: list[dict[str, Any]] = field(default_factory=list)
    test: dict[str, Any] | None = None
    select: str = DEFAULT_SELECT
    wandb: str = "disabled"

    def next_steps(self) -> list[str]:
        """What the end of ``skincls train`` prints: the served epoch, where the weights are,
        and the commands to run next (shell-quoted, ready to paste)."""
        run = shlex.quote(str(self.run_dir))
        lines = [
            self._served_line(),
            "next:",
            f"  skincls evaluate {run}            # figures on the held-out test split",
            f"  skincls export {run}              # one verified ONNX file for apps",
            f"  skincls predict {run} IMAGE...    # grades of new images",
        ]
        offline = sorted((self.run_dir / "wandb").glob("offline-run-*"))
        if self.wandb == "offline" and offline:
            sync = shlex.quote(str(offline[-1]))
            lines.append(f"  wandb sync {sync}   # upload the offline wandb run")
        return lines

    def _served_line(self) -> str:
        """Which epoch is served and why, with its validation figure (none without a split)."""
        if self.served_epoch <= 0 or not self.history:
            return f"no epoch was selected; weights in {self.run_dir / 'last'}"
        epochs, where = len(self.history), f"weights in {self.run_dir / 'best'}"
        head = f"serving epoch {self.served_epoch} of {epochs}"
        if not any(k.startswith("val_") for k in self.history[-1]):
            return f"{head} (the last; no validation split); {where}"
        if self.served_epoch != self.best_epoch:
            which = f"the last; the best was epoch {self.best_epoch} with {self.best_metric:.4f}"
        else:
            which = "the last and the best" if self.served_epoch == epochs else "the best"
        return f"{head} ({which}), validation {self.select} = {self.served_metric:.4f}; {where}"


def train(
    config: TrainConfig,
    on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None,
    console: Any = None,
    wandb_group: str | None = None,
    show_test: bool = True,
    callbacks: Sequence[Callback] = (),
) -> RunResult:
    """Train, validate each epoch, keep ``best/`` and ``last/``, evaluate the best on test (its
    table is printed unless ``show_test`` is False). ``on_epoch_end(epoch, record)`` and
    ``callbacks`` run after the built-in callbacks; what they raise stops the run.

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
        config, run, dataset = _load_data(config, dctx)
        config, notes = resolve_recipe(config, dctx.world_size)
        device = _device(config, dctx)
        seed_everything(config.seed, device=device)
        model = create_model(config, dataset.regions)
        run, parts = _split(config, run, dataset, dctx)
        config = config.model_copy(update={"output": str(run.path)})
        kit = build_kit(config, model, dataset.regions, parts, device, dctx)
        state = _restore(run, kit, config, dataset.regions, console, dctx.is_main)
        hooks = [*callbacks, *([EpochHook(on_epoch_end)] if on_epoch_end else [])]
        tracker = _start(run, config, kit, dctx, state, wandb_group)
        print_run_summary(console, run, config, dataset, parts, kit, dctx)
        for note in notes:
            console.print(note)
        stopped = fit(run, config, kit, state, parts, tracker, hooks, console, dctx)
        _calibrate(run, config, kit, dataset.regions, parts["train"], state, console, dctx)
        test = _test_best(run, config, kit, dataset.regions, parts["test"], state, tracker, dctx)
        result = _finish(run, config, state, test, stopped, console, show_test, dctx)
        tracker.finish()
        return result
    finally:
        if run is not None:
            run.close()
        D.cleanup(dctx)


def _finish(run, config, state: TrainState, test, stopped, console, show_test, dctx) -> RunResult:
    """Print the test table (if ``show_test``), record how the run ended in ``run.json``, write
    the report; the run's result."""
    epoch, metric = served(state, config.serve_epoch)
    if test is not None and show_test:
        from skincls.core.console import print_eval

        print_eval(console, f"test (served checkpoint: epoch {epoch})", test)
    if dctx.is_main:
        run.update_status(
            status="finished",
            best_epoch=state.best_epoch,
            best_metric=state.best_metric,
            served_epoch=epoch,
            served_metric=metric,
            stopped_early=stopped,
        )
        _write_report(run, config, console)
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


def _load_data(config: TrainConfig, dctx) -> tuple[TrainConfig, RunDir | None, Dataset]:
    """The samples of the run's regions; a resumed run is opened (and locked) first."""
    from skincls.data.regions import discover_regions
    from skincls.data.sources import load_data

    run = None
    if config.resume:
        run = RunDir.open(config.resume, lock=dctx.is_main)
        registry = run.registry()
        selected = registry.names()
    else:
        if dctx.is_main:
            RunDir.check_new(config.output, config.overwrite)
        config = _absolute_paths(config)
        registry = discover_regions(config.regions_dir)
        selected = config.region
    dataset = load_data(
        config.data, registry, selected, config.source, config.group_column, config.skip_bad
    )
    check_ordinal_use(dataset.regions, config.loss, config.select)
    return config, run, dataset


def _absolute_paths(config: TrainConfig) -> TrainConfig:
    """Absolute data, regions and weights paths keep the run usable from any directory."""
    pretrained = config.pretrained
    if pretrained not in ("hub", "none"):
        pretrained = str(Path(pretrained).resolve())
    return config.model_copy(
        update={
            "data": str(Path(config.data).resolve()),
            "regions_dir": [str(Path(d).resolve()) for d in config.regions_dir],
            "pretrained": pretrained,
        }
    )


def _device(config: TrainConfig, dctx) -> torch.device:
    if dctx.backend == "nccl":
        return torch.device("cuda", dctx.local_rank)
    return resolve_device("cpu" if dctx.enabled else config.device)


def _split(config, run, dataset, dctx) -> tuple[RunDir, dict[str, list[Any]]]:
    """The train/val/test parts: the saved split of a resumed run, or a new split written into
    a new run directory (created by rank 0; other ranks learn its path or its error)."""
    from skincls.data.split import partition, split_samples

    if run is not None:
        assignment = run.split(dataset.samples)
    else:
        split_seed = config.seed if config.split_seed is None else config.split_seed
        assignment = split_samples(dataset.samples, config.fractions, split_seed)
        created: tuple[str, str] | None = None
        if dctx.is_main:
            try:
                run = RunDir.create(config.output, config.backbone, config.overwrite)
                run.write_setup(
                    config.model_copy(update={"output": str(run.path)}),
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


def _restore(run: RunDir, kit: Kit, config, regions, console, is_main: bool) -> TrainState:
    """A fresh state, or a resumed run's state after checking that its files agree."""
    state = TrainState()
    if not config.resume:
        return state
    if not run.has_checkpoint("last"):
        console.print(f"{run.path}: no epoch was completed before; starting from epoch 1")
        return state
    weights, meta = run.load_checkpoint("last")
    last = run.checkpoint("last")
    origin = str(last)
    check_meta(meta, origin, config.model_dump(), regions)
    e = kit.engine
    check_state_matches(e.model.state_dict(), weights, origin)
    e.model.load_state_dict(weights)
    saved = load_trainer_state(last)
    try:
        e.optimizer.load_state_dict(saved["optimizer"])
    except ValueError as err:
        raise SkinclsError(f"{origin}: optimizer state does not fit the model: {err}") from None
    planned, now = restore_scheduler(
        e.scheduler, saved["scheduler"], int(saved["train_state"]["updates"])
    )
    if e.ema is not None:
        if "ema" not in saved:
            raise SkinclsError(f"{origin}: no EMA weights in the trainer state to resume from")
        e.ema.module.load_state_dict(saved["ema"])
    e.scaler.load_state_dict(saved["scaler"])
    set_rng_state(saved["rng"])
    state.load_state_dict(saved["train_state"])
    state.history = run.history()[: state.epoch]
    if state.epoch >= config.epochs:
        console.print(f"{run.path}: already trained {state.epoch} of {config.epochs} epochs")
    elif planned != now and is_main:
        _record_new_schedule(run, config, state, console)
    return state


def _record_new_schedule(run: RunDir, config, state: TrainState, console) -> None:
    """Say that ``--epochs`` changed the schedule of a resumed run, and record it: the new
    number of epochs in ``config.yaml`` (a later ``--resume`` keeps it) and each schedule with
    its first epoch in ``run.json``."""
    from skincls.core.config import save_config

    saved = run.config()
    verb = "extends" if config.epochs > saved.epochs else "shortens"
    console.print(
        f"--epochs {config.epochs} {verb} the run's schedule of {saved.epochs} epochs: from epoch "
        f"{state.epoch + 1} on, the learning rate follows the schedule of a {config.epochs}-epoch "
        "run (recorded in config.yaml and run.json)"
    )
    history = [s.model_dump() for s in run.status().schedules or []] or [
        {"epochs": saved.epochs, "from_epoch": 1}
    ]
    history.append({"epochs": config.epochs, "from_epoch": state.epoch + 1})
    run.update_status(schedules=history)
    save_config(saved.model_copy(update={"epochs": config.epochs}), run.path / "config.yaml")


def _start(run: RunDir, config, kit: Kit, dctx, state: TrainState, group: str | None) -> Any:
    """The wandb tracker (rank 0 only; same id on resume) and the run's status file."""
    from skincls import __version__
    from skincls.core.tracking import Tracker

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
        e = kit.engine
        run.update_status(
            wandb_id=tracker.run_id,
            wandb_mode=config.wandb,
            status="running",
            device=str(e.device),
            world_size=dctx.world_size,
            amp=str(e.dtype) if e.dtype else "off",
            skincls_version=__version__,
            torch_version=torch.__version__,
        )
    return tracker


def _calibrate(run, config, kit: Kit, regions, train_samples, state, console, dctx) -> None:
    """Fit the served checkpoint's temperatures and decision rules on the validation split, store
    them in ``best/meta.json`` and serve them from the model (``--no-calibrate``: neither)."""
    from skincls.data.samples import label_counts
    from skincls.model.calibration import apply_serving, calibrate
    from skincls.model.inference import collect_logits

    if not config.calibrate or kit.val_loader is None or state.best_epoch <= 0:
        return
    e = kit.engine
    weights, meta = run.load_checkpoint("best")
    e.model.load_state_dict(weights)
    val = collect_logits(e.model, kit.val_loader, e.device, e.dtype, e.channels_last, dctx)
    counts = label_counts(regions, train_samples)
    calibration = calibrate(e.model, val, regions, counts, config.select)
    apply_serving(e.model, calibration)
    if dctx.is_main:
        run.write_meta("best", meta.model_copy(update={"calibration": calibration}))
        for name, c in calibration.items():
            v = c["val"]
            console.print(
                f"calibrated {name}: temperature {c['temperature']:.2f} (validation ECE "
                f"{v['ece_before']:.3f} -> {v['ece_after']:.3f}), decision rule tau "
                f"{c['tau']:g} for {c['select']}"
            )


def _test_best(run, config, kit: Kit, regions, samples, state, tracker, dctx):
    """Scores of the served checkpoint (``best/``) on the test split (never used for
    selection)."""
    from skincls.data.dataset import SampleDataset
    from skincls.data.sampler import EvalSampler
    from skincls.model.inference import make_loader, score

    epoch = served(state, config.serve_epoch)[0]
    if not samples or epoch <= 0:
        return None
    e = kit.engine
    weights, _ = run.load_checkpoint("best")
    e.model.load_state_dict(weights)  # calibration (not weights) stays as _calibrate set it
    names = [r.name for r in regions]
    ds = SampleDataset(samples, names, kit.eval_transforms, config.image_size)
    sampler = EvalSampler(len(ds), dctx.rank, dctx.world_size)
    loader = make_loader(ds, sampler, config.batch_size, config.workers, e.device)
    result = score(e.model, loader, regions, e.device, e.dtype, e.channels_last, dctx)
    result.pop("bad_indices", None)
    result.update({"split": "test", "checkpoint": "best", "epoch": epoch})
    if dctx.is_main:
        run.write_evaluation(Evaluation.parse(result, str(run.path / EVALUATION)))
    for name, m in result["regions"].items():
        classes = next(r.classes for r in regions if r.name == name)
        tracker.log_confusion(name, classes, m["confusion_matrix"], step=len(state.history))
    tracker.summary({f"test/{k}": v for k, v in result["mean"].items()})
    return result


def _write_report(run: RunDir, config: TrainConfig, console: Any) -> None:
    """``RUN/report.html`` (unless ``--no-report``); a report that cannot be built is a warning
    naming the error, never a failed run (``skincls report RUN`` can build it later)."""
    if not config.report:
        return
    from skincls.serving.report import build_report

    try:
        report = build_report(run.path)
    except Exception as err:  # an optional page must never fail a finished run
        console.print(f"report not written: {type(err).__name__}: {err}", style="yellow")
        return
    console.print(f"report: {report['path']} ({report['size_bytes'] / 1e6:.1f} MB)")


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
