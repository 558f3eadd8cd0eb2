"""The version of skincls (read by the package, the run files and the ONNX metadata)."""

__version__ = "0.1.0"
