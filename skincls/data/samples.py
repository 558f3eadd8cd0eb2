"""The one sample list every source produces, and the report of what was skipped and why."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from skincls.core.errors import DataError
from skincls.data.regions import RegionSpec

BBox = tuple[int, int, int, int]
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


@dataclass(frozen=True)
class Label:
    """One head's label of a sample: the class index, the label as the data wrote it and the
    key of the record it came from (the split file lists labels by this key)."""

    region: str
    index: int
    raw: str
    key: str


@dataclass(frozen=True)
class Sample:
    """One crop (an image and a box) with a label for each head it has one for (partial labels:
    a head without a label is masked out of the loss and the metrics). ``key`` is stable across
    runs and identifies the sample in a split file.

    ``bbox`` is ``(x1, y1, x2, y2)`` in pixels of the image at ``path``; ``mirror`` asks for a
    horizontal flip at load time (the right-hand side of a left/right region pair). ``info``
    holds what the data says about the photo and its subject (AI Hub: device, angle, gender,
    age, skin type, sensitive; a CSV manifest: its other columns), for metrics by subgroup.
    """

    key: str
    path: str
    labels: tuple[Label, ...]
    group: str
    bbox: BBox | None = None
    mirror: bool = False
    info: tuple[tuple[str, str], ...] = ()

    @classmethod
    def single(
        cls,
        key: str,
        path: str,
        label: tuple[str, int, str],
        group: str,
        bbox: BBox | None = None,
        mirror: bool = False,
        info: tuple[tuple[str, str], ...] = (),
    ) -> Sample:
        """A sample with one ``label`` (region, class index, the label as the data wrote it), as
        every source reads it (see :func:`merge_labels`)."""
        region, index, raw = label
        return cls(key, path, (Label(region, index, raw, key),), group, bbox, mirror, info)

    def field(self, name: str) -> str | None:
        """The value of one ``info`` field, or None when the data does not say."""
        return next((v for k, v in self.info if k == name), None)

    @property
    def regions(self) -> tuple[str, ...]:
        return tuple(lab.region for lab in self.labels)


def label_counts(regions: Sequence[RegionSpec], samples: Iterable[Sample]) -> dict[str, list[int]]:
    """Per region, the number of labels of each class (index order)."""
    out = {r.name: [0] * r.num_classes for r in regions}
    for s in samples:
        for lab in s.labels:
            if lab.region in out:
                out[lab.region][lab.index] += 1
    return out


def recipe_key(spec: RegionSpec) -> str:
    """Two regions whose crops may be one sample must preprocess them alike: this says how."""
    return json.dumps([spec.augment.model_dump(mode="json"), spec.resize], sort_keys=True)


def merge_labels(
    samples: Sequence[Sample],
    regions: Sequence[RegionSpec],
    image_of: Callable[[Sample], str] = lambda s: s.path,
) -> list[Sample]:
    """One sample per crop: labels of the same image (``image_of``), box and mirror flag, for
    regions with the same preprocessing, become one sample with several labels (the first
    one's key and position). A crop labelled twice for one region stays two samples; members
    of one crop always share a group (the sources make sure of it)."""
    recipe = {r.name: recipe_key(r) for r in regions}
    out: list[Sample] = []
    position: dict[tuple[Any, ...], int] = {}
    for s in samples:
        ident = (image_of(s), s.bbox, s.mirror, recipe.get(s.labels[0].region, ""))
        i = position.get(ident)
        if i is None or set(s.regions) & set(out[i].regions):
            position[ident] = len(out)
            out.append(s)
            continue
        if out[i].group != s.group:
            raise DataError(f"{s.path}: one crop is in groups {out[i].group!r} and {s.group!r}")
        out[i] = replace(out[i], labels=out[i].labels + s.labels)
    return out


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
        """Per region, the number of labels of each class (index order)."""
        return label_counts(self.regions, self.samples if samples is None else samples)
