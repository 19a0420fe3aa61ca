"""Export: the adapted model as ONNX, checked against PyTorch, and predicting with it.

onnx (the export stage: export, onnxruntime parity, latency), predict (classifying image files
with the exported model alone, `adaptflow predict`).

Imports: adaptflow.core, data, models.
"""
