"""Every file of a run directory, by name, and the typed JSON files among them.

``run.json`` (:class:`RunStatus`), each checkpoint's ``meta.json`` (:class:`CheckpointMeta`) and
``evaluation.json`` (:class:`Evaluation`) are pydantic models with a ``format`` version. Reading
validates: a damaged or edited file, or one written by a newer skincls, is one clear error naming
the file and the field. Files written before the version existed read as format 1.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from skincls.core.errors import SkinclsError

CONFIG = "config.yaml"
REGIONS = "regions"
HEAD_ORDER = "order.txt"
SPLIT = "split.csv"
STATUS = "run.json"
HISTORY = "metrics.jsonl"
HISTORY_CSV = "metrics.csv"
BEST = "best"
LAST = "last"
EVALUATION = "evaluation.json"
BAD_IMAGES = "bad_images.txt"
REPORT = "report.html"
WANDB = "wandb"
LOCK = ".lock"
WEIGHTS = "model.safetensors"
META = "meta.json"
TRAINER = "trainer.pt"
ONNX = "model.onnx"
"""Where ``skincls export RUN`` writes by default. Not a run entry: ``--overwrite`` of a run
directory holding an exported model is refused rather than deleting it."""
CHECKPOINTS = (BEST, LAST)
CV_PLAN = "cv.plan.json"
"""What a ``skincls cv`` directory was started with (folds, data, seed, regions)."""
CV_RESULT = "cv.json"
OOF = "oof.csv"


def fold_dir(cv_dir: Path, fold: int) -> Path:
    """The run directory of fold ``fold`` (0-based) of a cv directory."""
    return Path(cv_dir) / f"fold-{fold}"


RUN_ENTRIES = {
    CONFIG,
    REGIONS,
    SPLIT,
    STATUS,
    HISTORY,
    HISTORY_CSV,
    *CHECKPOINTS,
    *(f"{c}.old" for c in CHECKPOINTS),
    EVALUATION,
    BAD_IMAGES,
    REPORT,
    WANDB,
    LOCK,
}
"""What skincls writes into a run directory: a directory holding only these may be replaced
with ``--overwrite``."""


class Artifact(BaseModel):
    """A JSON file of a run, with its format version."""

    model_config = ConfigDict(extra="forbid")
    FORMAT: ClassVar[int] = 1
    format: int = 1

    @field_validator("*", mode="before")
    @classmethod
    def _no_figure_is_none(cls, value: Any) -> Any:
        """A NaN or infinite figure (no validation split; no epoch yet) is stored as null:
        JSON has no NaN, and nothing may read it as a figure."""
        return None if isinstance(value, float) and not math.isfinite(value) else value

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: int) -> int:
        if value > cls.FORMAT:
            raise ValueError(
                f"format {value} was written by a newer skincls (this one reads up to "
                f"{cls.FORMAT}); upgrade skincls to read it"
            )
        return value

    @classmethod
    def read(cls, path: Path) -> Any:
        """The file at ``path`` as this model; any flaw is a :class:`SkinclsError`."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as err:
            raise SkinclsError(f"{path}: damaged ({err})") from None
        return cls.parse(data, str(path))

    @classmethod
    def parse(cls, data: Any, origin: str) -> Any:
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'the file'}: {e['msg']}"
                + ("" if e["type"] == "missing" else f" (got {_short(e.get('input'))})")
                for e in err.errors()
            )
            raise SkinclsError(f"{origin}: damaged or edited: {problems}") from None

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class HeadMeta(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    classes: list[str]
    ordinal: bool = False


class CheckpointMeta(Artifact):
    """``meta.json`` of a checkpoint: what serving needs besides the weights. ``resize`` and
    ``serving`` are not stored: :func:`skincls.run.load.load_run` sets them (per head, the
    resize policy and the served decision)."""

    skincls_version: str
    backbone: str
    image_size: int
    mean: list[float]
    std: list[float]
    regions: list[HeadMeta]
    losses: dict[str, str] = Field(default_factory=dict)
    heads: dict[str, str] = Field(default_factory=dict)
    decisions: dict[str, str] = Field(default_factory=dict)
    epoch: int
    weights: str = "raw"
    select: str
    metric: float | None = None
    dropout: float = 0.0
    best: bool = False
    calibration: dict[str, dict[str, Any]] | None = None
    settings: dict[str, Any] | None = None
    """The options and region fields the weights were trained with
    (:func:`skincls.run.settings.record_settings`); absent in runs of skincls 0.4 and older."""
    resize: dict[str, str] = Field(default_factory=dict, exclude=True)
    serving: dict[str, Any] = Field(default_factory=dict, exclude=True)


class ScheduleEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    epochs: int
    from_epoch: int


class RunStatus(Artifact):
    """``run.json``: how the run stands or ended, where it ran, and its wandb id."""

    status: str | None = None
    error: str | None = None
    wandb_id: str | None = None
    wandb_mode: str | None = None
    device: str | None = None
    world_size: int | None = None
    amp: str | None = None
    skincls_version: str | None = None
    torch_version: str | None = None
    best_epoch: int | None = None
    best_metric: float | None = None
    served_epoch: int | None = None
    served_metric: float | None = None
    stopped_early: str | None = None
    schedules: list[ScheduleEntry] | None = None
    pretrained_match: str | None = None
    """How ``--pretrained FILE`` was matched to the backbone ("by name: ..." / "by position: ...")."""


class Evaluation(Artifact):
    """``evaluation.json``: the served checkpoint's figures on the test split."""

    regions: dict[str, dict[str, Any]]
    mean: dict[str, float | None]
    split: str
    checkpoint: str
    epoch: int | None = None
    intervals: dict[str, Any] | None = None
    """Group-bootstrap intervals of every figure (:func:`skincls.core.bootstrap.intervals`)."""
