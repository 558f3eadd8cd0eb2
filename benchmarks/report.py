"""Time to build ``skincls report`` for a run (the demo run by default), with and without
Grad-CAM, and the size of the page.

    skincls demo && python benchmarks/report.py --run skincls-demo/run --repeat 3
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--run", type=Path, default=Path("skincls-demo/run"))
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    out = Path(tempfile.mkdtemp()) / "report.html"
    result = {}
    for label, extra in (("without --explain", []), ("with --explain", ["--explain"])):
        times, size = [], 0
        for _ in range(args.repeat):
            cmd = [sys.executable, "-m", "skincls", "report", str(args.run), "-o", str(out)]
            t0 = time.perf_counter()
            subprocess.run([*cmd, "--overwrite", *extra], check=True, capture_output=True)
            times.append(time.perf_counter() - t0)
            size = out.stat().st_size
        result[label] = {"median_seconds": statistics.median(times), "bytes": size}
    result["machine"] = platform.machine()
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
