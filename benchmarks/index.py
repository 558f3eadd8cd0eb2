"""Indexing an AI Hub tree of 100,000 label files, and ``prepare`` crop throughput.

    python benchmarks/index.py --subjects 1000 --angles 7 --out /tmp/skincls-aihub
    (1000 subjects x 7 angles x 9 face parts = 63,000 files; 1588 subjects = 100,044)

First run: cold (no index cache). Second run: from the index cache (only stats the files).
Crop throughput is measured on DSLR-sized photos (2976x3968) with JPEG draft decoding.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--subjects", type=int, default=1588)
    p.add_argument("--angles", type=int, default=7)
    p.add_argument("--out", type=Path, default=Path("/tmp/skincls-aihub-bench"))
    p.add_argument("--workers", type=int, default=2)
    p.add_argument(
        "--photos", type=int, default=24, help="DSLR-sized photos for the crop benchmark"
    )
    args = p.parse_args()
    from skincls.data.aihub import index_records
    from skincls.data.prepare import PrepareOptions, prepare
    from skincls.data.regions import discover_regions
    from skincls.data.sources import load_data
    from skincls.data.synthetic import make_aihub_tree

    angles = ["F", "Ft", "Fb", "L15", "L30", "R15", "R30"][: args.angles]
    root = args.out / "tree"
    os.environ["SKINCLS_CACHE_DIR"] = str(args.out / "cache")
    if not root.exists():
        t0 = time.perf_counter()
        make_aihub_tree(root, n_subjects=args.subjects, angles=angles, image_size=(64, 80))
        print(f"generated in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    shutil.rmtree(args.out / "cache", ignore_errors=True)
    reg = discover_regions()
    t0 = time.perf_counter()
    records, _, _ = index_records(root, workers=args.workers)
    cold_index = time.perf_counter() - t0
    t0 = time.perf_counter()
    records2, _, _ = index_records(root, workers=args.workers)
    warm_index = time.perf_counter() - t0
    t0 = time.perf_counter()
    ds = load_data(root, reg)
    warm_load = time.perf_counter() - t0
    assert records == records2

    photos = args.out / "photos"
    shutil.rmtree(photos, ignore_errors=True)
    make_aihub_tree(photos, n_subjects=args.photos, image_size=(2976, 3968), seed=1)
    result = {}
    for label, max_side, workers in (
        ("1 process", 512, 1),
        (f"{args.workers} processes", 512, args.workers),
    ):
        cache = args.out / f"crops-{workers}"
        shutil.rmtree(cache, ignore_errors=True)
        t0 = time.perf_counter()
        r = prepare(
            photos, cache, PrepareOptions(max_side=max_side, workers=workers, progress=False)
        )
        elapsed = time.perf_counter() - t0
        result[label] = {
            "crops": r["written"],
            "seconds": elapsed,
            "crops_per_second": r["written"] / elapsed,
            "crops_per_second_per_core": r["written"] / elapsed / workers,
        }
    t0 = time.perf_counter()
    again = prepare(
        photos,
        args.out / f"crops-{args.workers}",
        PrepareOptions(max_side=512, workers=args.workers, progress=False),
    )
    resume_seconds = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "label_files": len(records),
                "samples": len(ds.samples),
                "index_cold_seconds": cold_index,
                "index_from_cache_seconds": warm_index,
                "load_data_from_cache_seconds": warm_load,
                "prepare": result,
                "prepare_rerun_seconds": resume_seconds,
                "prepare_rerun_reused": again["reused"],
                "cpu_count": os.cpu_count(),
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
