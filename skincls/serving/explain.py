"""``skincls explain``: Grad-CAM heat maps over the backbone's last feature map.

Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks", ICCV 2017. Works for any
timm backbone with ``forward_features``/``forward_head``; the overlay is written at the input
image's own size so a user can see whether the model looks at skin or at background.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from skincls.core.errors import SkinclsError
from skincls.core.fileio import atomic_write


def grad_cam(model, image: Any, region: str, target: int | None = None) -> tuple[np.ndarray, int]:
    """Heat map in [0, 1] at the feature map's resolution, and the class it explains (by default
    the head's decided class)."""
    import torch

    head = model.heads[region]
    model.eval()
    with torch.enable_grad():
        x = image.detach().requires_grad_(False)
        features = model.backbone.forward_features(x)
        features.retain_grad()
        pooled = model.backbone.forward_head(features, pre_logits=True)
        logits = head(pooled)
        kind = model.kinds.get(region, "softmax")
        probs, decided = model.serve(region, logits)
        cls = int(decided[0]) if target is None else target  # as predict
        model.zero_grad(set_to_none=True)
        # the class logit (standard Grad-CAM); a CORN head has no per-class logit: log P(class)
        score = logits[0, cls] if kind != "corn" else torch.log(probs[0, cls].clamp_min(1e-12))
        score.backward()
    grads = features.grad[0]
    weights = grads.mean(dim=(1, 2))
    cam = torch.relu((weights[:, None, None] * features[0]).sum(0)).detach().numpy()
    if cam.max() > 0:
        cam = cam / cam.max()
    return cam, cls


def cam_overlay(
    model,
    rgb: np.ndarray,
    region: str,
    transform: Any,
    alpha: float = 0.45,
    resize: str = "crop",
):
    """Grad-CAM of ``region`` over ``rgb`` (HxWx3 uint8) through the eval ``transform`` (made
    with the ``resize`` policy): the overlay (uint8, the image's own size), the heat map in
    [0, 1] at that size, and the class."""
    import torch
    from matplotlib import colormaps

    x = torch.from_numpy(transform(image=rgb)["image"].transpose(2, 0, 1)[None].copy())
    cam, cls = grad_cam(model, x, region)
    full = cam_on_image(cam, rgb.shape[0], rgb.shape[1], resize)
    heat = colormaps["jet"](full)[..., :3] * 255
    overlay = (1 - alpha) * rgb.astype(np.float32) + alpha * heat
    return overlay.clip(0, 255).astype(np.uint8), full, cls


MIN_SIDE = 256
"""Shorter side of a written overlay, in pixels: a 64 px crop is enlarged to be seen."""


def framed(overlay: np.ndarray, min_side: int = MIN_SIDE) -> Any:
    """The overlay enlarged (whole multiples, nearest neighbour: pixels stay pixels) until its
    shorter side is at least ``min_side``, over a legend of the colour map from low to high
    attention."""
    from matplotlib import colormaps
    from PIL import Image, ImageDraw

    h, w = overlay.shape[:2]
    scale = max(1, -(-min_side // min(h, w)))
    picture = Image.fromarray(overlay).resize((w * scale, h * scale), Image.Resampling.NEAREST)
    width, bar = picture.width, 28
    ramp = (colormaps["jet"](np.linspace(0, 1, width))[:, :3] * 255).astype(np.uint8)
    legend = Image.new("RGB", (width, bar), "white")
    legend.paste(Image.fromarray(np.repeat(ramp[None], 12, axis=0)), (0, 0))
    draw = ImageDraw.Draw(legend)
    draw.text((2, 14), "low", fill="black")
    high = "high Grad-CAM attention"
    draw.text((width - draw.textlength(high) - 2, 14), high, fill="black")
    framed_picture = Image.new("RGB", (width, picture.height + bar), "white")
    framed_picture.paste(picture, (0, 0))
    framed_picture.paste(legend, (0, picture.height))
    return framed_picture


def cam_on_image(cam: np.ndarray, h: int, w: int, resize: str) -> np.ndarray:
    """The heat map (network input coordinates) on the h x w image, undoing the policy: a
    squashed input maps onto the whole image, a padded one's content square onto the whole
    image, a centre-cropped one onto the centre square (zero outside, which the network never
    saw)."""
    from PIL import Image

    def scaled(a: np.ndarray, width: int, height: int) -> np.ndarray:
        img = Image.fromarray((a * 255).astype(np.uint8))
        return np.asarray(img.resize((width, height), Image.Resampling.BILINEAR), np.float32) / 255

    if resize == "squash":
        return scaled(cam, w, h)
    if resize == "pad":
        side = max(h, w)
        square = scaled(cam, side, side)
        top, left = (side - h) // 2, (side - w) // 2
        return np.ascontiguousarray(square[top : top + h, left : left + w])
    side = min(h, w)
    full = np.zeros((h, w), np.float32)
    top, left = (h - side) // 2, (w - side) // 2
    full[top : top + side, left : left + side] = scaled(cam, side, side)
    return full


def explain(
    run_dir: str | Path,
    images: Sequence[str | Path],
    region: str,
    out: str | Path,
    checkpoint: str = "best",
    alpha: float = 0.45,
    overwrite: bool = False,
) -> list[dict[str, Any]]:
    """Write ``<out>/<image stem>_<region>_gradcam.png`` per image; returns what was written.

    Existing overlays are refused (before any work) unless ``overwrite``."""
    import matplotlib

    matplotlib.use("Agg")

    from skincls.data.augment import build_transform
    from skincls.data.images import ImageReadError, read_image
    from skincls.run.load import load_run

    model, _, _, specs, meta = load_run(Path(run_dir), checkpoint)
    names = [s.name for s in specs]
    if region not in names:
        raise SkinclsError(f"--region {region}: not a region of this run ({', '.join(names)})")
    spec = next(s for s in specs if s.name == region)
    classes = spec.classes
    size = int(meta.image_size)
    # the region's evaluation preprocessing, as evaluate and predict apply it
    resize = meta.resize[region]
    mean, std = tuple(meta.mean), tuple(meta.std)
    transform = build_transform(spec.augment.eval, size, mean, std, resize)
    from skincls.core.outputs import check_targets

    out = Path(out)
    targets = [out / f"{Path(p).stem}_{region}_gradcam.png" for p in images]
    check_targets(targets, f"--output {out}", overwrite)
    out.mkdir(parents=True, exist_ok=True)
    written: list[dict[str, Any]] = []
    for path in images:
        path = Path(path)
        try:
            rgb = read_image(str(path))
        except ImageReadError as err:
            written.append({"path": str(path), "error": str(err)})
            continue
        overlay, full, cls = cam_overlay(model, rgb, region, transform, alpha, resize)
        target = out / f"{path.stem}_{region}_gradcam.png"
        # two inputs with one stem would write one file: keep both by numbering the second
        n = 2
        while any(w.get("output") == str(target) for w in written):
            target = out / f"{path.stem}_{region}_gradcam_{n}.png"
            n += 1
        atomic_write(target, framed(overlay).save)
        written.append(
            {
                "path": str(path),
                "output": str(target),
                "class": classes[cls],
                "heat_max": float(full.max()),
                "heat_std": float(full.std()),
            }
        )
    return written
