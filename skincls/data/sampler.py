"""Epoch samplers: per-region class balancing plus a balance across regions, reproducible.

Each epoch's draw depends only on ``(seed, epoch)``, so a resumed run sees the same batches, and
with ``world_size > 1`` every rank takes a disjoint, equally long share of one global draw.
Items are ``(sample_index, augmentation_seed)`` pairs for :class:`SampleDataset`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import Sampler

from skincls.core.names import SAMPLERS
from skincls.data.regions import RegionSpec
from skincls.data.samples import Sample

CLASS_MASS: dict[str, Callable[[int, list[int]], float]] = {
    "none": lambda n, counts: n / sum(counts),
    "class_balanced": lambda n, counts: 1.0 / len(counts),
    "sqrt": lambda n, counts: math.sqrt(n) / sum(math.sqrt(c) for c in counts),
}
"""Per sampler (:data:`skincls.core.names.SAMPLERS`), the share of its region's draw a class of
``n`` labels gets, given the label counts of the region's classes."""
assert set(CLASS_MASS) == set(SAMPLERS), "every sampler has its class mass"


def sample_weights(
    samples: Sequence[Sample],
    sampler_of_region: dict[str, str],
    region_balance: str = "none",
) -> list[float] | None:
    """Drawing probability of each sample, or None when every sample is drawn once (plain
    shuffle).

    Each (region, class) cell gets a target mass. Within a region: ``class_balanced`` gives each
    class equal mass, ``sqrt`` mass proportional to sqrt(class count), ``none`` mass proportional
    to the count. Across regions: ``none`` keeps each region's share of the labels, ``sqrt``
    gives mass proportional to sqrt(region size), ``equal`` the same mass to every region. A
    label asks for its cell's mass divided by the cell's count; a sample with several labels is
    drawn with the largest of its labels' asks (its rarest label), so a rare class of one head is
    never diluted by a common class of another. :func:`draw_shares` says what this produces.
    """
    if region_balance == "none" and all(v == "none" for v in sampler_of_region.values()):
        return None
    cells: dict[tuple[str, int], int] = {}
    region_counts: dict[str, int] = {}
    for s in samples:
        for lab in s.labels:
            cells[(lab.region, lab.index)] = cells.get((lab.region, lab.index), 0) + 1
            region_counts[lab.region] = region_counts.get(lab.region, 0) + 1
    classes_in_region: dict[str, list[int]] = {}
    for (region, _), n in cells.items():
        classes_in_region.setdefault(region, []).append(n)
    region_mass = {
        r: {"none": float(n), "sqrt": math.sqrt(n), "equal": 1.0}[region_balance]
        for r, n in region_counts.items()
    }

    def ask(region: str, index: int) -> float:
        n_class = cells[(region, index)]
        mass = CLASS_MASS[sampler_of_region.get(region, "none")]
        return region_mass[region] * mass(n_class, classes_in_region[region]) / n_class

    weights = [max(ask(lab.region, lab.index) for lab in s.labels) for s in samples]
    total = sum(weights)
    return [w / total for w in weights]


def draw_shares(
    samples: Sequence[Sample],
    weights: Sequence[float] | None,
    regions: Sequence[RegionSpec],
) -> dict[str, dict[str, Any]]:
    """What a draw with ``weights`` gives each head, in expectation: ``loss_share`` is the head's
    part of the multi-task loss (labels drawn times the region's ``weight``, over all heads),
    ``classes`` the class shares among the head's drawn labels."""
    p = [1.0 / len(samples)] * len(samples) if weights is None else weights
    mass = {r.name: [0.0] * r.num_classes for r in regions}
    for w, s in zip(p, samples, strict=True):
        for lab in s.labels:
            mass[lab.region][lab.index] += w
    loss = {r.name: sum(mass[r.name]) * r.weight for r in regions}
    total = sum(loss.values()) or 1.0
    return {
        r.name: {
            "loss_share": loss[r.name] / total,
            "classes": [m / (sum(mass[r.name]) or 1.0) for m in mass[r.name]],
        }
        for r in regions
    }


class EpochSampler(Sampler):
    """Draws ``num_samples`` items per epoch (with replacement when weighted), split over ranks.

    Call :meth:`set_epoch` before each epoch. ``state_dict`` holds what resuming needs.
    """

    def __init__(
        self,
        num_items: int,
        weights: Sequence[float] | None,
        seed: int,
        num_samples: int | None = None,
        rank: int = 0,
        world_size: int = 1,
    ):
        if num_items <= 0:
            raise ValueError("cannot sample from an empty training set")
        self.num_items = num_items
        self.weights = torch.tensor(weights, dtype=torch.float64) if weights is not None else None
        self.seed = seed
        self.num_samples = num_samples or num_items
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.per_rank = math.ceil(self.num_samples / world_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def global_draw(self) -> list[int]:
        """The whole epoch's sample indices, identical on every rank."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        total = self.per_rank * self.world_size
        if self.weights is None:
            order = torch.randperm(self.num_items, generator=g).tolist()
            while len(order) < total:
                order += order[: total - len(order)]
            return order[:total]
        return torch.multinomial(self.weights, total, replacement=True, generator=g).tolist()

    def __iter__(self) -> Iterator[tuple[int, int]]:
        draw = self.global_draw()
        base = (self.seed * 7919 + self.epoch) * 10_000_019
        for pos in range(self.rank, len(draw), self.world_size):
            yield draw[pos], (base + pos) % (2**32 - 1)

    def __len__(self) -> int:
        return self.per_rank

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "seed": self.seed, "num_samples": self.num_samples}


class EvalSampler(Sampler):
    """Every index once, in order, for ranks ``rank::world_size``; augmentation seed = index."""

    def __init__(self, num_items: int, rank: int = 0, world_size: int = 1):
        self.indices = list(range(rank, num_items, world_size))

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter((i, i) for i in self.indices)

    def __len__(self) -> int:
        return len(self.indices)
