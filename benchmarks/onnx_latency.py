"""ONNX export of ResNet-50 at 224: onnxruntime vs PyTorch eager latency, fp32 vs int8.

A real (briefly trained) skincls run on HAM10000 images is exported with ``skincls export`` in
fp32 and int8; latencies are measured alternately in one process, argmax agreement of int8 with
PyTorch is measured on HAM10000 images through the real preprocessing.

    python benchmarks/onnx_latency.py --out /tmp/skincls-onnx
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
HAM = HERE.parent.parent / "shared" / "data" / "ham10000"


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--out", type=Path, default=Path("/tmp/skincls-onnx"))
    p.add_argument("--backbone", default="resnet50")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--repeat", type=int, default=10)
    p.add_argument("--agreement-images", type=int, default=256)
    args = p.parse_args()
    import numpy as np
    import onnxruntime as ort
    import torch

    from skincls.core.config import build_config
    from skincls.data.augment import build_transform
    from skincls.data.images import read_image
    from skincls.run.load import load_run
    from skincls.serving.export import ExportOptions, export_onnx
    from skincls.training.train import train

    args.out.mkdir(parents=True, exist_ok=True)
    with open(HAM / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    subset = args.out / "subset.csv"
    with open(subset, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "lesion_id"])
        for r in rows[:: max(1, len(rows) // 400)]:
            w.writerow([str(HAM / r["path"]), r["label"], r["lesion_id"]])
    regions = args.out / "regions"
    regions.mkdir(exist_ok=True)
    (regions / "lesion.yaml").write_text(
        "name: lesion\nclasses: [akiec, bcc, bkl, df, mel, nv, vasc]\n"
    )
    run = args.out / "run"
    if not (run / "best").is_dir():
        train(
            build_config(
                dict(
                    data=str(subset),
                    regions_dir=[str(regions)],
                    region=["lesion"],
                    group_column="lesion_id",
                    output=str(run),
                    overwrite=True,
                    backbone=args.backbone,
                    pretrained="none",
                    image_size=args.image_size,
                    batch_size=16,
                    epochs=1,
                    workers=2,
                    wandb="disabled",
                    quiet=True,
                    warmup_epochs=0,
                    max_steps_per_epoch=8,
                )
            )
        )
    reports = {}
    for q in ("none", "int8"):
        t0 = time.perf_counter()
        options = ExportOptions(quantize=q, data=subset, overwrite=True)
        reports[q] = export_onnx(run, args.out / f"model-{q}.onnx", options)
        reports[q]["export_seconds"] = time.perf_counter() - t0

    model, *_, meta = load_run(run)
    threads = torch.get_num_threads()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sessions = {
        q: ort.InferenceSession(
            str(args.out / f"model-{q}.onnx"), opts, providers=["CPUExecutionProvider"]
        )
        for q in reports
    }
    latency: dict[str, dict[str, float]] = {}
    for batch in (1, 32):
        x = (
            np.random.default_rng(0)
            .standard_normal((batch, 3, args.image_size, args.image_size))
            .astype(np.float32)
        )
        xt = torch.from_numpy(x)
        runs = {
            "torch_eager": lambda xt=xt: model(xt),
            "onnxruntime_fp32": lambda x=x: sessions["none"].run(None, {"image": x}),
            "onnxruntime_int8": lambda x=x: sessions["int8"].run(None, {"image": x}),
        }
        samples = {k: [] for k in runs}
        with torch.inference_mode():
            for f in runs.values():
                f()
            for _ in range(args.repeat if batch == 1 else max(3, args.repeat // 3)):
                for k, f in runs.items():
                    t0 = time.perf_counter()
                    f()
                    samples[k].append(time.perf_counter() - t0)
        latency[f"batch_{batch}"] = {k: statistics.median(v) * 1000 for k, v in samples.items()}
        latency[f"batch_{batch}"]["ratio_ort_fp32_over_torch"] = (
            latency[f"batch_{batch}"]["onnxruntime_fp32"] / latency[f"batch_{batch}"]["torch_eager"]
        )

    transform = build_transform([], meta.image_size, tuple(meta.mean), tuple(meta.std))
    agree = {"none": 0, "int8": 0}
    n = 0
    for r in rows[1 :: max(1, len(rows) // args.agreement_images)][: args.agreement_images]:
        img = transform(image=read_image(str(HAM / r["path"])))["image"].transpose(2, 0, 1)[None]
        with torch.inference_mode():
            ref = model(torch.from_numpy(img.copy()))[0].numpy().argmax(1)
        for q, s in sessions.items():
            agree[q] += int(
                (s.run(None, {"image": img.astype(np.float32)})[0].argmax(1) == ref).sum()
            )
        n += 1
    print(
        json.dumps(
            {
                "backbone": args.backbone,
                "image_size": args.image_size,
                "threads": threads,
                "latency_ms_median": latency,
                "size_mb": {q: reports[q]["size_bytes"] / 1e6 for q in reports},
                "export_seconds": {q: reports[q]["export_seconds"] for q in reports},
                "max_abs_diff_fp32": reports["none"]["max_abs_diff"],
                "argmax_agreement_ham10000": {q: agree[q] / n for q in agree},
                "ham10000_images": n,
                "onnxruntime": ort.__version__,
                "torch": torch.__version__,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
