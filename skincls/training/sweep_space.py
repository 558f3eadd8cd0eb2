"""The search space of ``skincls sweep``: a YAML file validated by pydantic (distributions as a
discriminated union, ``fixed:`` train options), Optuna suggestions from it, and the equivalent
wandb sweep for teams with a wandb server."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from skincls.core.config import TrainConfig
from skincls.core.errors import SkinclsError
from skincls.core.names import DEFAULT_SELECT, SamplerName

SEARCHABLE = {
    name
    for name in TrainConfig.model_fields
    if name
    not in {
        "data",
        "output",
        "resume",
        "regions_dir",
        "region",
        "overwrite",
        "quiet",
        "wandb",
        "wandb_project",
        "wandb_entity",
        "wandb_name",
        "wandb_tags",
        "source",
        "group_column",
        "device",
        "workers",
    }
}


class _Range(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="after")
    def _check(self) -> _Range:
        low, high = self.low, self.high  # type: ignore[attr-defined]
        if low >= high:
            raise ValueError(f"low ({low}) must be below high ({high})")
        return self


class LogUniform(_Range):
    type: Literal["loguniform"]
    low: Annotated[float, Field(gt=0)]
    high: Annotated[float, Field(gt=0)]


class Uniform(_Range):
    type: Literal["uniform"]
    low: float
    high: float


class IntRange(_Range):
    type: Literal["int"]
    low: int
    high: int
    log: bool = False


class Categorical(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["categorical"]
    choices: Annotated[list[Union[str, float, int, bool]], Field(min_length=1)]  # noqa: UP007


Param = Annotated[Union[LogUniform, Uniform, IntRange, Categorical], Field(discriminator="type")]  # noqa: UP007


class SearchSpace(BaseModel):
    """Parameters to search (train option name -> distribution) plus the search settings."""

    model_config = ConfigDict(extra="forbid")
    parameters: dict[str, Param]
    fixed: dict[str, Any] = Field(default_factory=dict)
    pruner_warmup_epochs: Annotated[int, Field(ge=0)] = 1
    pruner_startup_trials: Annotated[int, Field(ge=0)] = 2

    @model_validator(mode="after")
    def _check(self) -> SearchSpace:
        for name in self.fixed:
            if name not in TrainConfig.model_fields:
                raise ValueError(f"fixed.{name}: not a train option")
        for name in self.parameters:
            if name not in SEARCHABLE:
                raise ValueError(
                    f"parameters.{name}: not a searchable train option (choose from "
                    f"{', '.join(sorted(SEARCHABLE))})"
                )
        for name, p in self.parameters.items():
            if isinstance(p, Categorical):
                for choice in p.choices:
                    try:
                        TrainConfig.model_validate({"data": ".", name: choice})
                    except ValidationError as err:
                        msg = err.errors()[0]["msg"]
                        raise ValueError(f"parameters.{name}: choice {choice!r}: {msg}") from None
        return self


def default_space() -> SearchSpace:
    """The seed project's space, plus loss and sampler as choices."""
    return SearchSpace.model_validate(
        {
            "parameters": {
                "lr": {"type": "loguniform", "low": 1e-5, "high": 1e-3},
                "dropout": {"type": "categorical", "choices": [0.2, 0.3, 0.4, 0.5]},
                "weight_decay": {"type": "loguniform", "low": 1e-6, "high": 1e-2},
                "gamma": {"type": "categorical", "choices": [0.5, 1.0, 2.0, 3.0]},
                "beta": {"type": "categorical", "choices": [0.9, 0.99, 0.999, 0.9999]},
                "loss": {
                    "type": "categorical",
                    "choices": ["ce", "cb_softmax", "cb_focal", "logit_adjust"],
                },
                "sampler": {"type": "categorical", "choices": list(get_args(SamplerName))},
            }
        }
    )


def load_space(path: str | Path | None) -> SearchSpace:
    if path is None:
        return default_space()
    from skincls.core.textio import load_yaml, read_text

    path = Path(path)
    data = load_yaml(read_text(path, "--config"), f"--config {path}")
    try:
        return SearchSpace.model_validate(data)
    except ValidationError as err:
        lines = []
        for e in err.errors():
            loc = ".".join(
                str(p) for p in e["loc"] if p not in ("loguniform", "uniform", "int", "categorical")
            )
            msg = e["msg"].removeprefix("Value error, ")
            if e["type"] == "extra_forbidden":
                msg = "unknown field"
            lines.append(f"{path}: {loc}: {msg}")
        raise SkinclsError("\n".join(lines)) from None


def suggest(trial, name: str, p: Any) -> Any:
    if isinstance(p, LogUniform):
        return trial.suggest_float(name, p.low, p.high, log=True)
    if isinstance(p, Uniform):
        return trial.suggest_float(name, p.low, p.high)
    if isinstance(p, IntRange):
        return trial.suggest_int(name, p.low, p.high, log=p.log)
    return trial.suggest_categorical(name, p.choices)


def wandb_sweep_config(
    base_args: list[str], space: SearchSpace | None = None, select: str = DEFAULT_SELECT
) -> dict[str, Any]:
    """An equivalent wandb sweep (Bayesian) whose command runs ``skincls train`` with ``${args}``.

    Parameter names use the CLI spelling (``weight-decay``) because wandb passes
    ``--<name>=<value>``.
    """
    from skincls.core.names import LOWER_IS_BETTER

    space = space or default_space()
    params: dict[str, Any] = {}
    for name, p in space.parameters.items():
        key = name.replace("_", "-")
        if isinstance(p, LogUniform):
            params[key] = {"distribution": "log_uniform_values", "min": p.low, "max": p.high}
        elif isinstance(p, Uniform):
            params[key] = {"distribution": "uniform", "min": p.low, "max": p.high}
        elif isinstance(p, IntRange):
            params[key] = {"distribution": "int_uniform", "min": p.low, "max": p.high}
        else:
            params[key] = {"values": list(p.choices)}
    return {
        "program": "skincls",
        "method": "bayes",
        "metric": {
            "name": f"val_{select}",
            "goal": "minimize" if select in LOWER_IS_BETTER else "maximize",
        },
        "parameters": params,
        "command": ["${env}", "skincls", "train", *base_args, "--wandb", "online", "${args}"],
    }


def write_wandb_config(path: Path, args: list[str], space: SearchSpace, base: dict[str, Any]):
    """Write the wandb sweep YAML equivalent to this sweep (see :func:`wandb_sweep_config`)."""
    doc = wandb_sweep_config(args, space, base.get("select", DEFAULT_SELECT))
    Path(path).write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
