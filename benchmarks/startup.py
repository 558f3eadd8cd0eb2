"""Start-up cost of the light commands, and proof that they do not import heavy libraries.

python benchmarks/startup.py [--repeat 10]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEAVY = ("torch", "timm", "albumentations", "wandb", "onnxruntime", "cv2")
PROBE = """
import sys
from typer.testing import CliRunner
from skincls.cli.root import app
r = CliRunner().invoke(app, sys.argv[1:])
assert r.exit_code == 0, r.output
print(",".join(m for m in {heavy!r} if m in sys.modules))
"""


def timed(cmd: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--repeat", type=int, default=10)
    args = p.parse_args()
    exe = str(Path(sys.executable).with_name("skincls"))
    with tempfile.TemporaryDirectory() as tmp:
        from skincls.data.synthetic import make_demo_data

        data = make_demo_data(Path(tmp) / "d", counts={"cheek_pore": [5, 5]}, size=16).parent
        rows = {}
        for name, cmd in {
            "skincls --help": [exe, "--help"],
            "skincls regions list": [exe, "regions", "list"],
            "skincls analyze DATA": [exe, "analyze", str(data)],
            "python -c pass": [sys.executable, "-c", "pass"],
            "python -c 'import torch'": [sys.executable, "-c", "import torch"],
        }.items():
            rows[name] = timed(cmd, args.repeat)
        imported = {}
        for name, argv in {
            "--help": ["--help"],
            "regions list": ["regions", "list"],
            "analyze": ["analyze", str(data)],
        }.items():
            out = subprocess.run(
                [sys.executable, "-c", PROBE.format(heavy=HEAVY), *argv],
                check=True,
                capture_output=True,
                text=True,
            ).stdout.strip()
            imported[name] = out.splitlines()[-1] if out else ""
    print(json.dumps({"median_seconds": rows, "heavy_modules_imported": imported}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
