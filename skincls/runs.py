"""Run directories: atomic writes, checkpoints (safetensors + JSON + weights-only trainer state).

A checkpoint directory is written beside its final name and renamed into place; the previous
version is kept as ``<name>.old`` until the new one is complete, so a kill at any moment leaves
a checkpoint that loads (``resolve_checkpoint`` falls back to ``.old``).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from skincls.errors import SkinclsError

WEIGHTS = "model.safetensors"
META = "meta.json"
TRAINER = "trainer.pt"
LOCK = ".lock"


def file_mode() -> int:
    """Permissions a new file gets from the user's umask (0o644 under the usual 022)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def write_error(path: Path, err: OSError, kept: str = "") -> SkinclsError:
    """A failed write as one clear message (disk full, read-only, permission)."""
    import errno

    reason = {
        errno.ENOSPC: "the disk is full",
        errno.EDQUOT: "the disk quota is exceeded",
        errno.EROFS: "the file system is read-only",
        errno.EACCES: "permission denied",
    }.get(err.errno or 0, err.strerror or str(err))
    return SkinclsError(f"{path}: cannot write: {reason}" + (f"; {kept}" if kept else ""))


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` all or nothing; a failure leaves the previous file intact."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise write_error(path, err, "the previous version is intact") from None


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str))


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
    except (OSError, RuntimeError) as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(err, RuntimeError) and "writ" not in str(err).lower():
            raise
        if not isinstance(err, OSError):
            err = OSError(getattr(err, "errno", None), str(err))
        raise write_error(
            directory, err, f"the previous {directory.name}/ checkpoint is intact"
        ) from None


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
    """Weights (safetensors) and meta (JSON); never unpickles."""
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


RUN_ENTRIES = {
    "config.yaml",
    "regions",
    "split.csv",
    "run.json",
    "metrics.csv",
    "metrics.jsonl",
    "best",
    "last",
    "best.old",
    "last.old",
    "evaluation.json",
    "bad_images.txt",
    "wandb",
    LOCK,
}


def is_temp_entry(name: str) -> bool:
    """Leftovers of an interrupted atomic write: ``.<name>.tmp<pid>``."""
    return name.startswith(".") and ".tmp" in name


def looks_like_run(directory: Path) -> bool:
    """True when every entry of ``directory`` is one skincls writes into a run directory, so
    ``--overwrite`` may replace it (also a run whose creation was interrupted)."""
    entries = [p.name for p in Path(directory).iterdir()]
    return bool(entries) and all(n in RUN_ENTRIES or is_temp_entry(n) for n in entries)


def remove_temp_entries(directory: Path) -> list[str]:
    """Delete what a killed or failed save left behind; call only while holding the run's lock."""
    removed = []
    for p in Path(directory).iterdir():
        if is_temp_entry(p.name):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            removed.append(p.name)
    return sorted(removed)


class RunLock:
    """One writer per run directory: an OS file lock on ``RUN/.lock``, released by the kernel
    when the process exits, so a killed run never leaves its directory locked. No-op where
    ``fcntl`` is missing (Windows)."""

    def __init__(self, directory: Path):
        self.path = Path(directory) / LOCK
        self._fh: Any = None

    def acquire(self) -> RunLock:
        try:
            import fcntl
        except ImportError:
            return self
        fh = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held until release()
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise SkinclsError(
                f"{self.path.parent}: in use by {holder}; wait for it to finish or stop it "
                "(one training process per run directory)"
            ) from None
        import socket

        fh.seek(0)
        fh.truncate()
        fh.write(f"process {os.getpid()} on {socket.gethostname()}\n")
        fh.flush()
        self._fh = fh
        return self

    def release(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def run_regions(run_dir: Path) -> list[Any]:
    """The run's own region specs (``regions/*.yaml``) in head order (``regions/order.txt``)."""
    from skincls.errors import RegionSpecError
    from skincls.regions import load_region_file

    region_dir = Path(run_dir) / "regions"
    if not region_dir.is_dir():
        raise SkinclsError(f"{run_dir}: not a skincls run directory (no regions/)")
    order_file = region_dir / "order.txt"
    try:
        order = order_file.read_text(encoding="utf-8").split()
    except (OSError, UnicodeDecodeError) as err:
        raise SkinclsError(f"{order_file}: cannot read the head order: {err}") from None
    files = {p.stem for p in region_dir.glob("*.yaml")}
    if not order or len(set(order)) != len(order) or set(order) != files:
        raise SkinclsError(
            f"{order_file}: damaged: lists {order} but regions/ holds {sorted(files)}; "
            "restore it (one region name per line, in head order)"
        )
    try:
        return [load_region_file(region_dir / f"{name}.yaml") for name in order]
    except RegionSpecError as err:
        raise SkinclsError(f"{run_dir}: a region file of the run is damaged: {err}") from None


def check_meta(meta: Any, origin: str, config: dict[str, Any], specs: list[Any]) -> None:
    """Refuse a checkpoint whose meta.json disagrees with the run's config and region files
    (an edited or mixed-up run), listing every difference."""
    if not isinstance(meta, dict) or not isinstance(meta.get("regions"), list):
        raise SkinclsError(f"{origin}/{META}: damaged: no list of regions")
    problems = []
    try:
        heads = [(r["name"], list(r["classes"])) for r in meta["regions"]]
    except (KeyError, TypeError):
        raise SkinclsError(f"{origin}/{META}: damaged: regions lack name or classes") from None
    files = [(s.name, list(s.classes)) for s in specs]
    if heads != files:
        problems.append(f"heads and classes {heads} vs region files {files}")
    for key in ("backbone", "image_size"):
        if key in config and meta.get(key) != config[key]:
            problems.append(f"{key} {meta.get(key)!r} vs config.yaml {config[key]!r}")
    losses = meta.get("losses")
    if isinstance(losses, dict):
        expected = {s.name: s.loss or config.get("loss") for s in specs}
        if losses != expected:
            problems.append(f"losses {losses} vs config and region files {expected}")
    if problems:
        raise SkinclsError(
            f"{origin}: the checkpoint does not match the run's files (edited?): "
            + "; ".join(problems)
        )


TRAINER_KEYS = ("optimizer", "scheduler", "scaler", "rng", "epoch", "best_metric", "best_epoch")


def read_history(run_dir: Path) -> list[dict[str, Any]]:
    """Per-epoch records of ``metrics.jsonl``; a damaged line is a clear error."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    records = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError as err:
            raise SkinclsError(
                f"{path} line {n}: damaged ({err}); restore it or remove the line"
            ) from None
        if not isinstance(rec, dict) or "epoch" not in rec:
            raise SkinclsError(f"{path} line {n}: damaged: expected an object with an epoch")
        records.append(rec)
    return records
