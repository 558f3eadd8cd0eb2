"""Resize policy on wide boxes: does keeping the whole box (squash, pad) beat a centre crop?

Issue 19, item 5: the resize ablation on data whose crops have the AI Hub aspects, so the choice
is not made on square dermoscopy images alone. Two generated data sets, one split each (split
seed 0) shared by every arm and seed:

- ``wide_wrinkles``: forehead-wrinkle crops 2:1 wide (128 x 64) with the seed project's AI Hub
  grade distribution (scaled by --scale); grade g has about 2g short wrinkles anywhere across the
  width, so a centre crop sees only the middle half of them (temple wrinkles are at the sides);
- ``aihub_faces``: an AI Hub-shaped release (Korean folders, one JSON per face part, boxes on
  whole-face photos) whose boxes have the real parts' aspects (forehead and lips about 2:1,
  eyes 1.75:1, cheeks 1:1.1) and whose content is drawn for each part's grade; read through
  the AI Hub source, four built-in regions (forehead_wrinkle, perocular_wrinkle, lip_dryness,
  cheek_pore) trained as one multi-head model.

Arms: ``--resize crop`` (shorter side, centre square), ``squash`` (whole box, aspect not kept),
``pad`` (whole box, letterboxed); everything else is the default recipe.

    python benchmarks/resize.py --out /tmp/rz2 --seeds 0 1 2   # 48 px, 6 epochs, ~15 minutes
"""

from __future__ import annotations

import argparse
import csv
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from harness import Results, budget_line, budget_parser, run_cells, run_values, write_table

HERE = Path(__file__).resolve().parent
REGIONS = HERE.parent / "regions"
ARMS = ("crop", "squash", "pad")
METRICS = ("balanced_accuracy", "macro_f1", "accuracy", "within1", "grade_mae")
FACE_REGIONS = ("forehead_wrinkle", "perocular_wrinkle", "lip_dryness", "cheek_pore")
# part: (kind, centre x, centre y, width, width / height) as fractions of the photo
FACE_LAYOUT = {
    1: ("wrinkles", 0.50, 0.17, 0.62, 2.0),
    2: ("wrinkles", 0.50, 0.33, 0.16, 1.0),
    3: ("wrinkles", 0.27, 0.40, 0.24, 1.75),
    4: ("wrinkles", 0.73, 0.40, 0.24, 1.75),
    5: ("dots", 0.28, 0.58, 0.22, 1 / 1.1),
    6: ("dots", 0.72, 0.58, 0.22, 1 / 1.1),
    7: ("cracks", 0.50, 0.77, 0.34, 2.0),
    8: ("wrinkles", 0.50, 0.90, 0.38, 1.6),
}
GRADE_WEIGHTS = (3, 10, 8, 5, 3, 2, 1)  # AI Hub-like imbalance, cut to each item's grades


def draw_box(img, box: tuple[int, int, int, int], kind: str, grade: int, rng) -> None:
    """Grade ``grade`` of ``kind`` drawn over the whole ``box`` of ``img``: short wrinkles,
    pores or lip cracks whose number grows with the grade, anywhere across its width."""
    from PIL import ImageDraw

    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    draw = ImageDraw.Draw(img)
    dark = (110, 70, 60)
    if kind == "wrinkles":
        for _ in range(2 * grade + rng.randint(0, 1)):
            length = rng.uniform(0.15, 0.3) * w
            x, y = x1 + rng.uniform(0, w - length), y1 + rng.uniform(0.1, 0.9) * h
            draw.line([(x, y), (x + length, y + rng.uniform(-0.1, 0.1) * h)], fill=dark, width=2)
    elif kind == "dots":
        for _ in range(10 * grade + rng.randint(0, 3)):
            x, y, r = x1 + rng.uniform(0, w), y1 + rng.uniform(0, h), max(1.0, w / 60)
            draw.ellipse([x - r, y - r, x + r, y + r], fill=dark)
    else:
        for _ in range(3 * grade + rng.randint(0, 1)):
            x, y = x1 + rng.uniform(0.02, 0.98) * w, y1 + rng.uniform(0.1, 0.5) * h
            draw.line([(x, y), (x + rng.uniform(-3, 3), y + 0.4 * h)], fill=dark, width=1)


def skin(w: int, h: int, rng):
    from PIL import Image

    base = np.array([200, 160, 140], dtype=np.float32) + rng.uniform(-20, 20)
    noise = np.random.default_rng(rng.randrange(2**31)).normal(0, 6, (h, w, 3))
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8), "RGB")


def make_wide_wrinkles(out: Path, scale: float) -> Path:
    """``wide_wrinkles/manifest.csv``: 2:1 forehead crops, two per subject."""
    from skincls.data.synthetic import FOREHEAD_WRINKLE_COUNTS

    root = out / "wide_wrinkles"
    manifest = root / "manifest.csv"
    if manifest.is_file():
        return manifest
    rng, rows = random.Random(11), []
    for grade, n in enumerate(FOREHEAD_WRINKLE_COUNTS):
        for i in range(max(4, round(n * scale))):
            img = skin(128, 64, rng)
            draw_box(img, (0, 0, 128, 64), "wrinkles", grade, rng)
            rel = f"images/{grade}/{grade}_{i:05d}.png"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            img.save(root / rel)
            rows.append([rel, str(grade), "rz_forehead_wrinkle", f"g{grade}s{i // 2}"])
    with open(manifest, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([["path", "label", "region", "group"], *rows])
    return manifest


def make_aihub_faces(out: Path, subjects: int, size: tuple[int, int] = (400, 500)) -> Path:
    """An AI Hub-shaped release of ``subjects`` frontal photos, one JSON per face part."""
    from skincls.data.synthetic import AIHUB_KEYS, AIHUB_MAX_GRADE, aihub_dirs, write_aihub_json

    root = out / "aihub_faces"
    if (root / "done").is_file():
        return root
    label_dir, image_dir = aihub_dirs(root)
    rng, (w, h) = random.Random(12), size
    for s in range(subjects):
        sid, img = f"{s + 1:04d}", skin(w, h, rng)
        stem = f"{sid}_01_F"
        write_aihub_json(label_dir, stem, size, 0, [0, 0, w, h], {"acne": None})
        for part, (kind, cx, cy, fw, aspect) in FACE_LAYOUT.items():
            bw = round(fw * w * rng.uniform(0.9, 1.1))
            bh = round(bw / aspect * rng.uniform(0.9, 1.1))
            x1 = min(max(0, round(cx * w - bw / 2)), w - bw)
            y1 = min(max(0, round(cy * h - bh / 2)), h - bh)
            box = (x1, y1, x1 + bw, y1 + bh)
            keys = AIHUB_KEYS[part]
            top = AIHUB_MAX_GRADE.get(keys[0], 6)
            grade = rng.choices(range(top + 1), GRADE_WEIGHTS[: top + 1])[0]
            draw_box(img, box, kind, grade, rng)
            ann = {k: grade if i == 0 else rng.randint(0, 5) for i, k in enumerate(keys)}
            write_aihub_json(label_dir, stem, size, part, list(box), ann)
        (image_dir / sid).mkdir(parents=True, exist_ok=True)
        img.save(image_dir / sid / f"{stem}.jpg", quality=92)
    (root / "done").write_text("")
    return root


def region_files(out: Path) -> Path:
    """The built-in region files without their ``resize:`` line (the arm's --resize applies),
    renamed ``rz_<name>`` (a region name is defined once)."""
    folder = out / "regions"
    folder.mkdir(parents=True, exist_ok=True)
    for name in FACE_REGIONS:
        text = (REGIONS / f"{name}.yaml").read_text(encoding="utf-8")
        kept = [
            f"name: rz_{name}" if line.startswith("name:") else line
            for line in text.splitlines()
            if not line.startswith("resize:")
        ]
        (folder / f"rz_{name}.yaml").write_text("\n".join(kept) + "\n", encoding="utf-8")
    return folder


def run_arm(dataset: str, arm: str, seed: int, data: Path, args) -> list[dict]:
    from skincls.core.config import build_config
    from skincls.training.train import train

    regions = [
        f"rz_{n}" for n in (FACE_REGIONS[:1] if dataset == "wide_wrinkles" else FACE_REGIONS)
    ]
    values = run_values(
        args,
        args.out / "runs" / f"{dataset}-{arm}-s{seed}",
        seed,
        data=str(data),
        regions_dir=[str(region_files(args.out))],
        region=regions,
        batch_size=32,
        lr=2e-3,
        report=False,
        resize=arm,
        **dict(args.set),
    )
    t0 = time.perf_counter()
    result = train(build_config(values))
    seconds = time.perf_counter() - t0
    return [
        {"dataset": dataset, "region": name, "arm": arm, "seed": seed, "seconds": seconds}
        | {k: m[k] for k in METRICS}
        for name, m in result.test["regions"].items()
    ]


def train_option(text: str) -> tuple[str, object]:
    """``OPTION=VALUE`` as a TrainConfig field name and its YAML value."""
    import yaml

    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"{text!r}: expected OPTION=VALUE")
    return key.strip().replace("-", "_"), yaml.safe_load(value)


def table(rows: list[dict]) -> str:
    names = ["balanced acc.", "macro F1", "accuracy", "within 1", "grade MAE"]
    lines = [
        "| data | region | resize | runs | " + " | ".join(names) + " |",
        "|---|---|---|---|" + "---|" * len(names),
    ]
    for key in dict.fromkeys((r["dataset"], r["region"]) for r in rows):
        for arm in ARMS:
            mine = [r for r in rows if (r["dataset"], r["region"]) == key and r["arm"] == arm]
            if not mine:
                continue
            cells = []
            for k in METRICS:
                scale = 1.0 if k == "grade_mae" else 100.0
                v = [r[k] * scale for r in mine]
                sd = statistics.stdev(v) if len(v) > 1 else 0.0
                digits = 2 if k == "grade_mae" else 1
                cells.append(f"{statistics.mean(v):.{digits}f} ± {sd:.{digits}f}")
            lines.append(
                f"| {key[0]} | {key[1]} | {arm} | {len(mine)} | " + " | ".join(cells) + " |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = budget_parser(__doc__.split("\n")[0], Path("/tmp/skincls-resize"), image_size=48)
    p.set_defaults(batch_size=32)
    p.add_argument("--datasets", nargs="+", default=["wide_wrinkles", "aihub_faces"])
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    p.add_argument("--scale", type=float, default=0.06, help="wide_wrinkles: share of AI Hub's")
    p.add_argument("--subjects", type=int, default=250, help="aihub_faces: photos")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        type=train_option,
        metavar="OPTION=VALUE",
        help="a skincls train option for every run (e.g. sampler=class_balanced); give each "
        "set of options its own --out",
    )
    args = p.parse_args(argv)
    results = Results(args.out, ("dataset", "arm", "seed"), args)
    for dataset in [] if args.report else args.datasets:
        if dataset == "wide_wrinkles":
            data = make_wide_wrinkles(args.out, args.scale)
        else:
            data = make_aihub_faces(args.out, args.subjects)
        cells = [(dataset, a, s) for s in args.seeds for a in args.arms]
        run_cells(results, cells, lambda d, arm, seed, data=data: run_arm(d, arm, seed, data, args))
    rows = [r for r in results.rows if r["arm"] in args.arms and r["seed"] in args.seeds]
    extra = (
        f"wide_wrinkles scale {args.scale}, aihub_faces {args.subjects} photos; options "
        f"{dict(args.set) or 'the defaults'}"
    )
    write_table(args.out, __file__, argv, budget_line(args, extra), table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
