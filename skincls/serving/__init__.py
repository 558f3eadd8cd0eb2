"""Using a trained run: evaluate, predict, export to ONNX (with its metadata and quantization),
explain (Grad-CAM) and the HTML report."""
