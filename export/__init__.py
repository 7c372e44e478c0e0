"""kinebridge.export: torch models, their training, and export to ONNX / TensorRT (later issues)."""
