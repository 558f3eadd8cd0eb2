"""The training loop: ``TrainState``, the multi-task loss, one step and one epoch.

Nothing here knows about files, consoles or wandb: what happens at the end of an epoch is a
callback (:mod:`skincls.engine.callbacks`), and the run directory is :class:`skincls.runs.RunDir`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from skincls import distributed as D
from skincls.engine.runtime import GracefulStop, autocast
from skincls.errors import SkinclsError
from skincls.inference import collate_to


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

    def improve(self, value: float) -> bool:
        """Record the epoch just completed; True when ``value`` beats the best so far."""
        if value > self.best_metric:
            self.best_metric, self.best_epoch = value, self.epoch
            return True
        return False


def multitask_loss(
    logits: tuple[torch.Tensor, ...],
    region_idx: torch.Tensor,
    labels: torch.Tensor,
    ok: torch.Tensor,
    loss_fns: nn.ModuleDict,
    region_names: list[str],
    touch_all: bool = False,
) -> torch.Tensor:
    """Sum over regions of each head's loss on its own (decodable) samples only.

    A region with no sample in the batch adds nothing, so its head gets no gradient. With
    ``touch_all`` (DistributedDataParallel) every head joins the graph with weight zero, so
    all ranks reduce the same parameters.
    """
    loss = torch.zeros((), device=labels.device)
    if touch_all:
        loss = loss + sum(lg.float().sum() for lg in logits) * 0.0
    for i, name in enumerate(region_names):
        mask = (region_idx == i) & ok
        n = int(mask.sum())
        if n == mask.numel():  # the whole batch belongs to this head: no gather needed
            loss = loss + loss_fns[name](logits[i], labels)
        elif n:
            loss = loss + loss_fns[name](logits[i][mask], labels[mask])
    return loss


@dataclass
class EpochStats:
    train_loss: float
    images_per_s: float
    skipped_nan_steps: int
    seconds: float


@dataclass
class Engine:
    """The pieces one optimisation step needs. ``net`` is ``model`` or its DDP wrapper."""

    net: nn.Module
    model: nn.Module
    loss_fns: nn.ModuleDict
    names: list[str]
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

    def train_step(
        self, images, region_idx, labels, ok, state: TrainState, last_micro: bool = True
    ) -> tuple[torch.Tensor, bool]:
        """One micro-batch: forward under autocast, masked multi-task loss, backward; on the last
        micro-batch of an accumulation group an optimizer update (with clipping) and a schedule
        step. Returns the loss and whether it was finite on every rank; a non-finite loss changes
        no weight (the schedule still advances)."""
        with D.no_sync(self.net, skip=not last_micro):
            with autocast(self.device, self.dtype):
                logits = self.net(images)
            loss = multitask_loss(
                logits, region_idx, labels, ok, self.loss_fns, self.names, self.dctx.enabled
            )
            finite = D.all_true(bool(torch.isfinite(loss)), self.dctx, self.device)
            if not finite:
                self.optimizer.zero_grad(set_to_none=True)
                if last_micro:
                    self._advance(state)
                return loss, False
            if loss.requires_grad:
                self.scaler.scale(loss / self.accum).backward()
        if last_micro:
            self._update()
            self._advance(state)
        return loss, True

    def _update(self) -> None:
        params = [p for p in self.model.parameters() if p.grad is not None]
        if params:  # no decodable image in the whole group: nothing to step (and no scaler)
            if self.grad_clip > 0:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(params, self.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)

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
        that did not decode; ``progress`` the running mean loss and images/s after each step."""
        self.net.train()
        t0 = time.perf_counter()
        seen, loss_sum, loss_n, skipped = 0, 0.0, 0, 0
        self.optimizer.zero_grad(set_to_none=True)
        for step, batch in enumerate(loader):
            if step >= steps:
                break
            stop.check()
            images, region_idx, labels, ok, index = collate_to(
                batch, self.device, self.channels_last
            )
            if not bool(ok.all()):
                on_bad(index[~ok.cpu()].tolist())
            last_micro = (step + 1) % self.accum == 0 or step + 1 == steps
            loss, finite = self.train_step(images, region_idx, labels, ok, state, last_micro)
            if not finite:
                if self.on_nan == "stop":
                    raise SkinclsError(
                        f"epoch {state.epoch + 1} step {step + 1}: loss is {loss.item()}; "
                        "stopping (--on-nan stop). Lower --lr or check the data."
                    )
                skipped += 1
                continue
            seen += images.shape[0]
            loss_sum += float(loss.detach())
            loss_n += 1
            progress(loss_sum / loss_n, seen / max(time.perf_counter() - t0, 1e-9))
        seconds = time.perf_counter() - t0
        total_loss, total_n, total_seen = D.reduce_sum(
            [loss_sum, loss_n, seen], self.dctx, self.device
        )
        return EpochStats(
            train_loss=total_loss / max(total_n, 1),
            images_per_s=total_seen / max(seconds, 1e-9),
            skipped_nan_steps=skipped,
            seconds=seconds,
        )
