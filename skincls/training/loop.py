"""The training loop: ``TrainState``, the multi-task loss, one step and one epoch.

Nothing here knows about files, consoles or wandb: what happens at the end of an epoch is a
callback (:mod:`skincls.training.callbacks`), and the run directory is :class:`skincls.run.rundir.RunDir`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import zip_longest
from typing import Any

import torch
from torch import nn

from skincls.core import distributed as D
from skincls.core.errors import SkinclsError
from skincls.core.runtime import GracefulStop, autocast
from skincls.model.inference import collate_to


@dataclass
class TrainState:
    """Where training stands: epochs completed, optimizer updates done, the best epoch so far
    and the per-epoch records. Saved in ``trainer.pt`` (all but the history, which is
    ``metrics.jsonl``)."""

    epoch: int = 0
    updates: int = 0
    best_metric: float = -math.inf
    best_epoch: int = -1
    history: list[dict[str, Any]] = field(default_factory=list)

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "updates": self.updates,
            "best_metric": self.best_metric,
            "best_epoch": self.best_epoch,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch = int(state["epoch"])
        self.updates = int(state["updates"])
        self.best_metric = float(state["best_metric"])
        self.best_epoch = int(state["best_epoch"])

    def improve(self, value: float | None, lower_is_better: bool = False) -> bool:
        """Record the epoch just completed; True when ``value`` beats the best so far (is lower,
        with ``lower_is_better``). Without a validation split (``value`` None) there is no
        figure to compare: each epoch is the latest and is kept, with best_metric NaN."""
        if value is None:
            self.best_metric, self.best_epoch = math.nan, self.epoch
            return True
        first = self.best_epoch < 0 or math.isnan(self.best_metric)
        if first or (value < self.best_metric if lower_is_better else value > self.best_metric):
            self.best_metric, self.best_epoch = value, self.epoch
            return True
        return False


def served(state: TrainState, serve_epoch: str | None) -> tuple[int, float]:
    """The epoch whose weights ``best/`` holds under ``serve_epoch`` (``last``; anything else
    serves the best epoch) and its validation selection figure (-1 and -inf before any
    epoch; NaN without a validation split)."""
    if serve_epoch == "last" and state.history:
        value = state.history[-1]["select"]
        return state.epoch, math.nan if value is None else float(value)
    return state.best_epoch, state.best_metric


def batch_label_counts(labels: torch.Tensor, ok: torch.Tensor) -> list[int]:
    """Per head, the decodable samples of a (CPU) batch that carry a label for it (counted in
    NumPy: host data, no device involved)."""
    return ((labels.numpy() >= 0) & ok.numpy()[:, None]).sum(0).tolist()


def multitask_loss(
    logits: tuple[torch.Tensor, ...],
    labels: torch.Tensor,
    ok: torch.Tensor,
    loss_fns: nn.ModuleDict,
    region_names: list[str],
    head_weights: list[float],
    denominator: float,
) -> torch.Tensor:
    """The per-label mean over all heads: sum over heads r of ``head_weights[r]`` times the sum
    of r's loss on the decodable samples labelled for r, divided by ``denominator`` (the number
    of such labels; see :meth:`Engine.train_step` under DDP). Every label counts alike, and the
    total does not grow with the number of heads present.

    Each head's per-sample loss (``reduction="none"``) is computed on the whole batch and masked,
    so there is no host synchronisation and every head joins the graph (DDP reduces the same
    parameters on every rank); a head without a label gets a zero gradient, which
    :meth:`Engine.train_step` turns into no update at all.
    """
    valid = (labels >= 0) & ok[:, None]
    total = torch.zeros((), device=labels.device)
    for i, name in enumerate(region_names):
        per_sample = loss_fns[name](logits[i], labels[:, i].clamp(min=0))
        total = total + head_weights[i] * torch.where(valid[:, i], per_sample, 0.0).sum()
    return total / denominator


@dataclass
class EpochStats:
    train_loss: float
    images_per_s: float
    skipped_nan_steps: int
    seconds: float


@dataclass
class Engine:
    """The pieces one optimisation step needs. ``net`` is ``model`` or its DDP wrapper.

    The hot path reads nothing back from the device per region or per micro-batch: label counts
    come from the CPU batch (summed over ranks on a CPU process group), the loss and the
    finiteness of each micro-batch accumulate on the device, and the host looks once per
    optimizer update (whether the group was finite: it must decide whether to step) and once per
    ``log_every`` micro-batches (the running loss for the progress bar)."""

    net: nn.Module
    model: nn.Module
    loss_fns: nn.ModuleDict
    names: list[str]
    head_weights: list[float]
    optimizer: Any
    scheduler: Any
    scaler: Any
    device: torch.device
    dtype: torch.dtype | None = None
    grad_clip: float = 0.0
    accum: int = 1
    channels_last: bool = False
    on_nan: str = "skip"
    dctx: D.DistContext = field(default_factory=D.DistContext)
    ema: Any = None
    """timm's ``ModelEmaV3`` of ``model``, updated after every optimizer step (or None)."""
    log_every: int = 20
    group_counts: list[float] = field(default_factory=list)
    group_finite: torch.Tensor | None = None

    def train_step(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        ok: torch.Tensor,
        counts: list[int],
        state: TrainState,
        last_micro: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One micro-batch: forward under autocast, the per-label multi-task loss, backward; on
        the last micro-batch of an accumulation group an optimizer update (with clipping) and a
        schedule step. ``counts`` are the batch's labels per head (:func:`batch_label_counts`).
        Returns the detached loss and whether it was finite, both still on the device. A group
        with a non-finite loss on any rank changes no weight (the schedule still advances);
        with ``on_nan="stop"`` it raises instead.

        Under DDP the counts are summed over ranks and the loss divided by the global count over
        the world size, so the gradient DDP averages is the global per-label mean: one process
        with batch B x N and N processes with batch B take the same step. A head with no label
        in the whole group (on any rank) is left out of the update: its parameters, moments and
        weight decay stay as they were, with 1 process or N."""
        total = D.reduce_sum_host([float(c) for c in counts], self.dctx)
        self.group_counts = [a + b for a, b in zip_longest(self.group_counts, total, fillvalue=0)]
        denominator = max(sum(total), 1.0) / self.dctx.world_size
        with D.no_sync(self.net, skip=not last_micro):
            with autocast(self.device, self.dtype):
                logits = self.net(images)
            loss = multitask_loss(
                logits, labels, ok, self.loss_fns, self.names, self.head_weights, denominator
            )
            finite = torch.isfinite(loss.detach())
            self.group_finite = finite if self.group_finite is None else self.group_finite & finite
            self.scaler.scale(loss / self.accum).backward()
        if last_micro:
            if self._update(state, loss) and self.ema is not None:
                self.ema.update(self.model, step=state.updates + 1)
            self._advance(state)
        return loss.detach(), finite

    def _update(self, state: TrainState, loss: torch.Tensor) -> bool:
        """The optimizer step of an accumulation group; False when there was nothing to step
        (no decodable label) or the group's loss was not finite on some rank."""
        stepped = sum(self.group_counts) > 0
        if stepped:
            assert self.group_finite is not None
            stepped = D.all_true_tensor(self.group_finite, self.dctx)  # the one host read
            if not stepped and self.on_nan == "stop":
                raise SkinclsError(
                    f"epoch {state.epoch + 1} optimizer step {state.updates + 1}: loss is "
                    f"{float(loss.detach())}; stopping (--on-nan stop). Lower --lr or check "
                    "the data."
                )
        if stepped:
            heads: dict[str, nn.Module] = self.model.heads  # type: ignore[assignment]
            for name, n in zip(self.names, self.group_counts, strict=True):
                if n == 0:
                    for p in heads[name].parameters():
                        p.grad = None
            if self.grad_clip > 0:
                self.scaler.unscale_(self.optimizer)
                params = [p for p in self.model.parameters() if p.grad is not None]
                nn.utils.clip_grad_norm_(params, self.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        self._zero_grad()
        return stepped

    def _zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.group_counts = []
        self.group_finite = None

    def _advance(self, state: TrainState) -> None:
        state.updates += 1
        self.scheduler.step_update(num_updates=state.updates)

    def train_epoch(
        self,
        loader: Iterable,
        steps: int,
        state: TrainState,
        stop: GracefulStop,
        on_bad: Callable[[list[int]], None] = lambda indices: None,
        progress: Callable[[float, float], None] = lambda loss, rate: None,
    ) -> EpochStats:
        """Up to ``steps`` micro-batches of ``loader``. ``on_bad`` receives the sample indices
        that did not decode; ``progress`` the running mean loss (read every ``log_every``
        micro-batches) and images/s after each micro-batch."""
        self.net.train()
        t0 = time.perf_counter()
        sums = torch.zeros(3, device=self.device, dtype=torch.float64)  # loss, finite, images
        running, done, drawn = math.nan, 0, 0
        self._zero_grad()
        for step, batch in enumerate(loader):
            if step >= steps:
                break
            stop.check()
            _, labels_cpu, ok_cpu, index = batch
            if not ok_cpu.numpy().all():
                on_bad(index.numpy()[~ok_cpu.numpy()].tolist())
            counts = batch_label_counts(labels_cpu, ok_cpu)
            images, labels, ok, _ = collate_to(batch, self.device, self.channels_last)
            last_micro = (step + 1) % self.accum == 0 or step + 1 == steps
            loss, finite = self.train_step(images, labels, ok, counts, state, last_micro)
            kept = finite.double()
            sums += torch.stack([torch.where(finite, loss, 0.0).double(), kept, kept * len(index)])
            done, drawn = step + 1, drawn + len(index)
            if done % self.log_every == 0:
                loss_sum, n, _ = sums.tolist()
                running = loss_sum / max(n, 1)
            progress(running, drawn / max(time.perf_counter() - t0, 1e-9))
        seconds = time.perf_counter() - t0
        loss_sum, n, seen = D.reduce_sum(sums.tolist(), self.dctx, self.device)
        return EpochStats(
            train_loss=loss_sum / max(n, 1),
            images_per_s=seen / max(seconds, 1e-9),
            skipped_nan_steps=int(done * self.dctx.world_size - n),
            seconds=seconds,
        )
