"""Run directories: one home for everything a run writes and reads back.

``RunDir`` creates a run (refusing to replace what is not a run, or a run another process is
writing), holds the OS lock while training, writes the config, region specs, split, history,
status and bad-image list atomically, reads them back, and checks on resume that the files of the
run still agree with each other. Checkpoint files themselves are in :mod:`skincls.run.checkpoints`.
"""

from __future__ import annotations

import csv
import io
import json
import shlex
import shutil
from pathlib import Path
from typing import Any

from skincls.core.errors import SkinclsError
from skincls.core.fileio import atomic_write_json, atomic_write_text
from skincls.core.locks import FileLock
from skincls.core.outputs import check_dir
from skincls.run import artifacts as A
from skincls.run.artifacts import LOCK, RUN_ENTRIES, CheckpointMeta, Evaluation, RunStatus


def is_temp_entry(name: str) -> bool:
    """Leftovers of an interrupted atomic write: ``.<name>.tmp<pid>[<suffix>]``."""
    return name.startswith(".") and ".tmp" in name


def looks_like_run(directory: Path) -> bool:
    """True when every entry of ``directory`` is one skincls writes into a run directory, so
    ``--overwrite`` may replace it (also a run whose creation was interrupted)."""
    entries = [p.name for p in Path(directory).iterdir()]
    locks = {
        f".{e}.lock" for e in RUN_ENTRIES
    }  # left by a killed `skincls report` (its output lock)
    return bool(entries) and all(
        n in RUN_ENTRIES or n in locks or is_temp_entry(n) for n in entries
    )


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


class RunLock(FileLock):
    """The run directory's own ``.lock`` (kept: it is a run entry), held by the one process
    that trains in it."""

    def __init__(self, directory: Path):
        super().__init__(
            Path(directory) / LOCK,
            "wait for it to finish or stop it (one training process per run directory)",
        )


class RunDir:
    """A run directory. ``create`` makes a new one, ``open`` an existing one; both lock it
    when ``lock`` is true (rank 0 of a distributed run), and :meth:`close` releases the lock."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock: FileLock | None = None

    # ---- creation and locking -----------------------------------------------------------------

    @staticmethod
    def check_new(output: str | None, overwrite: bool) -> None:
        """Refuse an --output that is a file, or a non-empty directory without --overwrite."""
        if not output:
            return
        path = Path(output)
        if path.exists() and not path.is_dir():
            raise SkinclsError(f"--output {path}: is a file; give a directory for the run")
        check_dir(path, "--output")
        if path.is_dir() and any(path.iterdir()):
            if not overwrite:
                raise SkinclsError(
                    f"--output {path}: directory exists and is not empty; pass --overwrite to "
                    f"replace it or --resume {shlex.quote(str(path))} to continue it"
                )
            if not looks_like_run(path):
                raise SkinclsError(
                    f"--output {path}: --overwrite only replaces a skincls run directory; "
                    "this one holds other files"
                )

    @classmethod
    def create(cls, output: str | Path, overwrite: bool) -> RunDir:
        """A new, empty, locked run directory at ``output`` (its default name is chosen once,
        by :func:`skincls.training.context.resolve_config`)."""
        path = Path(output)
        cls.check_new(str(path), overwrite)
        if path.is_dir() and any(path.iterdir()):
            with RunLock(path):  # refuses a directory a running process is writing
                pass
            shutil.rmtree(path)
        path.mkdir(parents=True, exist_ok=True)
        return cls(path).lock()

    @classmethod
    def open(cls, path: str | Path, lock: bool = True) -> RunDir:
        """An existing run; with ``lock``, also removes what a killed save left behind."""
        run = cls(Path(path))
        if not (run.path / A.CONFIG).is_file():
            raise SkinclsError(f"{path}: not a skincls run directory (no config.yaml)")
        if lock:
            run.lock()
            remove_temp_entries(run.path)
        return run

    def lock(self) -> RunDir:
        self._lock = RunLock(self.path).acquire()
        return self

    def close(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    # ---- what a run is made of -------------------------------------------------------------------

    def write_setup(self, config: Any, regions: list[Any], samples: list[Any], assignment) -> None:
        """The resolved config, the region specs with their head order, and the split."""
        import yaml

        from skincls.core.config import save_config
        from skincls.data.split import save_split

        save_config(config, self.path / A.CONFIG)
        for r in regions:
            atomic_write_text(
                self.path / A.REGIONS / f"{r.name}.yaml",
                yaml.safe_dump(
                    r.model_dump(mode="json", exclude_none=True),
                    sort_keys=False,
                    allow_unicode=True,
                ),
            )
        atomic_write_text(
            self.path / A.REGIONS / A.HEAD_ORDER, "".join(f"{r.name}\n" for r in regions)
        )
        save_split(self.path / A.SPLIT, samples, assignment)

    def config(self) -> Any:
        from skincls.core.config import build_config, load_config_file

        path = self.path / A.CONFIG
        if not path.is_file():
            raise SkinclsError(f"{self.path}: not a skincls run directory (no config.yaml)")
        return build_config(load_config_file(path), str(path))

    def regions(self) -> list[Any]:
        return run_regions(self.path)

    def registry(self) -> Any:
        """The run's own regions as a registry (head order), each with its file as origin."""
        from skincls.data.regions import RegionRegistry

        registry = RegionRegistry()
        for spec in self.regions():
            registry.add(spec, str(self.path / A.REGIONS / f"{spec.name}.yaml"))
        return registry

    def split(self, samples: list[Any]) -> dict[str, str]:
        from skincls.data.split import load_split

        return load_split(self.path / A.SPLIT, samples)

    # ---- what a run writes as it goes ----------------------------------------------------------

    def write_history(self, history: list[dict[str, Any]]) -> None:
        """``metrics.jsonl`` (one JSON object per epoch) and the same as ``metrics.csv``."""
        atomic_write_text(self.path / A.HISTORY, "".join(json.dumps(r) + "\n" for r in history))
        columns: list[str] = []
        for r in history:
            columns += [k for k in r if k not in columns]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns)
        writer.writeheader()
        writer.writerows(history)
        atomic_write_text(self.path / A.HISTORY_CSV, buf.getvalue())

    def history(self) -> list[dict[str, Any]]:
        return read_history(self.path)

    def status(self) -> RunStatus:
        """``run.json`` (status, wandb id, device...); empty while the run has none."""
        path = self.path / A.STATUS
        return RunStatus.read(path) if path.exists() else RunStatus()

    def update_status(self, **fields: Any) -> None:
        status = RunStatus.parse({**self.status().dump(), **fields}, str(self.path / A.STATUS))
        atomic_write_json(self.path / A.STATUS, status.dump())

    def checkpoint(self, name: str) -> Path:
        """The complete copy of checkpoint ``name`` (``best`` or ``last``; ``.old`` after a kill)."""
        from skincls.run.checkpoints import resolve_checkpoint

        return resolve_checkpoint(self.path / name)

    def save_checkpoint(
        self, name: str, weights: dict[str, Any], meta: CheckpointMeta, trainer_state: Any
    ) -> None:
        """Checkpoint ``name`` (``best`` or ``last``), atomically (:mod:`skincls.run.checkpoints`)."""
        from skincls.run.checkpoints import save_checkpoint

        save_checkpoint(self.path / name, weights, meta.dump(), trainer_state)

    def load_checkpoint(self, name: str) -> tuple[dict[str, Any], CheckpointMeta]:
        """Weights and validated meta of checkpoint ``name``."""
        from skincls.run.checkpoints import load_checkpoint

        weights, meta = load_checkpoint(self.path / name)
        return weights, CheckpointMeta.parse(meta, str(self.checkpoint(name) / A.META))

    def write_meta(self, name: str, meta: CheckpointMeta) -> None:
        """Replace the ``meta.json`` of checkpoint ``name`` (its calibration, fitted after it)."""
        atomic_write_json(self.checkpoint(name) / A.META, meta.dump())

    def write_evaluation(self, evaluation: Evaluation) -> None:
        atomic_write_json(self.path / A.EVALUATION, evaluation.dump())

    def evaluation(self) -> Evaluation | None:
        path = self.path / A.EVALUATION
        return Evaluation.read(path) if path.exists() else None

    def bad_images(self) -> dict[str, str]:
        """``bad_images.txt`` as path -> reason ({} when every image decoded)."""
        path = self.path / A.BAD_IMAGES
        if not path.is_file():
            return {}
        bad: dict[str, str] = {}
        for line in path.read_text(encoding="utf-8").splitlines():
            image, _, reason = line.partition("\t")
            if image:
                bad[image] = reason
        return bad

    def write_bad_images(self, bad: dict[str, str]) -> None:
        """``bad_images.txt``: one ``path<TAB>reason`` line per image that gave no pixels."""
        atomic_write_text(
            self.path / A.BAD_IMAGES, "".join(f"{p}\t{bad[p]}\n" for p in sorted(bad))
        )

    # ---- resume ----------------------------------------------------------------------------------

    def has_checkpoint(self, name: str = "last") -> bool:
        d = self.path / name
        return d.exists() or d.with_name(f"{name}.old").exists()


def run_regions(run_dir: Path) -> list[Any]:
    """The run's own region specs (``regions/*.yaml``) in head order (``regions/order.txt``)."""
    from skincls.core.errors import RegionSpecError
    from skincls.data.regions import load_region_file

    region_dir = Path(run_dir) / A.REGIONS
    if not region_dir.is_dir():
        raise SkinclsError(f"{run_dir}: not a skincls run directory (no regions/)")
    order_file = region_dir / A.HEAD_ORDER
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


def check_meta(
    meta: CheckpointMeta, origin: str, config: Any, specs: list[Any], run_dir: Path
) -> None:
    """Refuse a checkpoint whose meta.json disagrees with the run's config and region files
    (an edited or mixed-up run), listing every difference."""
    from skincls.run.settings import settings_differences

    values = config.model_dump()
    problems = []
    heads = [(r.name, list(r.classes)) for r in meta.regions]
    files = [(s.name, list(s.classes)) for s in specs]
    if heads != files:
        problems.append(f"heads and classes {heads} vs region files {files}")
    for key in ("backbone", "image_size"):
        if getattr(meta, key) != values[key]:
            problems.append(f"{key} {getattr(meta, key)!r} vs config.yaml {values[key]!r}")
    if meta.losses:
        expected = {s.name: s.loss or values["loss"] for s in specs}
        if meta.losses != expected:
            problems.append(f"losses {meta.losses} vs config and region files {expected}")
    if meta.settings:
        problems.extend(settings_differences(meta.settings, run_dir, config, specs))
    if problems:
        raise SkinclsError(
            f"{origin}: the checkpoint does not match the run's files (edited?); restore them "
            "or start a new run:\n  " + "\n  ".join(dict.fromkeys(problems))
        )


def resume_config(run_dir: Path, overrides: dict[str, Any]) -> Any:
    """The saved config of ``run_dir`` with the allowed ``overrides``; others must not differ."""
    from skincls.core.config import RESUME_MUTABLE, build_config

    saved = RunDir(Path(run_dir)).config()
    values = saved.model_dump()
    changed = [k for k, v in overrides.items() if k not in RESUME_MUTABLE and values.get(k) != v]
    if changed:
        raise SkinclsError(
            f"--resume {run_dir}: these options differ from the run and cannot change on resume: "
            + ", ".join(
                f"--{k.replace('_', '-')} (run: {values.get(k)!r}, given: {overrides[k]!r})"
                for k in changed
            )
        )
    values.update({k: v for k, v in overrides.items() if k in RESUME_MUTABLE})
    values["resume"] = str(run_dir)
    values["output"] = str(run_dir)
    return build_config(values)


def read_history(run_dir: Path) -> list[dict[str, Any]]:
    """Per-epoch records of ``metrics.jsonl``; a damaged line is a clear error."""
    path = Path(run_dir) / A.HISTORY
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
