"""The one sample list every source produces, and the report of what was skipped and why."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from skincls.errors import DataError
from skincls.regions import RegionSpec

BBox = tuple[int, int, int, int]
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


@dataclass(frozen=True)
class Sample:
    """One labelled crop. ``key`` is stable across runs and identifies the sample in a split file.

    ``bbox`` is ``(x1, y1, x2, y2)`` in pixels of the image at ``path``; ``mirror`` asks for a
    horizontal flip at load time (the right-hand side of a left/right region pair).
    """

    key: str
    path: str
    region: str
    label: int
    raw_label: str
    group: str
    bbox: BBox | None = None
    mirror: bool = False


@dataclass
class LoadReport:
    """Records that were not turned into samples, counted by reason, with a few examples each."""

    skipped: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    raw_counts: dict[str, Counter[str]] = field(default_factory=dict)
    files_read: int = 0
    max_examples: int = 5

    def skip(self, reason: str, where: str) -> None:
        self.skipped[reason] += 1
        ex = self.examples.setdefault(reason, [])
        if len(ex) < self.max_examples:
            ex.append(where)

    def reject(self, message: str, reason: str, where: str, skip_bad: bool) -> None:
        """A bad record: raise ``message`` as a DataError, or with ``skip_bad`` count it."""
        if not skip_bad:
            raise DataError(message)
        self.skip(reason, where)

    def count_raw(self, region: str, raw_label: str) -> None:
        self.raw_counts.setdefault(region, Counter())[raw_label] += 1


@dataclass
class Dataset:
    """Samples of the selected regions plus where they came from."""

    root: Path
    source: str
    regions: list[RegionSpec]
    samples: list[Sample]
    report: LoadReport

    def region(self, name: str) -> RegionSpec:
        for r in self.regions:
            if r.name == name:
                return r
        raise KeyError(name)

    def counts(self, samples: list[Sample] | None = None) -> dict[str, list[int]]:
        """Per region, the number of samples of each class (index order)."""
        out = {r.name: [0] * r.num_classes for r in self.regions}
        for s in self.samples if samples is None else samples:
            out[s.region][s.label] += 1
        return out
