"""A region with hundreds of classes trains, evaluates and gets a report in bounded memory and
time (issue 35 item 9): 500 classes once took 525 s and 15.8 GB (a confusion plot of 250,000
written cells on a 450-inch canvas); now one heat map, thinned tick labels and summaries."""

from __future__ import annotations

import base64
import io
import re
import resource
import subprocess
import sys

from PIL import Image


def test_five_hundred_classes_train_evaluate_and_report_in_bounded_memory(tmp_path):
    from skincls.data.synthetic import make_many_classes

    manifest, regions = make_many_classes(tmp_path / "data", classes=500)
    run = tmp_path / "run"
    skincls = [sys.executable, "-m", "skincls"]
    train = [
        *skincls, "train", str(manifest), "--regions-dir", str(regions),
        "--backbone", "test_resnet", "--no-pretrained", "--image-size", "16", "--workers", "0",
        "--epochs", "1", "--batch-size", "64", "--max-steps-per-epoch", "3", "--wandb",
        "disabled", "--val-fraction", "0.25", "--test-fraction", "0.25", "-o", str(run),
    ]  # fmt: skip
    done = subprocess.run(train, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    said = " ".join(done.stdout.split())
    assert re.search(r"train counts \[(\d, ){6}\.\.\. 488 more \.\.\., (\d, ){5}\d\]", said), said
    evaluate = subprocess.run(
        [*skincls, "evaluate", str(run)], capture_output=True, text=True, timeout=600
    )
    assert evaluate.returncode == 0, evaluate.stderr[-3000:]
    assert "confusion matrix: 500 x 500, too large to print" in evaluate.stdout
    assert len(evaluate.stdout.splitlines()) < 700  # the per-class table, not a 500-column matrix
    peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    assert peak_gb < 4.0, f"peak memory {peak_gb:.1f} GB"
    report = run / "report.html"
    assert report.stat().st_size < 2_000_000
    html = report.read_text()
    assert "confusion" in html.lower()
    images = [
        Image.open(io.BytesIO(base64.b64decode(part.split('"')[0])))
        for part in html.split("data:image/png;base64,")[1:]
    ]
    assert images and max(i.width for i in images) <= 16 * 80 + 200
    assert max(i.height for i in images) <= 10 * 80
