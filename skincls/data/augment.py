"""Augmentation recipe ops: a pydantic model per supported albumentations transform.

Recipes are validated here without importing albumentations (it takes seconds to import), so
``skincls regions validate`` and ``analyze`` stay fast; ``build_transform`` turns a validated
recipe into an albumentations pipeline with the resize and normalisation skincls adds itself.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

from skincls.core.names import RESIZE_POLICIES

Probability = Annotated[float, Field(ge=0.0, le=1.0)]


class _Op(BaseModel):
    model_config = ConfigDict(extra="forbid")
    p: Probability = 0.5

    def albumentations_kwargs(self) -> dict[str, Any]:
        return self.model_dump(exclude={"op"})


def _ordered(
    name: str, pair: tuple[float, float], lo: float | None = None, hi: float | None = None
):
    if pair[0] > pair[1]:
        raise ValueError(f"{name}: lower bound {pair[0]} is greater than upper bound {pair[1]}")
    if lo is not None and pair[0] < lo:
        raise ValueError(f"{name}: must be >= {lo}, got {pair[0]}")
    if hi is not None and pair[1] > hi:
        raise ValueError(f"{name}: must be <= {hi}, got {pair[1]}")


class HorizontalFlip(_Op):
    op: Literal["HorizontalFlip"]


class VerticalFlip(_Op):
    op: Literal["VerticalFlip"]


class RandomRotate90(_Op):
    op: Literal["RandomRotate90"]


class Transpose(_Op):
    op: Literal["Transpose"]


class Affine(_Op):
    op: Literal["Affine"]
    rotate: tuple[float, float] = (0.0, 0.0)
    scale: tuple[float, float] = (1.0, 1.0)
    translate_percent: tuple[float, float] = (0.0, 0.0)
    shear: tuple[float, float] = (0.0, 0.0)

    @model_validator(mode="after")
    def _check(self) -> Affine:
        _ordered("rotate", self.rotate, -180, 180)
        _ordered("scale", self.scale, 0.01, 10)
        _ordered("translate_percent", self.translate_percent, -1, 1)
        _ordered("shear", self.shear, -90, 90)
        return self


class RandomResizedCrop(_Op):
    """Crop then resize to the network input; its output size comes from ``--image-size``."""

    op: Literal["RandomResizedCrop"]
    p: Probability = 1.0
    scale: tuple[float, float] = (0.8, 1.0)
    ratio: tuple[float, float] = (0.75, 1.3333)

    @model_validator(mode="after")
    def _check(self) -> RandomResizedCrop:
        _ordered("scale", self.scale, 0.01, 1.0)
        _ordered("ratio", self.ratio, 0.1, 10)
        return self


class CLAHE(_Op):
    op: Literal["CLAHE"]
    clip_limit: tuple[float, float] = (1.0, 4.0)
    tile_grid_size: tuple[Annotated[int, Field(ge=1)], Annotated[int, Field(ge=1)]] = (8, 8)

    @model_validator(mode="after")
    def _check(self) -> CLAHE:
        _ordered("clip_limit", self.clip_limit, 1.0)
        return self


class RandomBrightnessContrast(_Op):
    op: Literal["RandomBrightnessContrast"]
    brightness_limit: Annotated[float, Field(ge=0, le=1)] = 0.2
    contrast_limit: Annotated[float, Field(ge=0, le=1)] = 0.2


class RandomGamma(_Op):
    op: Literal["RandomGamma"]
    gamma_limit: tuple[float, float] = (80.0, 120.0)

    @model_validator(mode="after")
    def _check(self) -> RandomGamma:
        _ordered("gamma_limit", self.gamma_limit, 1.0)
        return self


class HueSaturationValue(_Op):
    op: Literal["HueSaturationValue"]
    hue_shift_limit: Annotated[float, Field(ge=0, le=180)] = 10
    sat_shift_limit: Annotated[float, Field(ge=0, le=255)] = 15
    val_shift_limit: Annotated[float, Field(ge=0, le=255)] = 10


class GaussianBlur(_Op):
    op: Literal["GaussianBlur"]
    blur_limit: tuple[int, int] = (3, 5)

    @model_validator(mode="after")
    def _check(self) -> GaussianBlur:
        _ordered("blur_limit", self.blur_limit, 3)
        if any(k % 2 == 0 for k in self.blur_limit):
            raise ValueError(f"blur_limit: kernel sizes must be odd, got {list(self.blur_limit)}")
        return self


class GaussNoise(_Op):
    op: Literal["GaussNoise"]
    std_range: tuple[float, float] = (0.01, 0.05)

    @model_validator(mode="after")
    def _check(self) -> GaussNoise:
        _ordered("std_range", self.std_range, 0.0, 1.0)
        return self


class Sharpen(_Op):
    op: Literal["Sharpen"]
    alpha: tuple[float, float] = (0.1, 0.3)
    lightness: tuple[float, float] = (0.8, 1.0)

    @model_validator(mode="after")
    def _check(self) -> Sharpen:
        _ordered("alpha", self.alpha, 0.0, 1.0)
        _ordered("lightness", self.lightness, 0.0)
        return self


class ImageCompression(_Op):
    op: Literal["ImageCompression"]
    quality_range: tuple[int, int] = (80, 100)

    @model_validator(mode="after")
    def _check(self) -> ImageCompression:
        _ordered("quality_range", self.quality_range, 1, 100)
        return self


class CoarseDropout(_Op):
    op: Literal["CoarseDropout"]
    num_holes_range: tuple[int, int] = (1, 4)
    hole_height_range: tuple[float, float] = (0.05, 0.15)
    hole_width_range: tuple[float, float] = (0.05, 0.15)

    @model_validator(mode="after")
    def _check(self) -> CoarseDropout:
        _ordered("num_holes_range", self.num_holes_range, 1)
        _ordered("hole_height_range", self.hole_height_range, 0.0, 1.0)
        _ordered("hole_width_range", self.hole_width_range, 0.0, 1.0)
        return self


AugmentOp = Annotated[
    Union[  # noqa: UP007 - pydantic's discriminated union
        HorizontalFlip,
        VerticalFlip,
        RandomRotate90,
        Transpose,
        Affine,
        RandomResizedCrop,
        CLAHE,
        RandomBrightnessContrast,
        RandomGamma,
        HueSaturationValue,
        GaussianBlur,
        GaussNoise,
        Sharpen,
        ImageCompression,
        CoarseDropout,
    ],
    Field(discriminator="op"),
]

OP_NAMES = [
    "HorizontalFlip",
    "VerticalFlip",
    "RandomRotate90",
    "Transpose",
    "Affine",
    "RandomResizedCrop",
    "CLAHE",
    "RandomBrightnessContrast",
    "RandomGamma",
    "HueSaturationValue",
    "GaussianBlur",
    "GaussNoise",
    "Sharpen",
    "ImageCompression",
    "CoarseDropout",
]


ALWAYS_RANDOM = ("RandomRotate90", "RandomResizedCrop", "GaussNoise", "CoarseDropout")
SYMMETRIC_LIMITS = (
    "brightness_limit",
    "contrast_limit",
    "hue_shift_limit",
    "sat_shift_limit",
    "val_shift_limit",
)


def random_part(op: Any) -> str | None:
    """What makes ``op`` differ from one call to the next (None: it is deterministic, so an
    app can reproduce it from its parameters alone)."""
    values = op.model_dump(exclude={"op"})
    if 0.0 < values.pop("p") < 1.0:
        return f"p {op.p} (applied at random)"
    if op.p == 0.0:
        return None
    if op.op in ALWAYS_RANDOM:
        return "it draws its parameters at random"
    for key, v in values.items():
        if isinstance(v, tuple | list) and len(v) == 2 and v[0] != v[1]:
            return f"{key} {list(v)} (a range, drawn at random)"
        if key in SYMMETRIC_LIMITS and v:
            return f"{key} {v} (drawn at random within +-{v})"
    return None


SHRINK_BY_AREA = {"area_for_downscale": "image"}
"""Every resize shrinks by pixel area (OpenCV ``INTER_AREA``) and enlarges bilinearly: a
bilinear shrink of a 600 px photo to 48 px reads 4 of every 144 pixels (aliasing), while the
training loader's JPEG draft decoding averages them, so evaluation saw other images than
training did."""


def policy_steps(resize: str, image_size: int, mean: Sequence[float]) -> list[Any]:
    """The albumentations steps of a resize policy (:data:`RESIZE_POLICIES`)."""
    if resize not in POLICY_STEPS:
        raise ValueError(f"resize: expected one of {', '.join(RESIZE_POLICIES)}, got {resize!r}")
    return POLICY_STEPS[resize](image_size, mean)


def _squash(s: int, mean: Sequence[float]) -> list[Any]:
    import albumentations as A

    return [A.Resize(height=s, width=s, **SHRINK_BY_AREA)]


def _pad(s: int, mean: Sequence[float]) -> list[Any]:
    import albumentations as A
    import cv2

    fill = tuple(float(m) * 255.0 for m in mean)
    return [
        A.LongestMaxSize(max_size=s, **SHRINK_BY_AREA),
        A.PadIfNeeded(min_height=s, min_width=s, border_mode=cv2.BORDER_CONSTANT, fill=fill),
    ]


def _crop(s: int, mean: Sequence[float]) -> list[Any]:
    import albumentations as A

    return [A.SmallestMaxSize(max_size=s, **SHRINK_BY_AREA), A.CenterCrop(height=s, width=s)]


POLICY_STEPS: dict[str, Callable[[int, Sequence[float]], list[Any]]] = {
    "squash": _squash,
    "pad": _pad,
    "crop": _crop,
}
assert set(POLICY_STEPS) == set(RESIZE_POLICIES), "every resize policy has its steps"


def build_transform(
    ops: list[Any],
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    resize: str = "crop",
) -> Any:
    """An albumentations pipeline: the recipe with the ``resize`` policy, then normalise.

    With ``crop``, a recipe's ``RandomResizedCrop`` crops and resizes to the input as
    albumentations does (its ``ratio`` is an absolute aspect), and without one the image is
    resized by its shorter side and centre-cropped. With ``squash`` or ``pad``, a
    ``RandomResizedCrop`` becomes a :class:`BoxAspectCrop` (its ``ratio`` relative to the crop's
    own aspect, so the random crop follows the box) followed by the policy, and without one the
    policy applies first. The output is an HWC float32 array under the key ``image``.
    """
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    import albumentations as A

    steps = []
    placed = False
    for op in ops:
        kwargs = op.albumentations_kwargs()
        if op.op == "RandomResizedCrop" and resize == "crop":
            kwargs.update(size=(image_size, image_size), **SHRINK_BY_AREA)
            placed = True
        elif op.op == "RandomResizedCrop":
            from skincls.data.box_crop import BoxAspectCrop

            steps.append(BoxAspectCrop(**kwargs))
            steps.extend(policy_steps(resize, image_size, mean))
            placed = True
            continue
        steps.append(getattr(A, op.op)(**kwargs))
    if not placed:
        steps[0:0] = policy_steps(resize, image_size, mean)
    steps.append(A.Resize(height=image_size, width=image_size, **SHRINK_BY_AREA))
    steps.append(A.Normalize(mean=tuple(mean), std=tuple(std), max_pixel_value=255.0))
    return A.Compose(steps)
