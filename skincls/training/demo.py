"""``skincls demo``: generate graded data, then analyze, train, evaluate and export it on CPU."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from skincls.core.errors import SkinclsError


def run_demo(
    output: Path,
    epochs: int = 12,
    backbone: str = "resnet10t",
    image_size: int = 64,
    workers: int = 2,
    seed: int = 0,
    overwrite: bool = False,
    console: Any = None,
) -> dict[str, Any]:
    """Each step prints what it does; returns the run directory and the test metrics."""
    from skincls.core.config import build_config
    from skincls.core.console import make_console, print_eval
    from skincls.data.analyze import analyze, render
    from skincls.data.synthetic import make_demo_data
    from skincls.serving.evaluate import evaluate
    from skincls.training.train import train

    console = console or make_console()
    output = Path(output)
    if output.exists() and any(output.iterdir()):
        if not overwrite:
            raise SkinclsError(f"--output {output}: exists; pass --overwrite to replace the demo")
        if not (output / "data" / "manifest.csv").is_file():
            raise SkinclsError(f"--output {output}: not a skincls demo directory; not replacing it")
        shutil.rmtree(output)
    console.rule("1/5 generate a graded, imbalanced data set")
    manifest = make_demo_data(output / "data", seed=seed)
    console.print(f"wrote {manifest}: wrinkles drawn as lines, pores as dots, dryness as cracks")
    console.rule("2/5 skincls analyze")
    render(analyze(manifest.parent, beta=0.999), console)
    console.rule("3/5 skincls train")
    config = build_config(
        {
            "data": str(manifest.parent),
            "output": str(output / "run"),
            "backbone": backbone,
            "pretrained": "none",
            "image_size": image_size,
            "batch_size": 32,
            "epochs": epochs,
            "lr": 2e-3,
            "warmup_epochs": 1,
            "workers": workers,
            "seed": seed,
            "wandb": "disabled",
        }
    )
    result = train(config, console=console, show_test=False)
    console.rule("4/5 skincls evaluate (test split, served checkpoint)")
    metrics = evaluate(result.run_dir, workers=0)
    print_eval(console, "test", metrics)
    from skincls.serving.export import export_onnx

    console.rule("5/5 skincls export (ONNX, verified with onnxruntime)")
    report = export_onnx(result.run_dir, output / "model.onnx")
    onnx_path = report["path"]
    console.print(
        f"wrote {onnx_path} ({report['size_bytes'] / 1e6:.1f} MB); max |onnxruntime - torch| "
        f"= {report['max_abs_diff']:.2e}"
    )
    chance = sum(1 / len(m["per_class"]) for m in metrics["regions"].values()) / len(
        metrics["regions"]
    )
    import shlex

    run = shlex.quote(str(result.run_dir))
    data = shlex.quote(str(manifest.parent))
    console.print(
        f"\nbalanced accuracy on test: {metrics['mean']['balanced_accuracy']:.3f} "
        f"(chance {chance:.3f}); run directory: {result.run_dir}\n\n"
        "try next:\n"
        f"  skincls predict {shlex.quote(str(onnx_path))} "
        f"{shlex.quote(str(manifest.parent / 'images'))}   # grades of images, from the ONNX file\n"
        f"  skincls evaluate {run} --json        # every figure, per class, as JSON\n"
        f"  skincls train {data} --epochs 20 -o runs/longer   # a longer run on the same data\n"
        "  skincls train YOUR_DATA --no-pretrained --backbone resnet10t   # your own data"
    )
    return {"run_dir": result.run_dir, "metrics": metrics, "onnx": onnx_path, "chance": chance}
