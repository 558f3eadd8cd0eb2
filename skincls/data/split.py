"""Group-aware stratified train/val/test split, deterministic for a seed, saved as CSV.

Whole groups (subjects, lesions) are assigned greedily, rarest labels first, each to the part whose
shortfall on that group's (region, class) cells, relative to the part's target, is largest, so
class shares of every head follow the fractions as far as the groups allow (also when a sample
carries labels of several heads) and no group is ever in two parts.
"""

from __future__ import annotations

import csv
import os
import random
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from skincls.core.errors import SkinclsError
from skincls.data.samples import Sample

PARTS = ("train", "val", "test")


def check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    if len(fractions) != 3 or any(f < 0 for f in fractions):
        raise SkinclsError(f"split fractions: expected three numbers >= 0, got {list(fractions)}")
    total = sum(fractions)
    if abs(total - 1.0) > 1e-6 or fractions[0] <= 0:
        raise SkinclsError(
            f"split fractions: train/val/test must sum to 1 with train > 0, got {list(fractions)}"
        )
    return (float(fractions[0]), float(fractions[1]), float(fractions[2]))


def split_samples(
    samples: Sequence[Sample], fractions: Sequence[float] = (0.7, 0.15, 0.15), seed: int = 0
) -> dict[str, str]:
    """Map each sample key to ``train``, ``val`` or ``test``."""
    parts = assign_groups(samples, check_fractions(fractions), seed)
    return {k: PARTS[i] for k, i in parts.items()}


def fold_samples(samples: Sequence[Sample], folds: int, seed: int = 0) -> dict[str, int]:
    """Map each sample key to one of ``folds`` equal, group-aware, stratified folds (0-based):
    every sample in exactly one fold, no group in two."""
    if folds < 2:
        raise SkinclsError(f"--folds: expected 2 or more, got {folds}")
    n_groups = len({s.group for s in samples})
    if n_groups < folds:
        raise SkinclsError(f"--folds {folds}: the data has only {n_groups} group(s)")
    return assign_groups(samples, [1.0 / folds] * folds, seed)


def assign_groups(samples: Sequence[Sample], fr: Sequence[float], seed: int = 0) -> dict[str, int]:
    """Each sample key's part (an index into ``fr``, the parts' shares), whole groups at a time,
    by the greedy rule of this module's docstring."""
    groups: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        groups[s.group].append(s)
    cell_total: dict[tuple[str, int], int] = defaultdict(int)
    for s in samples:
        for lab in s.labels:
            cell_total[(lab.region, lab.index)] += 1
    group_cells: dict[str, dict[tuple[str, int], int]] = {}
    for g, members in groups.items():
        cells: dict[tuple[str, int], int] = defaultdict(int)
        for s in members:
            for lab in s.labels:
                cells[(lab.region, lab.index)] += 1
        group_cells[g] = cells

    rng = random.Random(seed)
    order = sorted(groups)
    rng.shuffle(order)
    order.sort(key=lambda g: (min(cell_total[c] for c in group_cells[g]), -len(groups[g])))

    n_total = len(samples)
    current: list[dict[tuple[str, int], int]] = [defaultdict(int) for _ in fr]
    sizes = [0] * len(fr)
    assignment: dict[str, int] = {}
    for g in order:
        cells = group_cells[g]
        best, best_score = 0, None
        for i, f in enumerate(fr):
            if f == 0:
                continue
            shortfall = sum(
                (f * cell_total[c] - current[i][c]) / (f * cell_total[c]) * n
                for c, n in cells.items()
            )
            overall = (f * n_total - sizes[i]) / (f * max(n_total, 1))
            score = (shortfall, overall)
            if best_score is None or score > best_score:
                best, best_score = i, score
        for c, n in cells.items():
            current[best][c] += n
        sizes[best] += len(groups[g])
        for s in groups[g]:
            assignment[s.key] = best
    return assignment


def save_split(path: Path, samples: Sequence[Sample], assignment: dict[str, str]) -> None:
    """Write ``key,part,group,region,label`` rows atomically: one row per label, keyed by the
    label's record, so the split still applies when a subset of the regions is loaded."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["key", "part", "group", "region", "label"])
        for s in samples:
            for lab in s.labels:
                w.writerow([lab.key, assignment[s.key], s.group, lab.region, lab.raw])
    os.replace(tmp, path)


def load_split(path: Path, samples: Sequence[Sample]) -> dict[str, str]:
    """Read a saved split; every label of every sample must be in it (the data changed
    otherwise), and the labels of one crop in one part."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            saved = {row["key"]: row["part"] for row in csv.DictReader(fh)}
    except (OSError, KeyError) as err:
        raise SkinclsError(f"{path}: cannot read the saved split: {err}") from None
    bad = [p for p in saved.values() if p not in PARTS]
    if bad:
        raise SkinclsError(f"{path}: part must be one of {PARTS}, found {bad[0]!r}")
    missing = [lab.key for s in samples for lab in s.labels if lab.key not in saved]
    if missing:
        raise SkinclsError(
            f"{path}: {len(missing)} label(s) of the data are not in the saved split (first: "
            f"{missing[0]!r}); the data changed since the run started"
        )
    out: dict[str, str] = {}
    for s in samples:
        found = {saved[lab.key] for lab in s.labels}
        if len(found) > 1:
            raise SkinclsError(
                f"{path}: the labels of {s.key!r} are in parts {sorted(found)}; one crop must be "
                "in one part (the data changed since the run started)"
            )
        out[s.key] = found.pop()
    return out


def partition(samples: Sequence[Sample], assignment: dict[str, str]) -> dict[str, list[Sample]]:
    out: dict[str, list[Sample]] = {p: [] for p in PARTS}
    for s in samples:
        out[assignment[s.key]].append(s)
    return out
