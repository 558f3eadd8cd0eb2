"""``skincls export``: one self-contained ONNX file per run, checked against PyTorch.

The exporter is chosen explicitly (torch.export based by default, the TorchScript one on request)
and weights are always embedded, never written to a side ``.data`` file. Outputs are named
``<region>_logits`` (raw), ``<region>_probs`` (the head's probabilities at its calibrated
temperature, :mod:`skincls.model.heads`) and ``<region>_decision`` (int64: the decided class, the
head's rule and prior correction baked into the graph); the preprocessing, labels, temperatures
and rules travel in ``metadata_props`` so that the ``.onnx`` file alone is enough to predict.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skincls.core.errors import SkinclsError
from skincls.core.fileio import os_error_reason, remove_quietly, write_error
from skincls.core.outputs import check_new_file
from skincls.run.artifacts import ONNX
from skincls.serving.onnx_meta import (
    check_reproducible,
    metadata_props,
    save_with_metadata,
    with_ensemble,
)
from skincls.serving.quantize import quantize as quantize_model


def output_names(model, regions: Sequence[str]) -> list[str]:
    """The graph's outputs, in order: per region ``_logits``, ``_probs`` and ``_decision``."""
    return [f"{r}_{k}" for r in regions for k in ("logits", "probs", "decision")]


class _Exportable:
    """Wraps MultiHeadNet so that the graph returns what :func:`output_names` lists."""

    @staticmethod
    def build(model, regions: Sequence[str]):
        import torch

        if hasattr(model, "exportable"):  # a cv directory's fold ensemble
            return model.exportable(regions)

        class Wrapper(torch.nn.Module):
            def __init__(self, net, keep):
                super().__init__()
                self.net = net
                self.keep = [net.region_names.index(r) for r in keep]

            def forward(self, image):
                logits = self.net(image)
                probs, decided = self.net.predict(logits)
                out = []
                for i in self.keep:
                    out += [logits[i], probs[i], decided[i]]
                return tuple(out)

        return Wrapper(model, regions).eval()


@dataclass(frozen=True)
class ExportOptions:
    """What :func:`export_onnx` writes: the regions (default all), opset, checkpoint,
    quantization (``none``, ``fp16``, ``int8``) and exporter; ``data`` for real images to verify
    (and calibrate int8) with; how many random inputs to verify with; whether an existing file
    is replaced; and the decision baked into ``_decision`` (``rule``, ``target_prior``:
    :func:`skincls.model.calibration.apply_serving`)."""

    regions: Sequence[str] = ()
    opset: int = 18
    checkpoint: str = "best"
    quantize: str = "none"
    exporter: str = "dynamo"
    data: str | Path | None = None
    verify_samples: int = 8
    overwrite: bool = False
    rule: str = "selected"
    target_prior: Sequence[str] = ()


def export_onnx(
    run_dir: str | Path, output: str | Path | None = None, options: ExportOptions | None = None
) -> dict[str, Any]:
    """Export, embed metadata, run ``onnx.checker``, quantize if asked, and compare onnxruntime
    with PyTorch; a model that fails the comparison is removed (default output
    ``RUN/model.onnx``).

    Fails when max |logit difference| exceeds 1e-4 (fp32) or the agreement of the decided
    classes (``_decision``) drops below 99% (int8, fp16). Real images through the real preprocessing join the random ones: from ``data``,
    else from the run's own data (when it is still there; ``real_images`` says how many).
    """
    import numpy as np

    from skincls.run.load import load_run
    from skincls.serving.ensemble import ensemble_note, is_cv_dir, load_ensemble

    o = options or ExportOptions()
    quantize, exporter, opset, checkpoint = o.quantize, o.exporter, o.opset, o.checkpoint
    run_dir = Path(run_dir)
    ensemble = is_cv_dir(run_dir)
    load = load_ensemble if ensemble else load_run
    model, config, registry, specs, meta = load(run_dir, checkpoint, o.rule, o.target_prior)
    names = [s.name for s in specs]
    keep = list(o.regions) or names
    output = _check_request(run_dir, output, keep, names, quantize, exporter, o.overwrite)
    check_reproducible([s for s in specs if s.name in keep])
    wrapper = _Exportable.build(model, keep)
    kept = [s for s in specs if s.name in keep]
    props = metadata_props(run_dir, checkpoint, quantize, meta, kept, model)
    if ensemble:
        props = with_ensemble(props, ensemble_note(run_dir, model.folds))
    size = int(meta.image_size)
    outputs = output_names(model, keep)
    fp32 = output if quantize == "none" else output.with_name(output.stem + ".fp32.tmp.onnx")
    export_graph(wrapper, fp32, size, outputs, opset, exporter, props)
    real_images = _real_images(o.data, config.data, registry, names, meta)
    method = "fp32"
    if quantize != "none":
        method = _quantize_file(fp32, output, quantize, real_images, props)
    inputs = [np.random.default_rng(0).standard_normal((o.verify_samples, 3, size, size))]
    real = 0
    if real_images is not None:
        held_out = real_images[1::2] if quantize == "int8" and len(real_images) > 1 else real_images
        inputs.append(held_out)  # int8: judged on images not used for calibration
        real = len(held_out)
    try:
        report = verify(wrapper, output, [x.astype(np.float32) for x in inputs], quantize, real)
    except SkinclsError:
        output.unlink()  # a model that failed its check must not be left to be shipped
        raise
    report.update(
        {
            "path": str(output),
            "size_bytes": output.stat().st_size,
            "outputs": outputs,
            "opset": opset,
            "exporter": exporter,
            "quantize": quantize,
            "method": method,
            "real_images": real,
        }
    )
    return report


def _check_request(run_dir, output, keep, names, quantize, exporter, overwrite) -> Path:
    for r in keep:
        if r not in names:
            raise SkinclsError(f"--region {r}: not a region of this run ({', '.join(names)})")
    output = Path(output) if output else run_dir / ONNX
    if output.suffix != ".onnx":
        raise SkinclsError(f"--output {output}: expected a file name ending in .onnx")
    if quantize not in ("none", "int8", "fp16"):
        raise SkinclsError(f"--quantize: expected none, int8 or fp16, got {quantize!r}")
    if exporter not in ("dynamo", "torchscript"):
        raise SkinclsError(f"--exporter: expected dynamo or torchscript, got {exporter!r}")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise SkinclsError(
            f"--output {output}: cannot make its folder: {os_error_reason(err)}"
        ) from None
    return check_new_file(output, "--output", overwrite)


def export_graph(wrapper, path: Path, size: int, output_names, opset: int, exporter: str, props):
    """Trace ``wrapper`` with the chosen exporter into the single file ``path`` (dynamic batch)."""
    import warnings

    import onnx
    import torch

    tmp = path.with_name(f".{path.name}.export{os.getpid()}.onnx")
    common: dict[str, Any] = dict(
        input_names=["image"], output_names=output_names, opset_version=opset
    )
    if exporter == "dynamo":
        batch = torch.export.Dim("batch", min=1, max=4096)
        extra: dict[str, Any] = dict(
            dynamo=True, external_data=False, dynamic_shapes={"image": {0: batch}}, verbose=False
        )
    else:
        axes = {"image": {0: "batch"}, **{n: {0: "batch"} for n in output_names}}
        extra = dict(dynamo=False, dynamic_axes=axes)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            example = torch.randn(2, 3, size, size)
            torch.onnx.export(wrapper, (example,), str(tmp), **common, **extra)
        leftovers = [p for p in tmp.parent.glob(tmp.name + "*") if p != tmp]
        if leftovers:
            raise SkinclsError(f"the exporter wrote side files {leftovers}; expected one file")
        save_with_metadata(onnx.load(str(tmp)), path, props)
    except OSError as err:
        raise write_error(path, err) from None
    finally:
        remove_quietly(tmp)


def _real_images(data, run_data, registry, names, meta):
    """Preprocessed real images from ``data``, else from the run's data (None if it is gone)."""
    try:
        return _real_batch(data if data is not None else run_data, registry, names, meta, limit=192)
    except SkinclsError:
        if data is not None:
            raise
        return None  # the run's data is gone: random inputs only (int8: dynamic)


def _quantize_file(fp32: Path, output: Path, mode: str, real_images, props) -> str:
    """Quantize ``fp32`` into ``output`` (int8 calibrated on every other real image) with the
    same metadata; ``fp32`` is removed."""
    import onnx

    qtmp = output.with_name(f".{output.name}.tmp{os.getpid()}.q.onnx")
    try:
        calibration = real_images[::2] if real_images is not None and mode == "int8" else None
        method = quantize_model(fp32, qtmp, mode, calibration)
        save_with_metadata(onnx.load(str(qtmp)), output, props)
        return method
    finally:
        remove_quietly(qtmp, fp32)


def _real_batch(data, registry, names, meta, limit: int):
    import numpy as np

    from skincls.data.augment import build_transform
    from skincls.data.images import ImageReadError, read_image
    from skincls.data.sources import ReadOptions, load_data

    dataset = load_data(data, registry, names, ReadOptions(skip_unknown_regions=True))
    size, mean, std = int(meta.image_size), tuple(meta.mean), tuple(meta.std)
    policies = meta.resize
    transforms = {
        n: build_transform(registry[n].augment.eval, size, mean, std, policies.get(n, "crop"))
        for n in names
    }
    arrays = []
    step = max(1, len(dataset.samples) // limit)
    for s in dataset.samples[::step][:limit]:
        try:
            img = read_image(s.path, s.bbox, s.mirror)
        except ImageReadError:
            continue
        arrays.append(transforms[s.labels[0].region](image=img)["image"].transpose(2, 0, 1))
    return np.stack(arrays).astype(np.float32) if arrays else None


def verify(wrapper, path: Path, inputs: list, quantize: str, real: int = 0) -> dict[str, Any]:
    """Max |logits difference| and agreement of the decided classes (``_decision``) of
    onnxruntime vs PyTorch; raises on failure.

    ``inputs`` are batches; when ``real`` > 0 the last batch holds real images. A quantized model
    is judged on the real images (random noise lies outside its calibrated range), fp32 on all.
    """
    import numpy as np
    import onnxruntime as ort
    import torch

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    max_diff = 0.0
    counts = {"all": [0, 0], "real": [0, 0]}
    images = 0
    for n, batch in enumerate(inputs):
        images += len(batch)
        is_real = real > 0 and n == len(inputs) - 1
        with torch.inference_mode():
            ref = dict(
                zip(names, [t.numpy() for t in wrapper(torch.from_numpy(batch))], strict=True)
            )
        got = dict(zip(names, session.run(None, {"image": batch}), strict=True))
        for name in (n for n in names if n.endswith("_logits")):
            head = name.removesuffix("_logits")
            max_diff = max(max_diff, float(np.abs(ref[name] - got[name]).max()))
            mine, theirs = ref[f"{head}_decision"], got[f"{head}_decision"]
            same = int((mine == theirs).sum())
            for key in ("all", "real") if is_real else ("all",):
                counts[key][0] += same
                counts[key][1] += len(mine)
    judged = "real" if quantize != "none" and counts["real"][1] else "all"
    agreement = counts[judged][0] / max(counts[judged][1], 1)
    report = {
        "max_abs_diff": max_diff,
        "class_agreement": agreement,
        "class_agreement_on": "real images" if judged == "real" else "all inputs",
        "verified_samples": images,
    }
    if quantize == "none" and max_diff > 1e-4:
        raise SkinclsError(
            f"{path}: onnxruntime and PyTorch differ by {max_diff:.2e} (> 1e-4); the export is wrong"
        )
    if quantize != "none" and agreement < 0.99:
        raise SkinclsError(
            f"{path}: {quantize} model agrees with PyTorch on only {agreement:.1%} of the decided "
            "classes "
            f"({report['class_agreement_on']}; < 99%); keep the fp32 export"
        )
    return report
