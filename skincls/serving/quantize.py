"""Quantized copies of an exported ONNX model: int8 (static QDQ calibrated on real images, or
dynamic without them) and fp16, with onnxruntime's and onnxconverter-common's own tools."""

from __future__ import annotations

from pathlib import Path

from skincls.core.errors import SkinclsError
from skincls.core.fileio import remove_quietly


def quantize(src: Path, dst: Path, mode: str, calibration=None) -> str:
    """Write the quantized model; returns how it was quantized.

    int8 is static (QDQ, per-channel weights, activations calibrated on real images) when
    ``calibration`` holds images, which runs several times faster than fp32 on CPU; without
    images it falls back to dynamic quantization, which shrinks the file but runs convolutions
    slowly (ConvInteger).
    """
    if mode == "int8":
        import logging

        from onnxruntime.quantization import (
            CalibrationDataReader,
            QuantFormat,
            QuantType,
            quantize_dynamic,
            quantize_static,
        )

        logging.getLogger().setLevel(logging.ERROR)  # silence the "run pre-processing" advice
        if calibration is None or len(calibration) == 0:
            quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
            return "int8 dynamic (no calibration images)"
        from onnxruntime.quantization.shape_inference import quant_pre_process

        class Reader(CalibrationDataReader):
            def __init__(self, images):
                self.items = iter([{"image": img[None]} for img in images])

            def get_next(self):
                return next(self.items, None)

        pre = dst.with_name(dst.stem + ".pre.onnx")
        try:
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
            quantize_static(
                str(pre),
                str(dst),
                Reader(calibration),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                weight_type=QuantType.QInt8,
                activation_type=QuantType.QUInt8,
                op_types_to_quantize=["Conv"],  # heads stay fp32: logits keep their precision
            )
        finally:
            if pre.exists():
                pre.unlink()
        return f"int8 static (QDQ convolutions, {len(calibration)} calibration images)"
    elif mode == "fp16":
        _fp16(src, dst)
        return "fp16 (probabilities and decisions computed in fp32)"
    else:
        raise SkinclsError(f"--quantize: expected none, int8 or fp16, got {mode!r}")


def _fp16(src: Path, dst: Path) -> None:
    """fp16 up to the ``<region>_logits``, fp32 after them: the graph is cut at the logits, the
    first part converted by onnxconverter-common (inputs and outputs kept fp32) and the second
    (temperature, bias, probabilities, the decision) joined back unchanged. Converting the whole
    graph with the post-processing blocked broke it (the converter halves the constants those
    nodes read, and feeds them its fp16 copy of a graph output)."""
    import warnings

    import onnx
    import onnx.compose
    import onnx.utils
    from onnxconverter_common import float16

    outputs = [o.name for o in onnx.load(str(src), load_external_data=False).graph.output]
    logits = [o for o in outputs if o.endswith("_logits")]
    rest = [o for o in outputs if o not in logits]
    core_path, post_path = dst.with_suffix(".core.onnx"), dst.with_suffix(".post.onnx")
    try:
        onnx.utils.extract_model(str(src), str(core_path), ["image"], logits)
        onnx.utils.extract_model(str(src), str(post_path), logits, rest)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            core = float16.convert_float_to_float16(onnx.load(str(core_path)), keep_io_types=True)
        del core.graph.value_info[:]  # stale fp32/fp16 shapes; shape inference redoes them
        merged = onnx.compose.merge_models(
            core, onnx.load(str(post_path)), io_map=[(x, x) for x in logits], outputs=outputs
        )
        del merged.graph.value_info[:]
        by_name = {o.name: o for o in merged.graph.output}
        ordered = [by_name[n] for n in outputs]  # the exported order: callers zip by position
        del merged.graph.output[:]
        merged.graph.output.extend(ordered)
        onnx.save(merged, str(dst))
    finally:
        remove_quietly(core_path, post_path)
