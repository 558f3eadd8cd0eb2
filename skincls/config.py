"""TrainConfig: every ``skincls train`` option, validated; saved resolved in each run directory.

Precedence: defaults < ``--config FILE`` < options given on the command line.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from skincls.errors import SkinclsError
from skincls.regions import LossName, SamplerName

Fraction = Annotated[float, Field(ge=0.0, lt=1.0)]

# Options that may differ when resuming; everything else must match the saved run.
RESUME_MUTABLE = {
    "epochs",
    "workers",
    "device",
    "wandb",
    "wandb_project",
    "wandb_entity",
    "wandb_name",
    "wandb_tags",
    "resume",
    "overwrite",
    "quiet",
    "data",
    "max_bad_fraction",
}


def default_wandb_mode() -> str:
    mode = os.environ.get("WANDB_MODE", "offline").lower()
    return {"dryrun": "offline", "run": "online"}.get(mode, mode)


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    data: str
    regions_dir: list[str] = Field(default_factory=list)
    region: list[str] = Field(default_factory=list)
    source: Literal["auto", "aihub", "folder", "csv"] = "auto"
    group_column: str | None = None
    skip_bad: bool = False
    output: str | None = None
    overwrite: bool = False
    seed: int = 0
    split_seed: int | None = Field(None, description="seed of the split; default: --seed")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    workers: Annotated[int, Field(ge=0)] = 2

    backbone: str = "resnet50"
    pretrained: str = Field(
        "hub", description="'hub' (timm weights for the backbone name), 'none', or a file path"
    )
    image_size: Annotated[int, Field(ge=16, le=2048)] = 224
    batch_size: Annotated[int, Field(ge=1)] = 32
    epochs: Annotated[int, Field(ge=1)] = 20
    lr: Annotated[float, Field(gt=0, le=1)] = 3e-4
    weight_decay: Annotated[float, Field(ge=0)] = 1e-4
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.3
    eta_min: Annotated[float, Field(ge=0)] = 1e-6
    warmup_epochs: Annotated[int, Field(ge=0)] = 1
    grad_clip: Annotated[float, Field(ge=0)] = 1.0
    accum_steps: Annotated[int, Field(ge=1)] = 1
    sync_bn: bool = False
    amp: Literal["auto", "bf16", "fp16", "off"] = "auto"
    channels_last: bool = True

    loss: LossName = "ce"
    beta: Annotated[float, Field(ge=0, lt=1)] = 0.999
    gamma: Annotated[float, Field(ge=0)] = 2.0
    tau: Annotated[float, Field(ge=0)] = 1.0
    label_smoothing: Fraction = 0.0
    sampler: SamplerName = "class_balanced"
    region_balance: Literal["none", "sqrt", "equal"] = "sqrt"
    select: Literal["balanced_accuracy", "macro_f1", "qwk"] = "balanced_accuracy"
    val_fraction: Fraction = 0.15
    test_fraction: Fraction = 0.15
    max_steps_per_epoch: Annotated[int, Field(ge=1)] | None = None
    on_nan: Literal["skip", "stop"] = "skip"
    max_bad_fraction: Annotated[float, Field(ge=0, le=1)] = 0.01

    wandb: Literal["online", "offline", "disabled"] = Field(default_factory=default_wandb_mode)  # type: ignore[arg-type]
    wandb_project: str = "skincls"
    wandb_entity: str | None = None
    wandb_name: str | None = None
    wandb_tags: list[str] = Field(default_factory=list)
    resume: str | None = None
    quiet: bool = False

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ValueError(
                f"val_fraction + test_fraction must be < 1, got {self.val_fraction} + "
                f"{self.test_fraction}"
            )
        if self.eta_min > self.lr:
            raise ValueError(f"eta_min ({self.eta_min}) must not exceed lr ({self.lr})")
        if self.warmup_epochs >= self.epochs and self.epochs > 1:
            raise ValueError(
                f"warmup_epochs ({self.warmup_epochs}) must be smaller than epochs ({self.epochs})"
            )
        return self

    @property
    def fractions(self) -> tuple[float, float, float]:
        return (1.0 - self.val_fraction - self.test_fraction, self.val_fraction, self.test_fraction)


def _format(err: ValidationError, origin: str) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "config"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown option"
        elif e["type"] != "missing" and "input" in e and not isinstance(e["input"], dict):
            msg += f" (got {e['input']!r})"
        lines.append(f"{origin}: {loc}: {msg}")
    return "\n".join(lines)


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML config of train options (keys as in ``config.yaml`` of a run, dashes allowed)."""
    from skincls.textio import load_yaml, read_text

    path = Path(path)
    data = load_yaml(read_text(path, "--config"), f"--config {path}") or {}
    if not isinstance(data, dict):
        raise SkinclsError(f"--config {path}: expected a mapping of option: value")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def build_config(values: dict[str, Any], origin: str = "options") -> TrainConfig:
    try:
        return TrainConfig.model_validate(values)
    except ValidationError as err:
        raise SkinclsError(_format(err, origin)) from None


def save_config(config: TrainConfig, path: Path) -> None:
    from skincls.runs import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
