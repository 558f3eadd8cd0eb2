"""End-of-epoch behaviour as small callbacks (a protocol, not a framework).

The fit loop calls ``on_epoch_end`` of each callback in order after every epoch, and
``on_fit_end`` once with the final status. A new end-of-epoch behaviour is a new callback:

- :class:`HistoryWriter`: ``metrics.jsonl`` and ``metrics.csv``;
- :class:`CheckpointSaver`: ``best/``, the served checkpoint, when the selection metric
  improved or, with ``--serve-epoch last``, every epoch (the raw or the EMA weights, whichever
  validated better), and ``last/`` (raw weights, for resuming) always;
- :class:`WandbLogger`: per-epoch metrics to wandb;
- :class:`ConsoleReporter`: the epoch line and validation table, with the run's ETA;
- :class:`EpochHook`: a plain ``fn(epoch, record)``, e.g. the sweep's Optuna pruner;
- :class:`EarlyStopping`: ends the run after ``--patience`` epochs without a better validation
  selection metric (it raises :class:`StopEarly`, which the fit loop treats as a normal end).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from skincls.core import distributed as D
from skincls.training.loop import TrainState


@dataclass
class EpochEnd:
    """What callbacks see: the epoch just completed (1-based), its record (also the last entry
    of ``state.history``), the validation metrics (None without a validation split), whether the
    selection metric improved, the epoch's seconds and an estimate of the seconds left."""

    epoch: int
    record: dict[str, Any]
    val: dict[str, Any] | None
    improved: bool
    state: TrainState
    seconds: float = 0.0
    remaining: float = 0.0


class Callback:
    def on_epoch_end(self, end: EpochEnd) -> None:
        """After every epoch; may raise to stop training (the run is marked failed/pruned)."""

    def on_fit_end(self, status: str) -> None:
        """Once, with ``finished``, ``interrupted``, ``failed`` or ``pruned``."""


class HistoryWriter(Callback):
    def __init__(self, run: Any) -> None:
        self.run = run

    def on_epoch_end(self, end: EpochEnd) -> None:
        self.run.write_history(end.state.history)


class CheckpointSaver(Callback):
    """Saves on rank 0 (``write``); every rank waits for the save before the next epoch."""

    def __init__(
        self,
        run: Any,
        weights: Callable[[], dict[str, Any]],
        meta: Callable[[EpochEnd], Any],
        trainer_state: Callable[[], dict[str, Any]],
        write: bool = True,
        dctx: D.DistContext | None = None,
        best_weights: Callable[[EpochEnd], dict[str, Any]] | None = None,
        serve_epoch: str | None = None,
    ) -> None:
        self.run, self.weights, self.meta, self.trainer_state = run, weights, meta, trainer_state
        self.write, self.dctx = write, dctx or D.DistContext()
        self.best_weights, self.serve_epoch = best_weights, serve_epoch

    def on_epoch_end(self, end: EpochEnd) -> None:

        if self.write:
            meta, state, weights = self.meta(end), self.trainer_state(), self.weights()
            if end.improved or self.serve_epoch == "last":
                best = self.best_weights(end) if self.best_weights else weights
                self.run.save_checkpoint(
                    "best", best, meta.model_copy(update={"best": True}), state
                )
            self.run.save_checkpoint("last", weights, meta, state)
        D.barrier(self.dctx)


class WandbLogger(Callback):
    def __init__(self, tracker: Any) -> None:
        self.tracker = tracker

    def on_epoch_end(self, end: EpochEnd) -> None:
        values = {k: v for k, v in end.record.items() if k != "epoch"}
        self.tracker.log(values | {"epoch": end.epoch}, step=end.epoch)


class ConsoleReporter(Callback):
    """The epoch line each epoch, and the validation table each epoch or (``every_table``
    False) only at the last."""

    def __init__(self, console: Any, epochs: int, every_table: bool = True) -> None:
        self.console, self.epochs, self.every_table = console, epochs, every_table

    def on_epoch_end(self, end: EpochEnd) -> None:
        from skincls.core.console import print_epoch

        best = end.improved and end.val is not None  # no validation split: nothing is "best"
        table = end.val if self.every_table or end.epoch >= self.epochs else None
        print_epoch(self.console, end.epoch, self.epochs, end.record, table, best, end.remaining)


class StopEarly(Exception):
    """Raised by a callback to end training normally; the message is the reason, kept in
    ``run.json`` as ``stopped_early``."""


class EarlyStopping(Callback):
    """Stops after ``patience`` epochs without a better validation ``metric`` (0: never). Every
    rank sees the same gathered metrics, so all ranks stop together."""

    def __init__(self, patience: int, metric: str) -> None:
        self.patience, self.metric = patience, metric

    def reason(self, state: TrainState) -> str | None:
        """Why training should stop now, or None; also true of a resumed run that had stopped."""
        since = state.epoch - state.best_epoch
        if self.patience <= 0 or state.best_epoch <= 0 or since < self.patience:
            return None
        return (
            f"no better validation {self.metric} for {since} epoch(s) after epoch "
            f"{state.best_epoch} (--patience {self.patience})"
        )

    def on_epoch_end(self, end: EpochEnd) -> None:
        reason = self.reason(end.state) if end.val is not None else None
        if reason:
            raise StopEarly(reason)


class EpochHook(Callback):
    """Adapts a plain ``fn(epoch, record)``; what it raises stops training."""

    def __init__(self, fn: Callable[[int, dict[str, Any]], None]) -> None:
        self.fn = fn

    def on_epoch_end(self, end: EpochEnd) -> None:
        self.fn(end.epoch, end.record)
