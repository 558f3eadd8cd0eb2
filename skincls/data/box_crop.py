"""The random crop of the ``squash`` and ``pad`` resize policies: it follows the box's aspect.

Its own module because it subclasses an albumentations transform, and albumentations is slow to
import: :mod:`skincls.data.augment` imports this module only when it builds a pipeline.
"""

from __future__ import annotations

import math
from typing import Any

import albumentations as A


class BoxAspectCrop(A.ImageOnlyTransform):
    """A random crop of ``scale`` of the area whose aspect is the image's own times a factor in
    ``ratio`` (log-uniform): on a 2:1 forehead box it stays about 2:1, where albumentations'
    ``RandomResizedCrop`` (an absolute ratio) would cut a near-square from the middle."""

    def __init__(
        self,
        scale: tuple[float, float] = (0.8, 1.0),
        ratio: tuple[float, float] = (0.75, 1.3333),
        p: float = 1.0,
    ):
        super().__init__(p=p)
        self.scale, self.ratio = tuple(scale), tuple(ratio)

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict:
        h, w = params["shape"][:2]
        area = h * w * self.py_random.uniform(*self.scale)
        log_r = self.py_random.uniform(math.log(self.ratio[0]), math.log(self.ratio[1]))
        aspect = (w / h) * math.exp(log_r)
        cw = min(w, max(1, round(math.sqrt(area * aspect))))
        ch = min(h, max(1, round(math.sqrt(area / aspect))))
        x, y = self.py_random.randint(0, w - cw), self.py_random.randint(0, h - ch)
        return {"box": (x, y, x + cw, y + ch)}

    def apply(self, img: Any, box: tuple[int, int, int, int] = (0, 0, 0, 0), **params: Any):
        x1, y1, x2, y2 = box
        return img[y1:y2, x1:x2]

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("scale", "ratio")
