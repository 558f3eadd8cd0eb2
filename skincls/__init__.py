"""skincls: per-region facial skin condition classifiers on imbalanced data.

The plain functions behind the commands, for use from Python (imported on first use, so
``import skincls`` stays fast)::

    import skincls

    config = skincls.build_config({"data": "skincls-demo/data", "output": "runs/py", ...})
    result = skincls.train(config)
    figures = skincls.evaluate(result.run_dir)
"""

from importlib import import_module
from typing import Any

from skincls.core.version import __version__

API = {
    "build_config": "skincls.core.config",
    "TrainConfig": "skincls.core.config",
    "SkinclsError": "skincls.core.errors",
    "analyze": "skincls.data.analyze",
    "load_data": "skincls.data.sources",
    "ReadOptions": "skincls.data.sources",
    "prepare": "skincls.data.prepare",
    "PrepareOptions": "skincls.data.prepare",
    "load_run": "skincls.run.load",
    "evaluate": "skincls.serving.evaluate",
    "EvalOptions": "skincls.serving.evaluate",
    "Selection": "skincls.serving.evaluate",
    "predict": "skincls.serving.predict",
    "export_onnx": "skincls.serving.export",
    "ExportOptions": "skincls.serving.export",
    "build_report": "skincls.serving.report",
    "train": "skincls.training.train",
    "train_from_options": "skincls.training.train",
    "run_sweep": "skincls.training.sweep",
    "StudyOptions": "skincls.training.sweep",
}
"""Public name -> the module that defines it."""

__all__ = ["__version__", *API]


def __getattr__(name: str) -> Any:
    if name in API:
        return getattr(import_module(API[name]), name)
    raise AttributeError(f"module 'skincls' has no attribute {name!r}")
