"""ONNX export of dict-input models (extra: ``onnx``).

Models take one dict ``{feature_name: tensor}``; ONNX graphs take positional inputs. The exporter
finds which inputs the model (or one of its towers) actually reads, by running it once on a
recording dict, and exports a wrapper whose positional inputs carry those feature names, with a
dynamic batch axis.

Two exporters exist in PyTorch. The TorchScript one (``dynamo=False``) exports every registered
model that can be exported at all and is the default here (``exporter="auto"`` tries it first and
falls back to the ``torch.export``-based one); pass ``onnx_export_kwargs={"dynamo": True}`` to use
``torch.export`` only. ``docs/export.md`` lists, per model, what each exporter does.

Example:
    >>> from trainhub.export import ONNXExporter, run_onnx
    >>> ONNXExporter(model).export("deepfm.onnx", dummy_input=batch)
    >>> probs = run_onnx("deepfm.onnx", batch)["output"]
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import torch
from torch import nn

from trainhub.features import DenseFeature, SequenceFeature, SparseFeature
from trainhub.files import atomic_write

__all__ = ["ONNXExporter", "ONNXWrapper", "export_onnx", "run_onnx", "model_features", "generate_dummy_input",
           "ExportError"]

log = logging.getLogger(__name__)

_FEATURE_TYPES = (SparseFeature, SequenceFeature, DenseFeature)
_MODES = (None, "user", "item")


class ExportError(RuntimeError):
    """The model could not be exported; the message names the model, the exporter(s) and why."""


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError as err:
        raise ImportError("running ONNX models needs onnxruntime; install the extra: pip install 'trainhub[onnx]'") \
            from err
    return onnxruntime


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
    except ImportError as err:
        raise ImportError("ONNX export needs onnx; install the extra: pip install 'trainhub[onnx]'") from err


# -- finding a model's inputs ------------------------------------------------------------------
def _features_in(value: Any) -> list:
    if isinstance(value, _FEATURE_TYPES):
        return [value]
    if isinstance(value, (list, tuple)):
        return [v for v in value if isinstance(v, _FEATURE_TYPES)]
    return []


def model_features(model: nn.Module) -> list:
    """Every feature spec a model (or any submodule) holds as an attribute, unique by name, in
    attribute order. Specs are plain attributes (``self.features = [...]``), never module state."""
    seen: dict[str, object] = {}
    for module in model.modules():
        for value in vars(module).values():
            for f in _features_in(value):
                seen.setdefault(f.name, f)
    return list(seen.values())


def generate_dummy_input(features: Iterable[object], batch_size: int = 2, seq_length: int = 10,
                         device: str | torch.device = "cpu", seed: int = 0) -> dict[str, torch.Tensor]:
    """Random valid inputs: ids in ``[1, vocab_size)`` (``[B]`` or ``[B, seq_length]``, the last
    position of each sequence padded with 0 for half of the rows), dense values in ``(0, 1]``."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for f in features:
        if isinstance(f, DenseFeature):
            shape = (batch_size,) if f.embed_dim == 1 else (batch_size, f.embed_dim)
            out[f.name] = torch.rand(shape, generator=g) * 0.99 + 0.01
            continue
        low = 1 if f.vocab_size > 1 else 0
        if isinstance(f, SequenceFeature):
            ids = torch.randint(low, f.vocab_size, (batch_size, seq_length), generator=g)
            if seq_length > 1:
                ids[::2, -1] = f.pad_id
        else:
            ids = torch.randint(low, f.vocab_size, (batch_size,), generator=g)
        out[f.name] = ids
    return {k: v.to(device) for k, v in out.items()}


class _RecordingDict(dict):
    """A dict that remembers which keys were read."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.read: list[str] = []

    def _note(self, key):
        if key not in self.read:
            self.read.append(key)

    def __getitem__(self, key):
        self._note(key)
        return super().__getitem__(key)

    def get(self, key, default=None):
        self._note(key)
        return super().get(key, default)


def _set_mode(model: nn.Module, mode: str | None) -> Any:
    if mode not in _MODES:
        raise ValueError(f"mode must be None, 'user' or 'item', got {mode!r}")
    previous = getattr(model, "mode", None)
    if mode is not None:
        if not hasattr(model, "mode"):
            raise ValueError(f"{type(model).__name__} has no towers (no 'mode' attribute); export it with mode=None")
        model.mode = mode
    return previous


def _flatten_outputs(output: Any) -> tuple[torch.Tensor, ...]:
    """The tensors a graph returns: a tensor, or a tuple/list of tensors without the 0-dim
    auxiliary losses some models return beside their logits (DIEN)."""
    if isinstance(output, torch.Tensor):
        return (output,)
    if isinstance(output, (tuple, list)):
        kept = tuple(t for t in output if isinstance(t, torch.Tensor) and t.dim() > 0)
        if kept:
            return kept
    raise TypeError(f"cannot export a model output of type {type(output).__name__}; expected tensors")


class ONNXWrapper(nn.Module):
    """Positional inputs -> the dict the model takes; outputs as a flat tuple of tensors.

    Args:
        model: a dict-input model.
        input_names: feature names, in the order of the positional inputs.
        mode: ``"user"``/``"item"`` for one tower of a matching model (restored by :meth:`restore_mode`).
    """

    def __init__(self, model: nn.Module, input_names: list[str], mode: str | None = None):
        super().__init__()
        self.model = model
        self.input_names = list(input_names)
        self._original_mode = _set_mode(model, mode)

    def forward(self, *args: torch.Tensor):
        if len(args) != len(self.input_names):
            raise ValueError(f"expected {len(self.input_names)} inputs {self.input_names}, got {len(args)}")
        outputs = _flatten_outputs(self.model(dict(zip(self.input_names, args))))
        return outputs[0] if len(outputs) == 1 else outputs

    def restore_mode(self) -> None:
        if hasattr(self.model, "mode"):
            self.model.mode = self._original_mode


# -- the exporter ------------------------------------------------------------------------------
class ONNXExporter:
    """Export a trainhub model (or one tower of a matching model) to ONNX.

    Args:
        model: the model (a DataParallel/DDP wrapper is unwrapped).
        device: where the export runs.

    Example:
        >>> exporter = ONNXExporter(dssm)
        >>> exporter.export("user_tower.onnx", mode="user")
        >>> exporter.export("item_tower.onnx", mode="item")
    """

    def __init__(self, model: nn.Module, device: str | torch.device = "cpu"):
        from trainhub.engine import unwrap_model

        self.model = unwrap_model(model)
        self.device = torch.device(device)
        self.features = model_features(self.model)

    def input_names(self, dummy_input: Mapping[str, torch.Tensor], mode: str | None = None) -> list[str]:
        """Keys of ``dummy_input`` the model reads in ``mode``, in the dict's order."""
        recorder = _RecordingDict(dummy_input)
        previous = _set_mode(self.model, mode)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                self.model(recorder)
        except KeyError as err:
            raise ExportError(f"{type(self.model).__name__} (mode={mode!r}) reads an input the dummy input lacks: "
                              f"{err.args[0]}; pass dummy_input with every input the model reads") from None
        finally:
            self.model.train(was_training)
            if hasattr(self.model, "mode"):
                self.model.mode = previous
        read = set(recorder.read)
        return [name for name in dummy_input if name in read]

    def get_input_info(self, mode: str | None = None, dummy_input: Mapping[str, torch.Tensor] | None = None,
                       seq_length: int = 10) -> dict[str, Any]:
        """``{"mode", "input_names", "inputs": [{"name", "type", "embed_dim", ...}]}`` for ``mode``."""
        dummy = dict(dummy_input) if dummy_input is not None else generate_dummy_input(
            self.features, batch_size=2, seq_length=seq_length)
        names = self.input_names(dummy, mode)
        by_name = {f.name: f for f in self.features}
        inputs = []
        for name in names:
            f = by_name.get(name)
            info = {"name": name, "type": type(f).__name__ if f is not None else "Tensor",
                    "dtype": str(dummy[name].dtype).replace("torch.", ""), "shape": ["batch", *dummy[name].shape[1:]]}
            for attr in ("embed_dim", "vocab_size", "pooling"):
                if hasattr(f, attr):
                    info[attr] = getattr(f, attr)
            inputs.append(info)
        return {"mode": mode, "inputs": inputs, "input_names": names}

    def export(
        self,
        output_path: str | Path,
        mode: str | None = None,
        dummy_input: Mapping[str, torch.Tensor] | None = None,
        batch_size: int = 2,
        seq_length: int = 10,
        opset_version: int = 14,
        dynamic_batch: bool = True,
        verbose: bool = False,
        onnx_export_kwargs: Mapping[str, Any] | None = None,
        *,
        verify: bool = True,
    ) -> bool:
        """Export to ``output_path`` (written atomically); return True, or raise :class:`ExportError`.

        Args:
            output_path: the ``.onnx`` file.
            mode: ``None`` (the whole model), ``"user"`` or ``"item"`` (one tower of a matching model).
            dummy_input: an example batch ``{name: tensor or array}``; by default random valid inputs for
                every feature the model holds. Only the keys the model reads become graph inputs.
            batch_size / seq_length: size of the generated dummy input.
            opset_version: ONNX opset (the ``torch.export`` exporter needs >= 18 and raises it).
            dynamic_batch: make axis 0 of every input and output dynamic.
            verbose: log the exporter's report.
            onnx_export_kwargs: extra ``torch.onnx.export`` arguments; ``{"dynamo": True}`` or
                ``{"dynamo": False}`` picks one exporter instead of trying TorchScript first.
            verify: run the exported graph in onnxruntime on a batch of another size (twice the
                dummy's rows) and compare it with PyTorch. The TorchScript exporter records
                values that depend on the data as constants, which this catches: such a graph is
                refused (and the next exporter tried) instead of written.
        """
        _require_onnx()
        if verify:
            _onnxruntime()  # fail here, naming the extra, not as an exporter failure later
        kwargs = dict(onnx_export_kwargs or {})
        clash = set(kwargs) & {"f", "input_names", "output_names", "opset_version", "dynamic_axes", "dynamic_shapes"}
        if clash:
            raise ValueError(f"onnx_export_kwargs must not set {sorted(clash)}; use export()'s parameters")
        dynamo = kwargs.pop("dynamo", None)
        exporters = [False, True] if dynamo is None else [bool(dynamo)]
        model, name = self.model, type(self.model).__name__
        was_training = model.training
        device_before = next(iter(model.parameters()), torch.empty(0)).device
        model.eval().to(self.device)
        try:
            dummy = dict(dummy_input) if dummy_input is not None else generate_dummy_input(
                self.features, batch_size=batch_size, seq_length=seq_length)
            dummy = {k: torch.as_tensor(v).to(self.device) for k, v in dummy.items()
                     if isinstance(v, (torch.Tensor, np.ndarray))}
            names = self.input_names(dummy, mode)
            if not names:
                raise ExportError(f"{name} (mode={mode!r}) reads none of the inputs {sorted(dummy)}")
            args = tuple(dummy[n] for n in names)
            check_args = _verification_args(args, dynamic_batch)
            wrapper = ONNXWrapper(model, names, mode)
            errors = []
            try:
                with torch.no_grad():
                    expected = [t.detach().cpu().numpy() for t in _as_tuple(wrapper(*check_args))]
                output_names = ["output"] + [f"output_{i}" for i in range(1, len(expected))]
                for use_dynamo in exporters:
                    label = "torch.export" if use_dynamo else "TorchScript"
                    try:
                        data = _export_bytes(wrapper, args, names, output_names, opset_version, dynamic_batch,
                                             use_dynamo, verbose, kwargs)
                        data, unused = _prune_unused_inputs(data)
                        if verify:
                            _verify(data, dict(zip(names, check_args)), expected)
                        break
                    except Exception as err:  # noqa: BLE001 - reported below, per exporter
                        errors.append(f"{label} exporter: {_first_line(err)}")
                        log.debug("%s export of %s failed", label, name, exc_info=True)
                else:
                    raise ExportError(f"cannot export {name} (mode={mode!r}): " + "; ".join(errors))
            finally:
                wrapper.restore_mode()
            atomic_write(output_path, lambda tmp: Path(tmp).write_bytes(data))
            if unused:
                log.info("%s: the exported graph does not read %s; they are not graph inputs", name, unused)
            log.info("exported %s (mode=%s) to %s with the %s exporter, inputs %s", name, mode, output_path,
                     label, [n for n in names if n not in unused])
            return True
        finally:
            model.train(was_training).to(device_before)


def _as_tuple(output: Any) -> tuple[torch.Tensor, ...]:
    return output if isinstance(output, tuple) else (output,)


def _verification_args(args: tuple[torch.Tensor, ...], dynamic_batch: bool) -> tuple[torch.Tensor, ...]:
    """Inputs unlike the traced ones: twice the rows (with a dynamic batch), rolled by one row."""
    if dynamic_batch:
        return tuple(torch.cat([a, a.roll(1, 0)]) for a in args)
    return tuple(a.roll(1, 0) for a in args)


def _verify(data: bytes, inputs: dict[str, torch.Tensor], expected: list[np.ndarray]) -> None:
    """Raise ValueError unless the serialized graph reproduces ``expected`` on ``inputs``."""
    outputs = list(_session_run(data, inputs).values())
    if len(outputs) != len(expected):
        raise ValueError(f"the exported graph has {len(outputs)} outputs, the model {len(expected)}")
    for i, (got, want) in enumerate(zip(outputs, expected)):
        if got.shape != want.shape:
            raise ValueError(f"output {i}: the exported graph gives shape {got.shape} on a batch of "
                             f"{len(next(iter(inputs.values())))} rows, the model {want.shape} "
                             "(a size or value was recorded as a constant)")
        finite = np.isfinite(want)
        scale = max(1.0, float(np.abs(want[finite]).max())) if finite.any() else 1.0
        same_inf = np.array_equal(np.isfinite(got), finite) and np.array_equal(got[~finite], want[~finite])
        diff = float(np.abs(got[finite] - want[finite]).max()) if finite.any() else 0.0
        if not same_inf or diff > 1e-4 * scale:
            raise ValueError(f"output {i}: the exported graph differs from the model by {diff:.3g} on another "
                             "batch (a value that depends on the data was recorded as a constant)")


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _first_line(err: BaseException) -> str:
    """``Type: first line`` of the innermost cause (the exporters wrap the real error)."""
    while err.__cause__ is not None:
        err = err.__cause__
    lines = [line for line in _ANSI.sub("", str(err)).splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[0].strip()[:300] if lines else ''}"


def _export_bytes(wrapper: nn.Module, args: tuple, names: list[str], output_names: list[str], opset_version: int,
                  dynamic_batch: bool, dynamo: bool, verbose: bool, kwargs: dict) -> bytes:
    """Run one exporter; return the serialized model."""
    with warnings.catch_warnings(), torch.no_grad(), _mha_fastpath(False), _quiet(verbose):
        warnings.simplefilter("ignore")  # exporter deprecation and tracer warnings; failures raise
        if dynamo:
            dynamic_shapes = None
            if dynamic_batch:
                batch = torch.export.Dim("batch")
                dynamic_shapes = (tuple({0: batch} for _ in args),)
            program = torch.onnx.export(wrapper, args, None, input_names=names, output_names=output_names,
                                        opset_version=max(opset_version, 18), dynamo=True,
                                        dynamic_shapes=dynamic_shapes, verbose=verbose, **kwargs)
            return program.model_proto.SerializeToString()
        buffer = io.BytesIO()
        dynamic_axes = {n: {0: "batch"} for n in names + output_names} if dynamic_batch else None
        with _legacy_symbolics(opset_version):
            torch.onnx.export(wrapper, args, buffer, input_names=names, output_names=output_names,
                              opset_version=opset_version, dynamo=False, dynamic_axes=dynamic_axes,
                              do_constant_folding=True, verbose=verbose, **kwargs)
        return buffer.getvalue()


_NOISY_LOGGERS = ("torch.onnx", "torch.export", "torch._export", "torch._dynamo",
                  "torch.fx.experimental.symbolic_shapes")


@contextlib.contextmanager
def _quiet(verbose: bool):
    """Keep the exporters' progress prints, graph dumps and warnings off the console (failures
    still raise, and :class:`ExportError` carries their cause) unless ``verbose``."""
    if verbose:
        yield
        return
    loggers = [logging.getLogger(n) for n in _NOISY_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


@contextlib.contextmanager
def _mha_fastpath(enabled: bool):
    """Switch nn.MultiheadAttention's fused inference kernel, which has no ONNX translation."""
    mha = getattr(torch.backends, "mha", None)
    if mha is None:
        yield
        return
    previous = mha.get_fastpath_enabled()
    mha.set_fastpath_enabled(enabled)
    try:
        yield
    finally:
        mha.set_fastpath_enabled(previous)


def _expm1_symbolic(g, x):
    # ONNX has no expm1; exp(x) - 1 loses relative precision only for |x| << 1.
    return g.op("Sub", g.op("Exp", x), g.op("Constant", value_t=torch.tensor(1.0)))


@contextlib.contextmanager
def _legacy_symbolics(opset_version: int):
    """Translations the TorchScript exporter lacks, registered for one export only."""
    torch.onnx.register_custom_op_symbolic("aten::expm1", _expm1_symbolic, opset_version)
    try:
        yield
    finally:
        torch.onnx.unregister_custom_op_symbolic("aten::expm1", opset_version)


def _prune_unused_inputs(data: bytes) -> tuple[bytes, list[str]]:
    """Drop graph inputs no node (nor subgraph, nor output) reads; return the model and their names.

    A model may read an input only for its training loss (DIEN's sampled negative history); the
    exported graph then does not need it, and serving should not have to feed it.
    """
    import onnx

    model = onnx.load_from_string(data)
    used: set[str] = {o.name for o in model.graph.output}

    def visit(graph) -> None:
        for node in graph.node:
            used.update(node.input)
            for attr in node.attribute:
                for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                    visit(sub)
                    used.update(o.name for o in sub.output)

    visit(model.graph)
    unused = [i.name for i in model.graph.input if i.name not in used]
    if not unused:
        return data, []
    kept = [i for i in model.graph.input if i.name in used]
    del model.graph.input[:]
    model.graph.input.extend(kept)
    return model.SerializeToString(), unused


def export_onnx(model: nn.Module, output_path: str | Path, mode: str | None = None, **kwargs: Any) -> bool:
    """``ONNXExporter(model).export(output_path, mode, **kwargs)``."""
    device = kwargs.pop("device", None) or "cpu"
    return ONNXExporter(model, device=device).export(output_path, mode=mode, **kwargs)


# -- running an exported model -----------------------------------------------------------------
def run_onnx(path: str | Path, inputs: Mapping[str, Any], providers: list[str] | None = None) -> dict[str, np.ndarray]:
    """Run an exported model with onnxruntime on ``{name: tensor or array}`` (extra keys are
    ignored); return ``{output_name: array}``."""
    return _session_run(str(path), inputs, providers, what=str(path))


def _session_run(model: str | bytes, inputs: Mapping[str, Any], providers: list[str] | None = None,
                 what: str = "the exported graph") -> dict[str, np.ndarray]:
    ort = _onnxruntime()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model, options, providers=providers or ["CPUExecutionProvider"])
    feed = {}
    for spec in session.get_inputs():
        if spec.name not in inputs:
            raise KeyError(f"{what} needs input {spec.name!r}; got {sorted(inputs)}")
        value = inputs[spec.name]
        feed[spec.name] = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feed)))
