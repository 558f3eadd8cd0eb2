"""What a checkpoint records of the settings it was trained with, and the check that the run's
files still say the same.

Every option that shapes training (``config.yaml``, less where the run lives and what may change
on ``--resume``) and every field of each region file (less its title and description) is stored
in the checkpoint's ``meta.json``. Resuming and every serving command compare them with
``config.yaml`` and ``RUN/regions/``: an edited, deleted or added value is listed, never served
with a default in its place.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from skincls.core.config import RESUME_MUTABLE

CONFIG_EXEMPT = RESUME_MUTABLE | {"output", "regions_dir"}
"""Options that do not shape the trained weights or may change on resume."""
REGION_EXEMPT = {"title", "description"}


def record_settings(config: Any, regions: list[Any]) -> dict[str, Any]:
    """The settings a checkpoint records (JSON values)."""
    values = config.model_dump(mode="json")
    return {
        "config": {k: v for k, v in values.items() if k not in CONFIG_EXEMPT},
        "regions": {r.name: _region_values(r) for r in regions},
    }


def _region_values(spec: Any) -> dict[str, Any]:
    values = spec.model_dump(mode="json", exclude_none=True)
    return {k: v for k, v in values.items() if k not in REGION_EXEMPT}


def settings_differences(
    recorded: dict[str, Any], run_dir: Path, config: Any, specs: list[Any]
) -> list[str]:
    """Each way ``config`` (as read from ``config.yaml``) and ``specs`` (``RUN/regions/``)
    differ from ``recorded``, one readable line each; a key deleted from a file counts even
    where its default happens to equal the recorded value."""
    problems: list[str] = []
    run_dir = Path(run_dir)
    saved_config = recorded.get("config", {})
    present = _yaml_keys(run_dir / "config.yaml")
    values = config.model_dump(mode="json")
    for key, was in saved_config.items():
        if present is not None and key not in present:
            problems.append(f"config.yaml: {key} was deleted (trained with {was!r})")
        elif values.get(key) != was:
            problems.append(f"config.yaml: {key} is {values.get(key)!r} ({_trained(was)})")
    saved_regions = recorded.get("regions", {})
    by_name = {s.name: s for s in specs}
    for name, was in saved_regions.items():
        if name not in by_name:
            continue  # a missing or added head is reported by the head check
        path = run_dir / "regions" / f"{name}.yaml"
        now = _region_values(by_name[name])
        keys = _yaml_keys(path)
        for key in sorted(set(was) | set(now)):
            if keys is not None and key in was and key not in keys:
                problems.append(
                    f"regions/{name}.yaml: {key} was deleted (trained with {was[key]!r})"
                )
                continue
            problems.extend(
                f"regions/{name}.yaml: {field} is {a!r} ({_trained(b)})"
                for field, a, b in _diff(key, now.get(key), was.get(key))
            )
    return problems


def _trained(value: Any) -> str:
    return "not set when trained" if value is None else f"trained with {value!r}"


def _diff(path: str, now: Any, was: Any) -> list[tuple[str, Any, Any]]:
    """Dotted paths where two JSON values differ, descending into mappings of the same keys
    (``augment.train``; a changed ``label_map`` is shown whole)."""
    if isinstance(now, dict) and isinstance(was, dict) and set(now) == set(was):
        out: list[tuple[str, Any, Any]] = []
        for key in sorted(now, key=str):
            out.extend(_diff(f"{path}.{key}", now[key], was[key]))
        return out
    return [] if now == was else [(path, now, was)]


def _yaml_keys(path: Path) -> set[str] | None:
    """The top-level keys of a YAML mapping file (dashes as underscores), or None where it
    cannot be read as one (reading it for its values reports that)."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    return {str(k).replace("-", "_") for k in data} if isinstance(data, dict) else None
