"""How a training run ended, and what ``skincls train`` prints last."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skincls.core.names import DEFAULT_SELECT


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
