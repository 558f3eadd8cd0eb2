"""Generated data with graded visual patterns, for the demo, the tests and the benchmarks.

Grades are drawn, not random: wrinkle grade g has about 2g dark lines, pore grade g about 12g dots,
dryness grade g about 3g cracks, so a small network can learn them and a test can tell whether it did.
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np

PATTERNS = {"forehead_wrinkle": "lines", "cheek_pore": "dots", "lip_dryness": "cracks"}
DEMO_COUNTS = {
    "forehead_wrinkle": [30, 150, 110, 80, 45, 30, 22],
    "cheek_pore": [40, 90, 220, 90, 35, 18],
    "lip_dryness": [70, 140, 80, 35, 16],
}
# The seed project's forehead-wrinkle grade distribution (AI Hub training labels).
FOREHEAD_WRINKLE_COUNTS = [572, 5083, 3393, 2340, 1092, 819, 637]


def draw_pattern(kind: str, grade: int, size: int, rng: random.Random):
    """An RGB PIL image of skin-like texture whose pattern density grows with ``grade``."""
    from PIL import Image, ImageDraw

    base = np.array([200, 160, 140], dtype=np.float32) + rng.uniform(-20, 20)
    noise = np.random.default_rng(rng.randrange(2**31)).normal(0, 6, (size, size, 3))
    arr = np.clip(base + noise, 0, 255).astype(np.uint8)
    img = Image.fromarray(arr, "RGB")
    draw = ImageDraw.Draw(img)
    dark = (110, 70, 60)
    if kind == "lines":
        for _ in range(2 * grade + rng.randint(0, 1)):
            y = rng.uniform(0.1, 0.9) * size
            tilt = rng.uniform(-0.15, 0.15) * size
            draw.line(
                [(0.05 * size, y), (0.95 * size, y + tilt)], fill=dark, width=max(1, size // 40)
            )
    elif kind == "dots":
        for _ in range(12 * grade + rng.randint(0, 4)):
            x, y = rng.uniform(0, size), rng.uniform(0, size)
            r = max(1.0, size / 50)
            draw.ellipse([x - r, y - r, x + r, y + r], fill=dark)
    elif kind == "cracks":
        for _ in range(3 * grade + rng.randint(0, 1)):
            x = rng.uniform(0.05, 0.95) * size
            y = rng.uniform(0.1, 0.5) * size
            draw.line([(x, y), (x + rng.uniform(-4, 4), y + 0.4 * size)], fill=dark, width=1)
    else:
        raise ValueError(f"unknown pattern {kind!r}")
    return img


def make_demo_data(
    root: Path,
    counts: dict[str, Sequence[int]] | None = None,
    size: int = 64,
    seed: int = 0,
    images_per_subject: int = 3,
) -> Path:
    """A CSV manifest (``path,label,region,group``) of graded images; returns the manifest path.

    Subjects hold a few images each (of one region) so that the group-aware split has work to do.
    """
    per_region: dict[str, Sequence[int]] = dict(counts or DEMO_COUNTS)
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    subject = 0
    for region, per_class in per_region.items():
        kind = PATTERNS.get(region, "lines")
        for grade, n in enumerate(per_class):
            for i in range(n):
                if i % images_per_subject == 0:
                    subject += 1
                rel = f"images/{region}/{grade}/{region}_{grade}_{i:05d}.png"
                path = root / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                draw_pattern(kind, grade, size, rng).save(path)
                rows.append([rel, str(grade), region, f"s{subject:05d}"])
    manifest = root / "manifest.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "region", "group"])
        w.writerows(rows)
    return manifest


AIHUB_KEYS = {
    1: ["forehead_wrinkle", "forehead_pigmentation"],
    2: ["glabellus_wrinkle"],
    3: ["l_perocular_wrinkle"],
    4: ["r_perocular_wrinkle"],
    5: ["l_cheek_pore", "l_cheek_pigmentation"],
    6: ["r_cheek_pore", "r_cheek_pigmentation"],
    7: ["lip_dryness"],
    8: ["chin_sagging"],
}
AIHUB_MAX_GRADE = {"lip_dryness": 4}
AIHUB_MAX_GRADE.update(
    {
        k: 5
        for k in (
            "forehead_pigmentation",
            "l_cheek_pore",
            "r_cheek_pore",
            "l_cheek_pigmentation",
            "r_cheek_pigmentation",
        )
    }
)


def make_aihub_tree(
    root: Path,
    n_subjects: int = 4,
    angles: Sequence[str] = ("F",),
    image_size: tuple[int, int] = (320, 400),
    null_bbox_every: int = 0,
    seed: int = 0,
    split: str = "Training",
) -> list[Path]:
    """An AI Hub-shaped tree (Korean folder names, JSON per face part, DSLR device folder).

    Every ``null_bbox_every``-th JSON gets ``bbox: null``; the full-face record carries a null
    ``acne`` key as the real release does. Returns the JSON paths written.
    """
    rng = random.Random(seed)
    label_dir, image_dir = aihub_dirs(root, split)
    w, h = image_size
    written: list[Path] = []
    counter = 0
    for s in range(n_subjects):
        sid = f"{s + 1:04d}"
        for angle in angles:
            stem = f"{sid}_01_{angle}"
            (image_dir / sid).mkdir(parents=True, exist_ok=True)
            img = draw_pattern("dots", rng.randint(0, 5), max(w, h), rng).resize((w, h))
            img.save(image_dir / sid / f"{stem}.jpg", quality=85)
            (label_dir / sid).mkdir(parents=True, exist_ok=True)
            for part in range(9):
                counter += 1
                if part == 0:
                    ann: dict[str, object] = {"acne": None}
                else:
                    ann = {k: rng.randint(0, AIHUB_MAX_GRADE.get(k, 6)) for k in AIHUB_KEYS[part]}
                # face-part boxes: a tenth to a third of the photo wide, about 2:1 to 1:1.2
                bw = rng.randint(max(20, w // 10), max(21, w // 3))
                bh = max(20, int(bw * rng.uniform(0.45, 1.2)))
                x1, y1 = rng.randint(0, w - bw), rng.randint(0, max(0, h - bh))
                bbox = [x1, y1, x1 + bw, y1 + bh]
                if null_bbox_every and counter % null_bbox_every == 0:
                    bbox = None  # type: ignore[assignment]
                written.append(write_aihub_json(label_dir, stem, (w, h), part, bbox, ann))
    return written


def aihub_dirs(root: Path, split: str = "Training") -> tuple[Path, Path]:
    """The label and image folders of an AI Hub release's digital-camera part (Korean names)."""
    lab, src = ("TL", "TS") if split == "Training" else ("VL", "VS")
    return (
        root / split / "02.라벨링데이터" / lab / "1. 디지털카메라",
        root / split / "01.원천데이터" / src / "1. 디지털카메라",
    )


def write_aihub_json(
    label_dir: Path,
    stem: str,
    size: tuple[int, int],
    part: int,
    bbox: list[int] | None,
    annotations: dict[str, object],
) -> Path:
    """One face part's label file as the AI Hub release writes it (``<stem>_<part>.json`` in
    the subject's folder; the subject id is the stem's first field)."""
    sid = stem.split("_")[0]
    number = int(sid) if sid.isdigit() else 0
    doc = {
        "info": {
            "filename": f"{stem}.jpg",
            "id": sid,
            "gender": "FM"[number % 2],
            "age": 20 + (number * 7) % 50,
            "skin_type": number % 3,
            "sensitive": number % 2,
        },
        "images": {
            "device": 0,
            "width": size[0],
            "height": size[1],
            "angle": 0,
            "facepart": part,
            "bbox": bbox,
        },
        "annotations": annotations,
        "equipment": {f"{k}_Ra": 1.0 for k in annotations},
    }
    path = label_dir / sid / f"{stem}_{part:02d}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    return path


def make_many_classes(
    root: Path, classes: int = 500, per_class: int = 2, size: int = 16, seed: int = 0
) -> tuple[Path, Path]:
    """One nominal region ``many`` with ``classes`` classes of ``per_class`` noise images each
    (a scale test of memory and time, not of learning): ``root/manifest.csv`` and the folder of
    its region file."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    (root / "img").mkdir(parents=True)
    rows = []
    for k in range(classes):
        for j in range(per_class):
            name = f"img/c{k:04d}_{j}.png"
            pixels = (rng.random((size, size, 3)) * 60 + (k % 190)).astype("uint8")
            Image.fromarray(pixels).save(root / name)
            rows.append([name, f"class{k:04d}", "many", f"s{k}_{j}"])
    with open(root / "manifest.csv", "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([["path", "label", "region", "group"], *rows])
    regions = root / "regions"
    regions.mkdir()
    names = ", ".join(f"class{k:04d}" for k in range(classes))
    (regions / "many.yaml").write_text(
        f"name: many\nclasses: [{names}]\naugment: {{train: [], eval: []}}\n", encoding="utf-8"
    )
    return root / "manifest.csv", regions
