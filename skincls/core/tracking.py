"""wandb tracking: one run per training run, resumed under the same id; nothing when disabled.

Offline mode writes ``<run dir>/wandb/offline-run-*`` for ``wandb sync``; only ``online`` talks to
a server.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any


class Tracker:
    def __init__(
        self,
        mode: str,
        run_dir: Path,
        config: dict[str, Any],
        project: str = "skincls",
        entity: str | None = None,
        name: str | None = None,
        tags: list[str] | None = None,
        run_id: str | None = None,
        group: str | None = None,
    ):
        self.mode = mode
        self.run = None
        self.run_id = run_id
        if mode == "disabled":
            return
        import wandb

        self._wandb = wandb
        self.run_id = run_id or uuid.uuid4().hex[:8]
        self.run = wandb.init(
            mode=mode,  # type: ignore[arg-type]
            dir=str(run_dir),
            project=project,
            entity=entity,
            name=name or run_dir.name,
            tags=tags or None,
            group=group,
            id=self.run_id,
            resume="allow",
            config=config,
            settings=wandb.Settings(silent=True, console="off", x_disable_stats=True),
        )

    def log(self, values: dict[str, Any], step: int) -> None:
        if self.run is not None:
            self.run.log(values, step=step)

    def log_confusion(
        self, region: str, classes: list[str], matrix: list[list[int]], step: int
    ) -> None:
        if self.run is None:
            return
        rows = [[t, p, matrix[i][j]] for i, t in enumerate(classes) for j, p in enumerate(classes)]
        table = self._wandb.Table(columns=["true", "predicted", "count"], data=rows)
        self.run.log({f"test/{region}/confusion_matrix": table}, step=step)

    def summary(self, values: dict[str, Any]) -> None:
        if self.run is not None:
            for k, v in values.items():
                self.run.summary[k] = v

    def finish(self, exit_code: int = 0) -> None:
        if self.run is not None:
            self.run.finish(exit_code=exit_code)
            self.run = None
