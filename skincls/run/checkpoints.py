"""Checkpoints: safetensors weights, JSON meta, weights-only trainer state.

A checkpoint directory is written beside its final name and renamed into place; the previous
version is kept as ``<name>.old`` until the new one is complete, so a kill at any moment leaves
a checkpoint that loads (``resolve_checkpoint`` falls back to ``.old``). A failed write (disk
full) is one clear error and leaves the previous version in place.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from skincls.core.errors import SkinclsError
from skincls.core.fileio import file_mode, write_error
from skincls.run.artifacts import META, TRAINER, WEIGHTS

TRAINER_FORMAT = 2
"""Version of ``trainer.pt``'s layout (2: TrainState and timm scheduler state)."""
TRAINER_KEYS = ("format", "optimizer", "scheduler", "scaler", "rng", "train_state", "sampler")


def save_checkpoint(
    directory: Path,
    state_dict: dict[str, Any],
    meta: dict[str, Any],
    trainer_state: dict[str, Any] | None = None,
) -> None:
    """Write weights, meta and trainer state to ``directory`` as one atomic unit; on a failed
    write (disk full) the temporary copy is removed and the previous checkpoint stays."""
    directory = Path(directory)
    tmp = directory.with_name(f".{directory.name}.tmp{os.getpid()}")
    try:
        _save_checkpoint(directory, tmp, state_dict, meta, trainer_state)
    except Exception as err:
        shutil.rmtree(tmp, ignore_errors=True)
        failure = _write_failure(err)
        if failure is None:
            raise
        raise write_error(
            directory, failure, f"the previous {directory.name}/ checkpoint is intact"
        ) from None


def _write_failure(err: BaseException) -> OSError | None:
    """``err`` as the OSError of a failed write, where it is one: raised by Python, or reported
    inside safetensors' (Rust: "os error 28") or torch's ("file write failed") writers."""
    import errno
    import re

    if isinstance(err, OSError):
        return err
    text = str(err)
    code = re.search(r"os error (\d+)", text)
    if code:
        return OSError(int(code.group(1)), os.strerror(int(code.group(1))))
    if "No space left" in text:
        return OSError(errno.ENOSPC, text)
    if "write" in text.lower() and ("failed" in text.lower() or "error" in text.lower()):
        return OSError(None, text.splitlines()[0][:200])
    return None


def _save_checkpoint(directory: Path, tmp: Path, state_dict, meta, trainer_state) -> None:
    import torch
    from safetensors.torch import save_file

    old = directory.with_name(f"{directory.name}.old")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    save_file(tensors, str(tmp / WEIGHTS))
    (tmp / META).write_text(json.dumps(meta, indent=2, default=str), encoding="utf-8")
    if trainer_state is not None:
        torch.save(trainer_state, tmp / TRAINER)
    mode = file_mode()
    for f in tmp.iterdir():
        os.chmod(f, mode)  # safetensors writes 0600; weights are as readable as every other file
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    if directory.exists():
        if old.exists():
            shutil.rmtree(old)
        os.replace(directory, old)
    os.replace(tmp, directory)
    if old.exists():
        shutil.rmtree(old)


def resolve_checkpoint(directory: Path) -> Path:
    """``directory`` if complete, else its ``.old`` twin left by an interrupted save."""
    for candidate in (directory, directory.with_name(f"{directory.name}.old")):
        if (candidate / WEIGHTS).is_file() and (candidate / META).is_file():
            return candidate
    raise SkinclsError(f"{directory}: no complete checkpoint ({WEIGHTS} and {META}) found")


def load_checkpoint(directory: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Weights (safetensors) and meta (JSON); never unpickles. A run's checkpoints are read
    through :meth:`skincls.run.rundir.RunDir.load_checkpoint`, which validates the meta."""
    from safetensors.torch import load_file

    directory = resolve_checkpoint(Path(directory))
    try:
        weights = load_file(str(directory / WEIGHTS))
        meta = json.loads((directory / META).read_text(encoding="utf-8"))
    except Exception as err:
        raise SkinclsError(f"{directory}: damaged checkpoint: {err}") from None
    return weights, meta


def load_trainer_state(directory: Path) -> dict[str, Any]:
    import torch

    directory = resolve_checkpoint(Path(directory))
    path = directory / TRAINER
    if not path.is_file():
        raise SkinclsError(f"{directory}: no trainer state ({TRAINER}); cannot resume from it")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise SkinclsError(f"{path}: damaged trainer state: {err}") from None
    if isinstance(state, dict) and "format" not in state and "epoch" in state:
        raise SkinclsError(
            f"{path}: written by an older skincls (before the engine redesign); it cannot be "
            "resumed by this version: start a new run, or finish this one with skincls 0.1.0"
        )
    missing = [k for k in TRAINER_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise SkinclsError(f"{path}: damaged trainer state: missing {', '.join(missing)}")
    return state


def check_state_matches(model_state: dict[str, Any], weights: dict[str, Any], origin: str) -> None:
    """Raise a clear error listing the differences between a model and a checkpoint."""
    missing = sorted(set(model_state) - set(weights))
    extra = sorted(set(weights) - set(model_state))
    shapes = sorted(
        k
        for k in set(model_state) & set(weights)
        if tuple(model_state[k].shape) != tuple(weights[k].shape)
    )
    if missing or extra or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} tensor(s) missing (e.g. {missing[:3]})")
        if extra:
            parts.append(f"{len(extra)} unexpected tensor(s) (e.g. {extra[:3]})")
        if shapes:
            k = shapes[0]
            parts.append(
                f"{len(shapes)} shape mismatch(es) (e.g. {k}: checkpoint "
                f"{tuple(weights[k].shape)} vs model {tuple(model_state[k].shape)})"
            )
        raise SkinclsError(f"{origin}: checkpoint does not fit the model: " + "; ".join(parts))
