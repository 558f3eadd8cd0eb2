"""The ``skincls train`` options, generated from :class:`skincls.core.config.TrainConfig`.

Each TrainConfig field is one option: its flag is the field name with dashes (a few have a short
form or another spelling, below), its help is the field's description, the default shown is the
field's default, and a ``Literal`` field's choices become a click choice. The option itself
defaults to None, meaning "not given", so a ``--config`` file and a resumed run's values are only
overridden by what the user typed. ``sweep`` parses its extra arguments with the same command.
"""

from __future__ import annotations

import inspect
import types
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import typer

from skincls.core.errors import SkinclsError

FLAGS = {
    "output": ("--output", "-o"),
    "quiet": ("--quiet", "-q"),
    "wandb_tags": ("--wandb-tag",),
    "channels_last": ("--channels-last/--no-channels-last",),
    "compile": ("--compile/--no-compile",),
    "calibrate": ("--calibrate/--no-calibrate",),
    "report": ("--report/--no-report",),
}
METAVARS = {
    "regions_dir": "DIR",
    "region": "NAME",
    "wandb_tags": "TAG",
    "output": "DIR",
    "resume": "RUN",
    "backbone": "NAME",
    "pretrained": "hub|none|FILE",
    "group_column": "COLUMN",
}
_ENUMS: dict[str, type[Enum]] = {}


def choice_enum(field: str) -> type[Enum]:
    """A str Enum of the choices of a ``Literal`` (or ``Literal | None``) TrainConfig field
    (click shows and checks them)."""
    from skincls.core.config import TrainConfig

    if field not in _ENUMS:
        annotation = TrainConfig.model_fields[field].annotation
        if get_origin(annotation) is not Literal:
            annotation = next(a for a in get_args(annotation) if get_origin(a) is Literal)
        values = get_args(annotation)
        _ENUMS[field] = Enum(f"{field}_choice", {v: v for v in values}, type=str)  # type: ignore[assignment]
    return _ENUMS[field]


def _option(field: str, info: Any) -> Any:
    from pydantic_core import PydanticUndefined

    default = info.default
    if field == "wandb":
        shown: Any = "$WANDB_MODE, else offline"
    elif default is PydanticUndefined or default is None or default == []:
        shown = False
    elif isinstance(default, bool):
        shown = "on" if default else "off"
    else:
        shown = str(default)
    flags = FLAGS.get(field, ("--" + field.replace("_", "-"),))
    # click wraps a default given as text in parentheses ("[default: (20)]"): say it ourselves
    text = info.description + (f"  [default: {shown}]" if shown is not False else "")
    return typer.Option(*flags, help=text, show_default=False, metavar=METAVARS.get(field))


def _cli_type(field: str, annotation: Any) -> Any:
    """The click-facing type of a field: choices for Literals, the inner type of ``X | None``."""
    origin = get_origin(annotation)
    if origin is Literal:
        return choice_enum(field)
    if origin in (Union, types.UnionType):
        inner = [a for a in get_args(annotation) if a is not type(None)]
        return _cli_type(field, inner[0])
    if origin is list:
        return list[Path] if field == "regions_dir" else list[str]
    return annotation


def train_parameters() -> list[inspect.Parameter]:
    """The parameters of the ``train`` command: DATA, ``--config``, every TrainConfig field, and
    ``--no-pretrained``."""
    from skincls.core.config import TrainConfig

    kw = inspect.Parameter.KEYWORD_ONLY
    params = [
        inspect.Parameter(
            "data",
            kw,
            default=None,
            annotation=Annotated[
                str | None,
                typer.Argument(
                    help=TrainConfig.model_fields["data"].description, show_default=False
                ),
            ],
        ),
        inspect.Parameter(
            "config",
            kw,
            default=None,
            annotation=Annotated[
                Path | None,
                typer.Option(
                    "--config", help="YAML file of train options; command-line options win."
                ),
            ],
        ),
    ]
    for field, info in TrainConfig.model_fields.items():
        if field == "data":
            continue
        cli_type: Any = _cli_type(field, info.annotation)
        annotation = Annotated[cli_type | None, _option(field, info)]
        params.append(inspect.Parameter(field, kw, default=None, annotation=annotation))
        if field == "pretrained":
            help_text = "Start from random weights (same as --pretrained none)."
            params.append(
                inspect.Parameter(
                    "no_pretrained",
                    kw,
                    default=None,
                    annotation=Annotated[
                        bool | None, typer.Option("--no-pretrained", help=help_text)
                    ],
                )
            )
    return params


def with_train_options(func: Any) -> Any:
    """Give ``func(**options)`` the generated signature (Typer reads it and its annotations)."""
    params = train_parameters()
    func.__signature__ = inspect.Signature(params)
    func.__annotations__ = {p.name: p.annotation for p in params} | {"return": None}
    return func


def clean_train_params(params: dict[str, Any]) -> dict[str, Any]:
    """Train options that were given (not None), as TrainConfig field values."""
    skip = ("config", "no_pretrained")
    options = {k: v for k, v in params.items() if v is not None and k not in skip}
    if params.get("no_pretrained"):
        if params.get("pretrained"):
            raise SkinclsError("--pretrained and --no-pretrained contradict each other")
        options["pretrained"] = "none"
    for k in ("regions_dir", "region", "wandb_tags"):
        if k in options and not options[k]:
            del options[k]
    for k, v in list(options.items()):
        if isinstance(v, Enum):
            options[k] = v.value
        elif k == "regions_dir":
            options[k] = [str(p) for p in v]
    return options


def parse_train_args(ctx: typer.Context, args: list[str]) -> dict[str, Any]:
    """Parse ARGS exactly as ``skincls train`` would, returning only the options given (a
    ``--config`` file among them is read, the command line winning)."""
    import click

    group = ctx.parent.command if ctx.parent else None
    train_cmd = group.get_command(ctx.parent, "train") if group else None  # type: ignore[attr-defined]
    if train_cmd is None:
        raise SkinclsError("internal: the train command is missing")
    try:
        sub = train_cmd.make_context(
            "train", list(args), parent=ctx.parent, resilient_parsing=False
        )
    except click.UsageError as err:
        raise SkinclsError(f"train option: {err.format_message()}") from None
    options = clean_train_params(sub.params)
    if sub.params.get("config"):
        from skincls.core.config import load_config_file

        options = {**load_config_file(sub.params["config"]), **options}
    return options
