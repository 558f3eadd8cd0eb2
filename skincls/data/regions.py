"""Region plugins: one YAML file per face region, validated by pydantic, found by discovery.

Discovery order: the built-in set shipped with the package, every ``--regions-dir``, then Python
entry points in group ``skincls.regions``. One name defined twice is an error naming both origins.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from skincls.core.errors import RegionSpecError
from skincls.core.names import ORDINAL_LOSSES, DecisionName, LossName, ResizeName, SamplerName
from skincls.data.augment import OP_NAMES, AugmentOp

ENTRY_POINT_GROUP = "skincls.regions"
NAME_PATTERN = r"^[a-z][a-z0-9_]*$"


def _scalar_to_str(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return str(value)
    return value


Label = Annotated[str, BeforeValidator(_scalar_to_str), Field(min_length=1)]


def _default_train_recipe() -> list[Any]:
    from skincls.data.augment import Affine, HorizontalFlip

    return [
        HorizontalFlip(op="HorizontalFlip", p=0.5),
        Affine(op="Affine", rotate=(-10, 10), scale=(0.9, 1.1), p=0.5),
    ]


class SourceSpec(BaseModel):
    """Where a region's samples come from in AI Hub data: a face part and an annotation key."""

    model_config = ConfigDict(extra="forbid")
    facepart: Annotated[int, Field(ge=0, le=8)] | None = None
    key: Annotated[str, Field(min_length=1)]
    mirror: bool = False


class AugmentSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    train: list[AugmentOp] = Field(default_factory=_default_train_recipe)
    eval: list[AugmentOp] = Field(default_factory=list)


class RegionSpec(BaseModel):
    """One face region: a classification head, its classes and how its data is read."""

    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, Field(pattern=NAME_PATTERN, max_length=64)]
    title: str | None = None
    description: str | None = None
    classes: Annotated[list[Label], Field(min_length=2)]
    ordinal: bool = False
    label_map: dict[Label, Label] = Field(default_factory=dict)
    sources: list[SourceSpec] = Field(default_factory=list)
    augment: AugmentSpec = Field(default_factory=AugmentSpec)
    loss: LossName | None = None
    sampler: SamplerName | None = None
    weight: Annotated[float, Field(gt=0, le=1000)] = 1.0
    """Scales this head's per-label loss in the multi-task mean (1: every label counts alike)."""
    decision: DecisionName | None = None
    """``argmax`` or ``median`` of the predicted grade distribution (ordinal regions only)."""
    resize: ResizeName | None = None
    """How a crop becomes the square input (:data:`skincls.data.augment.RESIZE_POLICIES`); None: the
    run's ``--resize``."""

    def resize_policy(self, default: str) -> str:
        return self.resize or default

    @model_validator(mode="after")
    def _check(self) -> RegionSpec:
        seen: set[str] = set()
        for label in self.classes:
            if label in seen:
                raise ValueError(f"classes: duplicate class {label!r}")
            seen.add(label)
        for raw, mapped in self.label_map.items():
            if mapped not in seen:
                raise ValueError(
                    f"label_map: {raw!r} maps to {mapped!r}, which is not one of classes "
                    f"{self.classes}"
                )
        if not self.ordinal and self.loss in ORDINAL_LOSSES:
            raise ValueError(f"loss: {self.loss!r} needs ordered grades; add 'ordinal: true'")
        if not self.ordinal and self.decision == "median":
            raise ValueError("decision: 'median' needs ordered grades; add 'ordinal: true'")
        keys = [(s.facepart, s.key) for s in self.sources]
        if len(set(keys)) != len(keys):
            raise ValueError("sources: the same facepart and key are listed twice")
        return self

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def classes_hint(self) -> str:
        """What a raw label may be, for error messages."""
        return f"(classes {self.classes}; label_map {self.label_map})"

    def class_index(self, raw_label: str) -> int | None:
        """Index of the class a raw data label maps to, or None when it is not a known label."""
        mapped = self.label_map.get(raw_label, raw_label)
        try:
            return self.classes.index(mapped)
        except ValueError:
            return None


@dataclass(frozen=True)
class LoadedRegion:
    spec: RegionSpec
    origin: str


def _format_loc(loc: Sequence[Any]) -> str:
    parts = [str(p) for p in loc if not (isinstance(p, str) and p in OP_NAMES)]
    return ".".join(parts)


def _format_validation_error(origin: str, err: ValidationError) -> list[str]:
    problems = []
    for e in err.errors():
        loc = _format_loc(e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "union_tag_invalid":
            tag = e.get("ctx", {}).get("tag")
            msg = f"unknown transform {tag!r}; supported: {', '.join(OP_NAMES)}"
        elif e["type"] == "extra_forbidden":
            msg = "unknown field"
        elif "input" in e and e["type"] not in ("missing",) and not isinstance(e["input"], dict):
            msg = f"{msg} (got {e['input']!r})"
        problems.append(f"{origin}: {loc}: {msg}" if loc else f"{origin}: {msg}")
    return problems


def parse_region(data: Any, origin: str) -> RegionSpec:
    """Validate one region definition; every problem is reported with ``origin`` and the field."""
    if not isinstance(data, dict):
        raise RegionSpecError(
            [f"{origin}: expected a mapping of fields, got {type(data).__name__}"]
        )
    try:
        return RegionSpec.model_validate(data)
    except ValidationError as err:
        raise RegionSpecError(_format_validation_error(origin, err)) from None


def load_region_file(path: str | Path) -> RegionSpec:
    """Read and validate a region YAML file. The file name must match the region's name."""
    from skincls.core.errors import SkinclsError
    from skincls.core.textio import load_yaml, read_text

    path = Path(path)
    try:
        data = load_yaml(read_text(path), str(path))
    except SkinclsError as err:
        raise RegionSpecError([str(err)]) from None
    spec = parse_region(data, str(path))
    if path.stem != spec.name:
        raise RegionSpecError(
            [f"{path}: name: {spec.name!r} differs from the file name {path.stem!r}"]
        )
    return spec


def builtin_regions_dir() -> Path:
    """The built-in region YAML files: inside the installed package, or ``regions/`` in a checkout."""
    package = Path(__file__).resolve().parents[1]
    packaged = package / "builtin_regions"
    if packaged.is_dir():
        return packaged
    return package.parent / "regions"


def _region_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


def _entry_point_sources() -> list[tuple[str, list[Path | RegionSpec]]]:
    """Region sources of installed plugins: each entry point names a directory, module or callable.

    A module contributes the YAML files beside it; a callable returns paths or RegionSpecs; a
    string or Path is a directory or a file.
    """
    from importlib.metadata import entry_points

    found: list[tuple[str, list[Path | RegionSpec]]] = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep.dist, "name", None) if getattr(ep, "dist", None) else None
        origin = f"entry point {ep.name!r}" + (f" of {dist}" if dist else "")
        try:
            target = ep.load()
        except Exception as err:  # a broken plugin must not hide the others
            raise RegionSpecError([f"{origin}: cannot load {ep.value!r}: {err}"]) from None
        items: list[Path | RegionSpec] = []
        if callable(target) and not isinstance(target, type):
            target = target()
        if hasattr(target, "__file__") and getattr(target, "__file__", None):
            target = Path(target.__file__).parent
        if isinstance(target, (str, Path)):
            target = [target]
        for item in target:
            if isinstance(item, RegionSpec):
                items.append(item)
            else:
                p = Path(item)
                items.extend(_region_files(p) if p.is_dir() else [p])
        found.append((origin, items))
    return found


class RegionRegistry:
    """Every region found, by name, with where it came from."""

    def __init__(self) -> None:
        self._regions: dict[str, LoadedRegion] = {}

    def add(self, spec: RegionSpec, origin: str) -> None:
        if spec.name in self._regions:
            first = self._regions[spec.name].origin
            raise RegionSpecError(
                [f"region {spec.name!r} is defined twice: in {first} and in {origin}"]
            )
        self._regions[spec.name] = LoadedRegion(spec, origin)

    def __contains__(self, name: object) -> bool:
        return name in self._regions

    def __getitem__(self, name: str) -> RegionSpec:
        return self._regions[name].spec

    def __len__(self) -> int:
        return len(self._regions)

    def names(self) -> list[str]:
        return list(self._regions)

    def items(self) -> list[LoadedRegion]:
        return list(self._regions.values())

    def origin(self, name: str) -> str:
        return self._regions[name].origin

    def select(self, names: Iterable[str]) -> list[RegionSpec]:
        """The specs for ``names`` in the given order; an unknown name is a clear error."""
        out = []
        for n in names:
            if n not in self._regions:
                known = ", ".join(sorted(self._regions)) or "none"
                raise RegionSpecError([f"--region {n}: no such region (known: {known})"])
            out.append(self._regions[n].spec)
        return out


def discover_regions(
    regions_dirs: Sequence[str | Path] = (),
    include_builtin: bool = True,
    include_entry_points: bool = True,
) -> RegionRegistry:
    """Load every region definition; all invalid files are reported together in one error."""
    registry = RegionRegistry()
    problems: list[str] = []
    sources: list[tuple[str, list[Path | RegionSpec]]] = []
    if include_builtin:
        sources.append(("built-in", list(_region_files(builtin_regions_dir()))))
    for d in regions_dirs:
        d = Path(d)
        if not d.is_dir():
            problems.append(f"--regions-dir {d}: not a directory")
            continue
        files = _region_files(d)
        if not files:
            problems.append(f"--regions-dir {d}: no .yaml files found")
        sources.append((str(d), list(files)))
    if include_entry_points:
        try:
            sources.extend(_entry_point_sources())
        except RegionSpecError as err:
            problems.extend(err.problems)
    for origin, items in sources:
        for item in items:
            try:
                if isinstance(item, RegionSpec):
                    registry.add(item, origin)
                else:
                    spec = load_region_file(item)
                    label = str(item) if origin != "built-in" else f"built-in ({item.name})"
                    registry.add(spec, label)
            except RegionSpecError as err:
                problems.extend(err.problems)
    if problems:
        raise RegionSpecError(problems)
    return registry


def validate_files(paths: Sequence[str | Path]) -> list[str]:
    """Every problem of every file (directories are expanded), as messages; empty when all pass."""
    problems: list[str] = []
    names: dict[str, str] = {}
    for p in paths:
        p = Path(p)
        files = _region_files(p) if p.is_dir() else [p]
        if p.is_dir() and not files:
            problems.append(f"{p}: no region file (*.yaml or *.yml) in this folder")
        for f in files:
            try:
                spec = load_region_file(f)
            except RegionSpecError as err:
                problems.extend(err.problems)
                continue
            if spec.name in names:
                problems.append(
                    f"region {spec.name!r} is defined twice: in {names[spec.name]} and in {f}"
                )
            names[spec.name] = str(f)
    return problems
