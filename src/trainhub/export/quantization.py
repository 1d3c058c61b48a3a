"""Post-training quantization of exported ONNX models (extra: ``onnx``), and a report of what it costs.

Dynamic int8 quantization stores the weights of matrix products and embedding lookups (``MatMul``,
``Gemm`` rewritten as ``MatMul``, ``Gather``) as int8 and quantizes activations on the fly, so a model shrinks about 4x
with no calibration data. ``quantization_report`` measures the price: the largest change of an
output, and the AUC before and after when labels are given.

Example:
    >>> from trainhub.export import quantize_model, quantization_report
    >>> quantize_model("deepfm.onnx", "deepfm.int8.onnx")
    >>> quantization_report("deepfm.onnx", "deepfm.int8.onnx", test_x, test_y)
    {'auc_fp32': 0.781, 'auc_int8': 0.780, 'auc_drop': 0.001, ...}
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from trainhub.files import atomic_write

__all__ = ["quantize_model", "quantization_report"]

_INT8_MODES = ("int8", "dynamic_int8", "dynamic")
_FP16_MODES = ("fp16", "float16")


def quantize_model(
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    mode: str = "int8",
    *,
    per_channel: bool = False,
    reduce_range: bool = False,
    weight_type: str = "qint8",
    optimize_model: bool = False,
    op_types_to_quantize: list[str] | None = None,
    nodes_to_quantize: list[str] | None = None,
    nodes_to_exclude: list[str] | None = None,
    extra_options: dict[str, Any] | None = None,
    keep_io_types: bool = True,
) -> str:
    """Quantize an ONNX model; write ``output_path`` atomically and return it.

    Args:
        input_path: float32 ONNX model.
        output_path: where the quantized model goes.
        mode: ``"int8"`` (also ``"dynamic_int8"``/``"dynamic"``): onnxruntime dynamic quantization;
            ``"fp16"``: float16 weights and activations (onnxruntime's converter; for GPUs: CPUs
            gain little from it).
        per_channel / reduce_range / weight_type (``"qint8"`` | ``"quint8"``) / optimize_model /
            op_types_to_quantize / nodes_to_quantize / nodes_to_exclude / extra_options: forwarded
            to ``onnxruntime.quantization.quantize_dynamic`` (options this onnxruntime lacks are dropped).
        keep_io_types: fp16 only: keep float32 inputs and outputs.
    """
    input_path, output_path = Path(input_path), Path(output_path)
    if not input_path.is_file():
        raise FileNotFoundError(f"no ONNX model at {input_path}")
    mode_name = (mode or "").strip().lower()
    if mode_name in _INT8_MODES:
        try:
            from onnxruntime.quantization import QuantType, quantize_dynamic
        except ImportError as err:
            raise ImportError("int8 quantization needs onnxruntime; install the extra: pip install 'trainhub[onnx]'") \
                from err
        types = {"qint8": QuantType.QInt8, "int8": QuantType.QInt8, "quint8": QuantType.QUInt8,
                 "uint8": QuantType.QUInt8}
        key = (weight_type or "").strip().lower()
        if key not in types:
            raise ValueError(f"weight_type must be 'qint8' or 'quint8', got {weight_type!r}")
        options = {"per_channel": per_channel, "reduce_range": reduce_range, "weight_type": types[key],
                   "optimize_model": optimize_model, "op_types_to_quantize": op_types_to_quantize,
                   "nodes_to_quantize": nodes_to_quantize, "nodes_to_exclude": nodes_to_exclude,
                   "extra_options": extra_options}
        accepted = inspect.signature(quantize_dynamic).parameters
        options = {k: v for k, v in options.items() if k in accepted and v is not None}
        import onnx

        model = _gemm_to_matmul(onnx.load(str(input_path)))
        atomic_write(output_path, lambda tmp: quantize_dynamic(model, tmp, **options))
        return str(output_path)
    if mode_name in _FP16_MODES:
        try:
            import onnx
            from onnxruntime.transformers import float16
        except ImportError as err:
            raise ImportError("fp16 conversion needs onnx and onnxruntime; install the extra: "
                              "pip install 'trainhub[onnx]'") from err
        converted = float16.convert_float_to_float16(onnx.load(str(input_path)), keep_io_types=keep_io_types)
        atomic_write(output_path, lambda tmp: onnx.save(converted, tmp))
        return str(output_path)
    raise ValueError(f"mode must be one of {_INT8_MODES + _FP16_MODES}, got {mode!r}")


def _gemm_to_matmul(model):
    """Rewrite ``Gemm(A, W, b)`` with a constant ``W`` as ``MatMul(A, W') + b``.

    Exporters turn ``nn.Linear`` on ``[B, F]`` inputs into ``Gemm``, which onnxruntime's dynamic
    quantization does not cover (it quantizes ``MatMul``): without this, an MLP keeps float32 weights.
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    weights = {init.name: init for init in graph.initializer}
    nodes = []
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if (node.op_type != "Gemm" or len(node.input) < 2 or node.input[1] not in weights
                or attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0):
            nodes.append(node)
            continue
        weight = numpy_helper.to_array(weights[node.input[1]])
        if attrs.get("transB", 0):
            weight = weight.T
        weight_name = f"{node.input[1]}__matmul_{len(nodes)}"
        graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(weight), weight_name))
        has_bias = len(node.input) > 2 and node.input[2] != ""
        product = f"{node.output[0]}__matmul" if has_bias else node.output[0]
        nodes.append(helper.make_node("MatMul", [node.input[0], weight_name], [product], name=f"{node.name}_matmul"))
        if has_bias:
            nodes.append(helper.make_node("Add", [product, node.input[2]], [node.output[0]], name=f"{node.name}_bias"))
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for node in graph.node for name in node.input}
    unused = [init for init in graph.initializer if init.name not in used]
    for init in unused:  # the original Gemm weights, now read by nobody
        graph.initializer.remove(init)
    return model


def quantization_report(
    fp32_path: str | os.PathLike,
    quantized_path: str | os.PathLike,
    inputs: Mapping[str, Any],
    labels: Any = None,
    output: str | None = None,
    column: int | None = None,
) -> dict[str, float]:
    """Run both models on ``inputs``; report sizes, the largest output change and (with binary
    ``labels``) the AUC of each and the drop.

    Args:
        fp32_path / quantized_path: the original and the quantized model.
        inputs: ``{name: tensor or array}``, e.g. a whole test set.
        labels: 0/1 labels of the rows, for the AUC.
        output: which output to compare (default: the first).
        column: for ``[N, T]`` outputs (multi-task), which column the labels belong to.

    Returns:
        ``{"size_fp32", "size_quantized", "max_abs_diff", "mean_abs_diff"}``, plus
        ``{"auc_fp32", "auc_quantized", "auc_drop"}`` with labels. Outputs are logits, and AUC
        only depends on their order, so no sigmoid is needed.
    """
    from trainhub.export.onnx import run_onnx

    results = []
    for path in (fp32_path, quantized_path):
        outputs = run_onnx(path, inputs)
        name = output or next(iter(outputs))
        if name not in outputs:
            raise KeyError(f"{path} has no output {name!r}; it has {sorted(outputs)}")
        values = outputs[name].astype(np.float64)
        if column is not None:
            values = values[:, column]
        results.append(values)
    reference, quantized = results
    diff = np.abs(reference - quantized)
    report = {"size_fp32": float(Path(fp32_path).stat().st_size),
              "size_quantized": float(Path(quantized_path).stat().st_size),
              "max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean())}
    if labels is not None:
        from sklearn.metrics import roc_auc_score

        y = labels.detach().cpu().numpy() if hasattr(labels, "detach") else np.asarray(labels)
        y = y.reshape(-1)
        if reference.ndim != 1 or len(reference) != len(y):
            raise ValueError(f"labels {y.shape} do not match the output {reference.shape}; pick a column")
        report["auc_fp32"] = float(roc_auc_score(y, reference))
        report["auc_quantized"] = float(roc_auc_score(y, quantized))
        report["auc_drop"] = report["auc_fp32"] - report["auc_quantized"]
    return report
