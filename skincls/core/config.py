"""TrainConfig: every ``skincls train`` option, validated; saved resolved in each run directory.

The names of losses, samplers, region balances and selection metrics are defined here once (as
``Literal`` types); the region spec, the CLI (help and choices), the losses, the sampler and the
sweep space take them from here.

Precedence: defaults < ``--config FILE`` < options given on the command line.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from skincls.core.errors import SkinclsError
from skincls.core.names import (
    DEFAULT_SELECT,
    DecisionName,
    LossName,
    MetricName,
    ResizeName,
    SamplerName,
    SourceName,
)

DeviceKind = Literal["auto", "cpu", "cuda"]
AmpKind = Literal["auto", "bf16", "fp16", "off"]
RegionBalanceName = Literal["none", "sqrt", "equal"]
ServeEpoch = Literal["best", "last"]
NanPolicy = Literal["skip", "stop"]
WandbMode = Literal["online", "offline", "disabled"]

# Options that may differ when resuming; everything else must match the saved run.
RESUME_MUTABLE = {
    "epochs",
    "calibrate",
    "compile",
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
    "report",
    "patience",
}


def default_wandb_mode() -> str:
    mode = os.environ.get("WANDB_MODE", "offline").lower()
    return {"dryrun": "offline", "run": "online"}.get(mode, mode)


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    data: Annotated[
        str, Field(description="Training data (CSV manifest, image folder, AI Hub tree).")
    ]
    regions_dir: Annotated[
        list[str], Field(description="Extra directory of region YAML files (repeatable).")
    ] = Field(default_factory=list)
    region: Annotated[
        list[str],
        Field(description="Region to train (repeatable); default: every region with data."),
    ] = Field(default_factory=list)
    source: Annotated[SourceName, Field(description="Data source type.")] = "auto"
    group_column: Annotated[
        str | None, Field(description="CSV column that groups samples (subject, lesion).")
    ] = None
    skip_bad: Annotated[
        bool, Field(description="Skip and count bad records instead of stopping.")
    ] = False
    output: Annotated[
        str | None, Field(description="Run directory to create (default: runs/<time>-<backbone>).")
    ] = None
    overwrite: Annotated[bool, Field(description="Replace an existing run directory.")] = False
    seed: Annotated[int, Field(description="Random seed (split, sampling, initialisation).")] = 0
    split_seed: Annotated[
        int | None, Field(description="Seed of the split only (default: --seed).")
    ] = None
    device: Annotated[DeviceKind, Field(description="Where to train.")] = "auto"
    workers: Annotated[int, Field(ge=0, description="Data loader processes.")] = 2

    backbone: Annotated[str, Field(description="Any timm model name.")] = "resnet50"
    pretrained: Annotated[
        str,
        Field(
            description="Backbone weights: 'hub' (timm's for the name), 'none', or a local file."
        ),
    ] = "hub"
    image_size: Annotated[
        int, Field(ge=16, le=2048, description="Network input size in pixels.")
    ] = 224
    batch_size: Annotated[int, Field(ge=1, description="Batch size per process.")] = 32
    epochs: Annotated[int, Field(ge=1, description="Epochs.")] = 20
    lr: Annotated[
        float | None,
        Field(
            gt=0,
            le=1,
            description="Peak learning rate (AdamW); default 9e-4 x sqrt(global batch / 32) "
            "when fine-tuning, 1.4e-3 x sqrt(global batch / 32) from scratch (timm's scaling "
            "for adaptive optimisers).",
        ),
    ] = None
    weight_decay: Annotated[float, Field(ge=0, description="Weight decay.")] = 1e-4
    ema_decay: Annotated[
        float | None,
        Field(
            ge=0,
            lt=1,
            description="Keep an EMA of the weights (timm ModelEmaV3, with warm-up) and validate "
            "it each epoch beside the raw weights; best/ keeps whichever is better. 0: off. "
            "Default: 0.999.",
        ),
    ] = None
    head_lr_mult: Annotated[
        float, Field(gt=0, le=1000, description="Heads' learning rate relative to the backbone.")
    ] = 1.0
    layer_decay: Annotated[
        float | None,
        Field(
            gt=0,
            le=1,
            description="Layer-wise learning-rate decay of the backbone towards its input "
            "(timm's param_groups_layer_decay; off when not given).",
        ),
    ] = None
    dropout: Annotated[float, Field(ge=0, lt=1, description="Dropout before each head.")] = 0.3
    eta_min: Annotated[float, Field(ge=0, description="Final learning rate of the cosine.")] = 1e-6
    warmup_epochs: Annotated[int, Field(ge=0, description="Linear warm-up epochs.")] = 1
    grad_clip: Annotated[float, Field(ge=0, description="Gradient norm clip (0: off).")] = 1.0
    accum_steps: Annotated[int, Field(ge=1, description="Micro-batches per optimizer step.")] = 1
    sync_bn: Annotated[bool, Field(description="SyncBatchNorm across ranks (torchrun).")] = False
    amp: Annotated[
        AmpKind, Field(description="Mixed precision on CUDA (auto: bf16 if supported).")
    ] = "auto"
    channels_last: Annotated[bool, Field(description="channels_last memory format on CUDA.")] = True
    resize: Annotated[
        ResizeName,
        Field(
            description="How a crop becomes the square input, for regions without their own "
            "'resize:': squash (whole crop, aspect not kept), pad (whole crop, padded), crop "
            "(shorter side, centre square)."
        ),
    ] = "crop"
    calibrate: Annotated[
        bool,
        Field(
            description="After training, calibrate each head (a temperature and a bias per "
            "class) and choose its decision rule on the validation split; evaluate, predict and "
            "export use them."
        ),
    ] = True
    compile: Annotated[
        bool,
        Field(
            description="torch.compile the backbone (inductor: Triton on CUDA, a C++ compiler "
            "on CPU); the first steps of each mode take longer while it compiles."
        ),
    ] = False

    loss: Annotated[LossName, Field(description="Loss of every head (a region's loss: wins).")] = (
        "ce"
    )
    beta: Annotated[float, Field(ge=0, lt=1, description="Class-balanced beta (cb_* losses).")] = (
        0.999
    )
    gamma: Annotated[float, Field(ge=0, description="Focal gamma (focal, cb_focal).")] = 2.0
    tau: Annotated[float, Field(ge=0, description="Logit adjustment tau (logit_adjust).")] = 1.0
    label_smoothing: Annotated[
        float, Field(ge=0.0, lt=1.0, description="Label smoothing (ce, cb_softmax).")
    ] = 0.0
    decision: Annotated[
        DecisionName,
        Field(
            description="Grade an ordinal head predicts: the argmax or the median of its "
            "probabilities (a region's decision: wins)."
        ),
    ] = "argmax"
    sampler: Annotated[
        SamplerName,
        Field(
            description="Sampling within a region: sqrt (each class drawn in proportion to the "
            "square root of its count; the calibrated decision rule corrects the rest), "
            "class_balanced (every class equally often) or none (as in the data); a region's "
            "sampler: wins."
        ),
    ] = "sqrt"
    region_balance: Annotated[
        RegionBalanceName,
        Field(description="How often each region is drawn: by label count, sqrt, or equal."),
    ] = "sqrt"
    select: Annotated[
        MetricName,
        Field(
            description="Validation metric that picks the best checkpoint and each head's "
            "decision rule: ba_f1 (mean of balanced accuracy and macro F1), balanced_accuracy "
            "or macro_f1; for ordinal regions only qwk and within1 (higher is better, as all "
            "the others) or grade_mae (lower is better)."
        ),
    ] = DEFAULT_SELECT
    serve_epoch: Annotated[
        ServeEpoch | None,
        Field(
            description="The epoch best/ keeps, calibrates and every command serves: last (the "
            "final epoch, its raw or EMA weights, whichever validates better) or best (the "
            "epoch with the best validation --select figure). Default: last, or best with "
            "--patience.",
        ),
    ] = None
    patience: Annotated[
        int,
        Field(
            ge=0,
            description="Stop after this many epochs without a better validation metric "
            "(0: train all epochs).",
        ),
    ] = 0
    val_fraction: Annotated[float, Field(ge=0.0, lt=1.0, description="Validation share.")] = 0.15
    test_fraction: Annotated[float, Field(ge=0.0, lt=1.0, description="Test share.")] = 0.15
    max_steps_per_epoch: Annotated[
        int | None, Field(ge=1, description="Cap on steps per epoch (quick trials).")
    ] = None
    on_nan: Annotated[NanPolicy, Field(description="What a non-finite loss does.")] = "skip"
    max_bad_fraction: Annotated[
        float,
        Field(ge=0, le=1, description="Stop when a larger share of images cannot be decoded."),
    ] = 0.01

    wandb: Annotated[WandbMode, Field(description="wandb mode.")] = Field(
        default_factory=default_wandb_mode  # type: ignore[arg-type]
    )
    wandb_project: Annotated[str, Field(description="wandb project.")] = "skincls"
    wandb_entity: Annotated[str | None, Field(description="wandb entity.")] = None
    wandb_name: Annotated[str | None, Field(description="wandb run name.")] = None
    wandb_tags: Annotated[list[str], Field(description="wandb tag (repeatable).")] = Field(
        default_factory=list
    )
    resume: Annotated[str | None, Field(description="Continue the run in this directory.")] = None
    quiet: Annotated[bool, Field(description="Print less.")] = False
    report: Annotated[
        bool, Field(description="Write RUN/report.html at the end (skincls report).")
    ] = True

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ValueError(
                f"--val-fraction + --test-fraction must be < 1, got {self.val_fraction} + "
                f"{self.test_fraction}"
            )
        if self.lr is not None and self.eta_min > self.lr:
            raise ValueError(f"--eta-min ({self.eta_min}) must not exceed --lr ({self.lr})")
        if self.warmup_epochs >= self.epochs and self.epochs > 1:
            raise ValueError(
                f"--warmup-epochs ({self.warmup_epochs}) must be smaller than --epochs ({self.epochs})"
            )
        return self

    @property
    def fractions(self) -> tuple[float, float, float]:
        return (1.0 - self.val_fraction - self.test_fraction, self.val_fraction, self.test_fraction)


def _format(err: ValidationError, origin: str) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "config"
        if origin.endswith("options") and e["loc"]:
            loc = "--" + str(e["loc"][0]).replace("_", "-")
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown option"
        elif e["type"] != "missing" and "input" in e and not isinstance(e["input"], dict):
            msg += f" (got {e['input']!r})"
        lines.append(f"{origin}: {loc}: {msg}")
    return "\n".join(lines)


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML config of train options (keys as in ``config.yaml`` of a run, dashes allowed)."""
    from skincls.core.textio import load_yaml, read_text

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
    from skincls.core.fileio import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
