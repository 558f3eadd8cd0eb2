"""The owner of one training run: what ``train`` builds once and every phase of the run reads.

``train`` resolves the config once (options, resume, recipe defaults, absolute paths, the run's
output path) into a frozen :class:`~skincls.core.config.TrainConfig`, builds the components, and
passes one :class:`RunContext` to the phases (restore, fit, calibration, test, finish) instead
of threading the run directory, config, components, distributed context and console through
every call.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from skincls.core import distributed as D


@dataclass(frozen=True)
class RunContext:
    config: Any
    """The resolved, frozen TrainConfig: read, never rebuilt."""
    run: Any
    """The run directory (:class:`skincls.run.rundir.RunDir`)."""
    dataset: Any
    parts: dict[str, list[Any]]
    """The samples of the ``train``, ``val`` and ``test`` parts of the split."""
    kit: Any
    """The components (:class:`skincls.training.components.Kit`)."""
    dctx: D.DistContext
    console: Any
    tracker: Any = None
    epoch_tables: bool = True
    """Print the validation table every epoch (else only the last epoch's)."""

    @property
    def regions(self) -> list[Any]:
        return self.dataset.regions

    @property
    def writes(self) -> bool:
        """Whether this process writes files and logs (rank 0)."""
        return self.dctx.is_main


def resolve_config(config: Any, dctx: D.DistContext) -> tuple[Any, list[str]]:
    """The run's config, resolved once: absolute data, regions and weights paths and the output
    directory (default ``runs/<time>-<backbone>``, chosen by rank 0) for a new run; the learning
    rate, EMA decay and served epoch the recipe gives (:func:`resolve_recipe`) for any run. Also
    the lines the start-of-run summary prints about the defaults it chose."""
    from skincls.training.recipe import resolve_recipe

    if not config.resume:
        config = config.model_copy(update=_new_run_paths(config, dctx))
    return resolve_recipe(config, dctx.world_size)


def _new_run_paths(config: Any, dctx: D.DistContext) -> dict[str, Any]:
    from skincls.model.weights import PACKAGED, resolve_packaged

    pretrained = config.pretrained
    if pretrained in PACKAGED:
        resolve_packaged(pretrained, config.backbone)  # installed, and for this backbone
    elif pretrained not in ("hub", "none"):
        pretrained = str(Path(pretrained).resolve())
    output = config.output or str(
        Path("runs") / f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{config.backbone}"
    )
    return {
        "data": str(Path(config.data).resolve()),
        "regions_dir": [str(Path(d).resolve()) for d in config.regions_dir],
        "pretrained": pretrained,
        "output": D.broadcast(output, dctx),
    }
