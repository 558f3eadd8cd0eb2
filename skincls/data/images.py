"""The one way skincls reads pixels: open, orient, bound, convert, crop, mirror.

Training, evaluation, ``prepare``, ``predict``, ``explain`` and export all call :func:`read_image`,
so a photo with EXIF orientation, a 16-bit PNG or a box at the image's edge gives the model the
same pixels everywhere. Boxes are in the coordinates of the image as a viewer shows it (after
EXIF orientation). Every failure is an :class:`ImageReadError` whose message is the reason a user
sees in ``bad_images.txt`` and in the summary: ``cannot decode``, ``too large``, ``box outside``.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

BBox = tuple[int, int, int, int]

MAX_PIXELS = 100_000_000
"""Largest image accepted, in pixels: AI Hub DSLR photos are about 12 MP; 100 MP leaves room for
any camera and refuses decompression bombs before they are decoded."""

MAX_ASPECT = 32.0
"""Largest ratio of the long to the short side of an image or a box: resizing the short side of
a 1 x 100,000 strip to the input size would allocate gigabytes."""


class ImageReadError(ValueError):
    """An image (or its box) that cannot be turned into pixels; the message is the reason."""


def _check_size(w: int, h: int, what: str) -> None:
    if w <= 0 or h <= 0:
        raise ImageReadError(f"empty {what}: {w} x {h}")
    if w * h > MAX_PIXELS:
        raise ImageReadError(f"too large: {w} x {h} ({what} over {MAX_PIXELS:,} pixels)")
    if max(w, h) / min(w, h) > MAX_ASPECT:
        raise ImageReadError(
            f"too elongated: {w} x {h} ({what} aspect ratio over {MAX_ASPECT:g}:1 cannot be "
            "resized)"
        )


def _oriented_size(img) -> tuple[int, int]:
    """Size after EXIF orientation, from the header only."""
    w, h = img.size
    try:
        orientation = img.getexif().get(0x0112, 1)
    except Exception:  # a broken EXIF block is ignored, as viewers do
        orientation = 1
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def scale_box(bbox: BBox, scale: float, width: int, height: int) -> BBox:
    """``bbox`` (full-resolution pixels) at ``scale``, widened to whole pixels and clipped.

    Raises :class:`ImageReadError` when nothing of the box lies inside the image.
    """
    x1, y1, x2, y2 = bbox
    box = (
        max(0, math.floor(x1 * scale)),
        max(0, math.floor(y1 * scale)),
        min(width, math.ceil(x2 * scale)),
        min(height, math.ceil(y2 * scale)),
    )
    if box[2] <= box[0] or box[3] <= box[1]:
        full = (round(width / scale), round(height / scale))
        raise ImageReadError(f"box outside the image: {tuple(bbox)} in {full[0]} x {full[1]}")
    return box


def _to_rgb(img):
    """8-bit RGB; 16-bit and 32-bit integer images are scaled by their bit depth, not content."""
    from PIL import Image

    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float64)
        # 16-bit files (PNG's 16-bit grey may open as "I") scale by 65535, 32-bit ones by 2^31-1
        depth = 65535.0 if img.mode.startswith("I;16") or img.format == "PNG" else 2**31 - 1.0
        arr = arr.clip(0)
        img = Image.fromarray(np.rint(arr / depth * 255).clip(0, 255).astype(np.uint8))
    elif img.mode == "F":
        raise ImageReadError("cannot decode: floating-point images are not supported")
    return img.convert("RGB")


def read_image(
    path: str,
    bbox: BBox | None = None,
    mirror: bool = False,
    max_side: int | None = None,
    min_side: int | None = None,
) -> np.ndarray:
    """RGB uint8 array of ``path`` (or of ``bbox`` in it), EXIF orientation applied, mirrored.

    With ``max_side`` the result is at most ``max_side`` on its longest side (aspect kept). With
    ``min_side`` a JPEG is decoded at 1/2, 1/4 or 1/8 scale (draft mode) when the crop's shorter
    side stays at least ``min_side``; the result is then smaller than the stored crop.
    """
    crop = read_crops(path, [bbox], mirror, max_side, min_side)[0]
    if isinstance(crop, ImageReadError):
        raise crop
    return np.asarray(crop, dtype=np.uint8).copy()


def read_crops(
    path: str,
    boxes: list[BBox | None],
    mirror: bool = False,
    max_side: int | None = None,
    min_side: int | None = None,
) -> list:
    """PIL crops of ``boxes`` (None: the whole image) from one decode of ``path``.

    With ``max_side``, JPEG draft mode lets the decoder downscale by 1/2, 1/4 or 1/8 as long as
    every crop keeps at least ``max_side`` pixels on its longest side; each crop is then shrunk to
    at most ``max_side``. ``min_side`` alone allows the draft scales that keep every crop's
    shorter side at least ``min_side``, and shrinks nothing further. A box that cannot be cropped (outside the image, too thin) gives an
    :class:`ImageReadError` in its place; an image that cannot be read raises one.
    """
    from PIL import Image

    try:
        return _read_crops(path, boxes, mirror, max_side, min_side)
    except ImageReadError:
        raise
    except Image.DecompressionBombError:
        raise ImageReadError(_bomb_reason(path)) from None
    except MemoryError:
        raise ImageReadError("too large: out of memory while decoding") from None
    except FileNotFoundError:
        raise ImageReadError("file not found") from None
    except Exception as err:  # decoders raise OSError, SyntaxError, struct.error, IndexError...
        raise ImageReadError(f"cannot decode: {type(err).__name__}: {err}") from None


def _draft(img: Any, regions: list[BBox], max_side: int | None, min_side: int | None) -> None:
    """Ask the JPEG decoder for the largest of 1/2, 1/4, 1/8 that keeps every region's longest
    side at least ``max_side`` and its shorter side at least ``min_side``."""
    longest = min(max(r[2] - r[0], r[3] - r[1]) for r in regions)
    shortest = min(min(r[2] - r[0], r[3] - r[1]) for r in regions)
    reduce = 1
    while (
        reduce < 8
        and longest / (reduce * 2) >= (max_side or 0)
        and shortest / (reduce * 2) >= (min_side or 0)
    ):
        reduce *= 2
    if reduce > 1:
        raw_w, raw_h = img.size
        img.draft("RGB", (raw_w // reduce, raw_h // reduce))


def _bomb_reason(path: str) -> str:
    """The reason for an image Pillow refused as a decompression bomb, with its header size."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None
    try:
        with Image.open(path) as img:
            w, h = img.size
    except Exception:
        return f"too large: over {MAX_PIXELS:,} pixels"
    finally:
        Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    return f"too large: {w} x {h} (image over {MAX_PIXELS:,} pixels)"


def _read_crops(
    path: str,
    boxes: list[BBox | None],
    mirror: bool,
    max_side: int | None,
    min_side: int | None,
) -> list:
    from PIL import Image, ImageOps

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # refused below
        img = Image.open(path)
    with img:
        full_w, full_h = _oriented_size(img)
        _check_size(full_w, full_h, "image")
        problems: dict[int, ImageReadError] = {}
        for i, b in enumerate(boxes):
            if b is not None:
                try:
                    scale_box(b, 1.0, full_w, full_h)
                    _check_size(b[2] - b[0], b[3] - b[1], "box")
                except ImageReadError as err:
                    problems[i] = err
        regions = [
            (0, 0, full_w, full_h) if b is None else b
            for i, b in enumerate(boxes)
            if i not in problems
        ]
        if not regions:
            return [problems[i] for i in range(len(boxes))]
        if (max_side or min_side) and img.format == "JPEG":
            _draft(img, regions, max_side, min_side)
        rgb = _to_rgb(ImageOps.exif_transpose(img))
    scale = rgb.size[0] / full_w
    crops: list = []
    for i, b in enumerate(boxes):
        if i in problems:
            crops.append(problems[i])
            continue
        crop = rgb if b is None else rgb.crop(scale_box(b, scale, rgb.size[0], rgb.size[1]))
        if max_side and max(crop.size) > max_side:
            crop = crop.copy() if crop is rgb else crop
            crop.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
        if mirror:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        crops.append(crop)
    return crops


def why_unreadable(sample: Any) -> str:
    """Why ``sample`` gave no pixels (read again: failures are rare)."""
    try:
        read_image(sample.path, sample.bbox, sample.mirror)
    except ImageReadError as err:
        return str(err)
    return "cannot decode (failed in a data loader worker)"


def unreadable_summary(bad: dict[str, str]) -> str:
    """``3 image(s) that give no pixels (2 truncated, 1 ...)``: counts by reason."""
    from collections import Counter

    reasons = Counter(r.split(":", 1)[0] for r in bad.values())
    parts = ", ".join(f"{n} {reason}" for reason, n in reasons.most_common())
    return f"{len(bad)} image(s) that give no pixels ({parts})"
