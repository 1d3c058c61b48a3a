"""Deployment helpers (extra: ``onnx``): ONNX export of models and towers, running exported
graphs, and int8/fp16 quantization with a report of its accuracy cost.

Torch-RecHub's names: ``utils.onnx_export.ONNXExporter`` is :class:`ONNXExporter`,
``utils.quantization.quantize_model`` is :func:`quantize_model`, and every trainer has
``export_onnx(...)``. ``import trainhub.export`` imports neither onnx nor onnxruntime.
"""

from trainhub.export.onnx import (
    ExportError,
    ONNXExporter,
    ONNXWrapper,
    export_onnx,
    generate_dummy_input,
    model_features,
    run_onnx,
)
from trainhub.export.quantization import quantization_report, quantize_model

__all__ = ["ONNXExporter", "ONNXWrapper", "ExportError", "export_onnx", "run_onnx", "model_features",
           "generate_dummy_input", "quantize_model", "quantization_report"]
