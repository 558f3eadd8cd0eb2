"""Memory and time of a region with hundreds of classes: ``skincls train`` (one short epoch,
calibration and the report included), ``evaluate`` and ``report``, each in a fresh process;
wall seconds and peak resident memory per command.

    python benchmarks/many_classes.py --classes 500
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from provenance import provenance


def measure(argv: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (GB) of one command in its own process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {proc.stderr.read().decode()[-2000:]}")
    return seconds, usage.ru_maxrss / 2**20


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--classes", type=int, default=500)
    p.add_argument("--per-class", type=int, default=4)
    args = p.parse_args()
    from skincls.data.synthetic import make_many_classes

    root = Path(tempfile.mkdtemp())
    manifest, regions = make_many_classes(root / "data", args.classes, args.per_class, 24)
    run = root / "run"
    skincls = [sys.executable, "-m", "skincls"]
    train = [
        *skincls, "train", str(manifest), "--regions-dir", str(regions),
        "--backbone", "test_resnet", "--no-pretrained", "--image-size", "32", "--workers", "0",
        "--epochs", "1", "--batch-size", "64", "--wandb", "disabled", "--val-fraction", "0.25",
        "--test-fraction", "0.25", "-o", str(run),
    ]  # fmt: skip
    rows = {
        "train (1 epoch, calibration, report)": measure(train),
        "evaluate": measure([*skincls, "evaluate", str(run)]),
        "report": measure([*skincls, "report", str(run), "-o", str(root / "r.html")]),
    }
    size = (root / "r.html").stat().st_size / 1e6
    print(provenance(__file__, sys.argv[1:]))
    print(f"{args.classes} classes x {args.per_class} images; report {size:.2f} MB\n")
    print("| command | seconds | peak memory |\n|---|---|---|")
    for name, (seconds, gb) in rows.items():
        print(f"| {name} | {seconds:.1f} | {gb:.2f} GB |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
