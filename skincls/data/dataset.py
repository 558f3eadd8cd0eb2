"""Torch dataset over samples: decode, crop the box, mirror, augment per region, normalise.

Indices are ``(sample_index, seed)`` pairs from :mod:`skincls.data.sampler`: each draw reseeds its
augmentation, so results do not depend on worker count or on where an epoch was resumed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from skincls.core.errors import SkinclsError
from skincls.data.images import ImageReadError, read_image
from skincls.data.samples import Sample


class SampleDataset(Dataset):
    """Items are ``(image CHW float32, labels, ok, sample index)``: ``labels`` holds one class
    index per head in ``region_names`` order, -1 where the sample has no label for that head;
    ``ok`` is False for an image that could not be decoded: a black image that the loss and
    metrics mask out. A sample is preprocessed with its first label's region recipe (samples
    only share a crop across regions whose recipes are equal).

    ``draft_min`` (training: the network input size) lets a JPEG decode at 1/2, 1/4 or 1/8
    scale while the crop's shorter side stays at least that many pixels: a stored crop twice the
    input or more decodes several times faster, and the transform resizes it to the input
    anyway. Evaluation and prediction decode at full scale."""

    def __init__(
        self,
        samples: Sequence[Sample],
        region_names: Sequence[str],
        transforms: dict[str, Any],
        image_size: int,
        draft_min: int | None = None,
    ):
        self.samples = list(samples)
        self.draft_min = draft_min
        self.region_index = {n: i for i, n in enumerate(region_names)}
        self.transforms = transforms
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, item: int | tuple[int, int]):
        index, seed = item if isinstance(item, tuple) else (item, item)
        s = self.samples[index]
        transform = self.transforms[s.labels[0].region]
        ok = True
        try:
            arr = read_image(s.path, s.bbox, s.mirror, min_side=self.draft_min)
        except ImageReadError:
            ok = False
            arr = np.zeros((self.image_size, self.image_size, 3), np.uint8)
        transform.set_random_seed(seed)
        image = transform(image=arr)["image"]
        tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
        labels = torch.full((len(self.region_index),), -1, dtype=torch.long)
        for lab in s.labels:
            labels[self.region_index[lab.region]] = lab.index
        return tensor, labels, ok, index


def build_transforms(
    regions: Sequence[Any],
    phase: str,
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    resize: str = "crop",
) -> dict[str, Any]:
    """Per region, its ``phase`` recipe with its resize policy (its own ``resize:``, else
    ``resize``)."""
    from skincls.data.augment import build_transform

    if phase not in ("train", "eval"):
        raise SkinclsError(f"phase must be train or eval, got {phase!r}")
    return {
        r.name: build_transform(
            getattr(r.augment, phase), image_size, tuple(mean), tuple(std), r.resize_policy(resize)
        )
        for r in regions
    }
