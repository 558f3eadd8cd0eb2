"""Quantized copies of an exported ONNX model: int8 (static QDQ calibrated on real images, or
dynamic without them) and fp16, with onnxruntime's and onnxconverter-common's own tools."""

from __future__ import annotations

from pathlib import Path

from skincls.errors import SkinclsError


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
        import onnx
        from onnxconverter_common import float16

        model = onnx.load(str(src))
        # Softmax stays fp32: converting it breaks the typed graph outputs (onnxconverter-common
        # inserts a Cast whose type no longer matches the declared float32 output).
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            half = float16.convert_float_to_float16(
                model, keep_io_types=True, op_block_list=["Softmax"]
            )
        onnx.save(half, str(dst))
        return "fp16 (softmax kept in fp32)"
    else:
        raise SkinclsError(f"--quantize: expected none, int8 or fp16, got {mode!r}")
