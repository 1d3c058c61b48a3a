"""ONNX export of every registered model (and both towers of every matching model), run in
onnxruntime on a batch of another size, against PyTorch."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from trainhub.export import ExportError, ONNXExporter, export_onnx, run_onnx
from trainhub.models import get_model_entry, list_models, toy

EXPORT_ROWS = 5  # the export traces 5 rows; onnxruntime then runs toy.BATCH_SIZE (8): the batch axis is dynamic

# (model, mode) pairs that cannot be exported, with the reason; the test checks they still fail.
# Empty: with the TorchScript exporter every registered model and tower exports (docs/export.md).
CANNOT_EXPORT: dict[tuple[str, str | None], str] = {}


def _cases() -> list[tuple[str, str | None]]:
    cases = []
    for name in list_models():
        cases.append((name, None))
        if get_model_entry(name).family == "matching":
            cases += [(name, "user"), (name, "item")]
    return cases


CASES = _cases()


def _build(name):
    torch.manual_seed(0)
    kwargs, batch = get_model_entry(name).example()
    return get_model_entry(name).cls(**kwargs).eval(), batch


def _reference(model, batch, mode):
    model.mode = mode if hasattr(model, "mode") else None
    try:
        with torch.no_grad():
            out = model(batch)
    finally:
        if hasattr(model, "mode"):
            model.mode = None
    outs = out if isinstance(out, (tuple, list)) else (out,)
    return [o.numpy() for o in outs if o.dim() > 0]  # DIEN's 0-dim auxiliary loss is not exported


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Export every case once: ``{(name, mode): (path or ExportError, model, batch)}``."""
    folder = tmp_path_factory.mktemp("onnx")
    results = {}
    for name, mode in CASES:
        model, batch = _build(name)
        path = folder / f"{name}_{mode}.onnx"
        try:
            ONNXExporter(model).export(path, mode=mode, dummy_input={k: v[:EXPORT_ROWS] for k, v in batch.items()})
            results[name, mode] = (path, model, batch)
        except ExportError as err:
            results[name, mode] = (err, model, batch)
    return results


def test_every_registered_model_is_covered():
    assert len(list_models()) >= 32
    assert {"DeepFM", "DSSM", "MMOE", "DIEN", "MIND"} <= set(list_models())


@pytest.mark.parametrize("name,mode", CASES, ids=[f"{n}-{m}" for n, m in CASES])
def test_onnxruntime_matches_pytorch(exported, name, mode):
    result, model, batch = exported[name, mode]
    if (name, mode) in CANNOT_EXPORT:
        assert isinstance(result, ExportError), f"{name} mode={mode} exports now; drop it from CANNOT_EXPORT"
        return
    assert not isinstance(result, ExportError), f"{name} mode={mode}: {result}"
    outputs = list(run_onnx(result, batch).values())
    reference = _reference(model, batch, mode)
    assert len(outputs) == len(reference)
    for got, want in zip(outputs, reference):
        assert got.shape == want.shape and got.shape[0] == toy.BATCH_SIZE
        finite = want[np.isfinite(want)]
        scale = max(1.0, float(np.abs(finite).max())) if finite.size else 1.0
        # 1e-5 at the output's scale: float32 sums in another order differ by a few ulps of the
        # largest value (SINE's temperature-scaled scores reach 60).
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * scale, err_msg=f"{name} mode={mode}")


def test_graph_inputs_are_the_features_each_tower_reads(exported):
    path, model, _ = exported["DSSM", "user"]
    names = [i.name for i in onnx.load(str(path)).graph.input]
    assert names == [f.name for f in model.user_features]
    path, model, _ = exported["DSSM", "item"]
    assert [i.name for i in onnx.load(str(path)).graph.input] == [f.name for f in model.item_features]
    batch_dim = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.dim_value  # symbolic: any batch size


def test_inputs_only_the_training_loss_reads_are_not_graph_inputs(exported):
    path, _, _ = exported["DIEN", None]
    names = {i.name for i in onnx.load(str(path)).graph.input}
    assert "hist_item_id" in names and not {"neg_hist_item_id", "neg_hist_cate_id"} & names


def test_the_torch_export_exporter_gives_the_same_graph_outputs(tmp_path):
    model, batch = _build("DeepFM")
    path = tmp_path / "deepfm.onnx"
    export_onnx(model, path, dummy_input={k: v[:EXPORT_ROWS] for k, v in batch.items()},
                onnx_export_kwargs={"dynamo": True})
    want = _reference(model, batch, None)[0]
    np.testing.assert_allclose(run_onnx(path, batch)["output"], want, rtol=0, atol=1e-5)


def test_export_keeps_the_model_state(exported, tmp_path):
    model, batch = _build("YoutubeDNN")
    model.train()
    ONNXExporter(model).export(tmp_path / "u.onnx", mode="user", dummy_input=batch)
    assert model.training and model.mode is None
    assert not list(tmp_path.glob(".*tmp"))  # written atomically: no temporary file left behind


def test_generated_dummy_inputs_export_without_a_batch(tmp_path):
    model, batch = _build("MMOE")
    assert export_onnx(model, tmp_path / "mmoe.onnx", batch_size=3) is True
    info = ONNXExporter(model).get_input_info()
    assert info["input_names"] and all(n in batch for n in info["input_names"])
    out = run_onnx(tmp_path / "mmoe.onnx", batch)["output"]
    np.testing.assert_allclose(out, _reference(model, batch, None)[0], rtol=0, atol=1e-5)


def test_errors_name_the_problem(tmp_path):
    model, batch = _build("DeepFM")
    with pytest.raises(ValueError, match="DeepFM has no towers"):
        export_onnx(model, tmp_path / "x.onnx", mode="user", dummy_input=batch)
    partial = {k: v for k, v in batch.items() if k != "city"}
    with pytest.raises(ExportError, match="reads an input the dummy input lacks: .*'city'"):
        export_onnx(model, tmp_path / "x.onnx", dummy_input=partial)
    with pytest.raises(ValueError, match="must not set"):
        export_onnx(model, tmp_path / "x.onnx", dummy_input=batch, onnx_export_kwargs={"input_names": ["a"]})
    with pytest.raises(KeyError, match="needs input 'city'"):
        export_onnx(model, tmp_path / "x.onnx", dummy_input=batch)
        run_onnx(tmp_path / "x.onnx", partial)
    assert not (tmp_path / "y.onnx").exists()


class _Unexportable(torch.nn.Module):
    """Python control flow on a value: TorchScript records the branch taken, torch.export refuses."""

    def __init__(self):
        super().__init__()
        self.features = [__import__("trainhub").features.SparseFeature("a", 10, 4)]
        self.weight = torch.nn.Parameter(torch.ones(1))

    def forward(self, x):
        scale = 2.0 if x["a"].sum() > 10 else 3.0
        return x["a"].float() * self.weight * scale


def test_a_failed_export_names_the_model_and_each_exporter(tmp_path):
    with pytest.raises(ExportError, match=r"cannot export _Unexportable .*TorchScript exporter: .*torch\.export"):
        export_onnx(_Unexportable(), tmp_path / "bad.onnx", dummy_input={"a": torch.tensor([1, 2, 3])})
    assert not (tmp_path / "bad.onnx").exists()
