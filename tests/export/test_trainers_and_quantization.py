"""``trainer.export_onnx`` on the three trainers after training, and int8/fp16 quantization with
its accuracy report."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from tests.conftest import make_ctr_data
from tests.trainers.test_mtl_trainer import make_mtl_data
from trainhub.data import DictDataset, make_loader
from trainhub.export import quantization_report, quantize_model, run_onnx
from trainhub.models import toy
from trainhub.models.matching import DSSM
from trainhub.models.multitask import MMOE
from trainhub.models.ranking import DeepFM
from trainhub.trainers import CTRTrainer, MatchTrainer, MTLTrainer

FAST = {"optimizer_params": {"lr": 0.01, "weight_decay": 0.0}, "progress": False, "seed": 0}


@pytest.fixture(scope="module")
def ctr(tmp_path_factory):
    """A DeepFM trained for 3 epochs on the learnable CTR toy, exported, with held-out rows."""
    folder = tmp_path_factory.mktemp("ctr")
    sparse, dense, x, y = make_ctr_data(1200, seed=1)
    x = {k: torch.as_tensor(v) for k, v in x.items()}
    train = {k: v[:900] for k, v in x.items()}
    test = {k: v[900:] for k, v in x.items()}
    torch.manual_seed(0)  # the initial weights must not depend on which tests ran before
    model = DeepFM(deep_features=sparse + dense, fm_features=sparse, mlp_params={"dims": [64, 32], "dropout": 0.0})
    trainer = CTRTrainer(model, n_epoch=3, model_path=str(folder), **FAST)
    trainer.fit(make_loader(DictDataset(train, y[:900]), 64, shuffle=True, seed=0))
    assert trainer.export_onnx(folder / "deepfm.onnx", dummy_input={k: v[:4] for k, v in test.items()}) is True
    return trainer, folder / "deepfm.onnx", test, torch.as_tensor(y[900:])


def test_ctr_trainer_export_serves_the_trained_predictions(ctr):
    trainer, path, test, y = ctr
    probs = trainer.predict(trainer.model, make_loader(DictDataset(test, y), 128))
    logits = run_onnx(path, test)["output"]
    np.testing.assert_allclose(1 / (1 + np.exp(-logits)), probs, rtol=0, atol=1e-5)


def test_mtl_trainer_export(tmp_path):
    features, x, ys = make_mtl_data(300)
    x = {k: torch.as_tensor(v) for k, v in x.items()}
    model = MMOE(features, ["classification", "classification"], n_expert=2, expert_params={"dims": [8]},
                 tower_params_list=[{"dims": [4]}, {"dims": [4]}])
    trainer = MTLTrainer(model, ["classification", "classification"], n_epoch=1, model_path=str(tmp_path), **FAST)
    loader = make_loader(DictDataset(x, ys), 64, shuffle=True, seed=0)
    trainer.fit(loader, make_loader(DictDataset(x, ys), 300))
    trainer.export_onnx(tmp_path / "mmoe.onnx")  # dummy inputs generated from the features
    model.eval()
    with torch.no_grad():
        want = model(x).numpy()  # [N, 2] logits
    np.testing.assert_allclose(run_onnx(tmp_path / "mmoe.onnx", x)["output"], want, rtol=0, atol=1e-5)


def test_match_trainer_exports_each_tower_like_inference_embedding(tmp_path):
    x, y = toy.match_dataset(128)
    sparse = {f.name: f for f in toy.sparse_features()}
    user = [sparse["user_id"], sparse["city"], toy.history_features()[0]]
    item = [sparse["item_id"], sparse["cate_id"]]
    model = DSSM(user, item, {"dims": [16, 8]}, {"dims": [16, 8]})
    trainer = MatchTrainer(model, mode=0, n_epoch=1, model_path=str(tmp_path), **FAST)
    trainer.fit(make_loader(DictDataset(x, y), 32, shuffle=True, seed=0))
    for mode, features in (("user", user), ("item", item)):
        path = tmp_path / f"{mode}.onnx"
        trainer.export_onnx(path, mode=mode, dummy_input={k: v[:3] for k, v in x.items()})
        want = trainer.inference_embedding(model, mode, make_loader(DictDataset(x), 64), model_path=None)
        assert [i.name for i in onnx.load(str(path)).graph.input] == [f.name for f in features]
        got = run_onnx(path, x)["output"]
        assert got.shape == (128, 8)
        np.testing.assert_allclose(got, want.numpy(), rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="mode must be None, 'user' or 'item'"):
        trainer.export_onnx(tmp_path / "x.onnx", mode="users")


def test_int8_quantization_shrinks_the_model_and_reports_the_auc_drop(ctr):
    _, path, test, y = ctr
    int8 = path.with_name("deepfm.int8.onnx")
    assert quantize_model(path, int8) == str(int8)
    report = quantization_report(path, int8, test, y)
    assert report["size_quantized"] < report["size_fp32"]
    # Weights become int8 (biases and norms stay float); graph nodes weigh as much in a model this small.
    weight_bytes = [sum(i.ByteSize() for i in onnx.load(str(p)).graph.initializer) for p in (path, int8)]
    assert weight_bytes[1] < 0.45 * weight_bytes[0]
    assert "Gemm" not in {n.op_type for n in onnx.load(str(int8)).graph.node}  # MLP layers quantized too
    assert report["auc_fp32"] > 0.65  # the toy is learnable, so the AUC means something
    assert report["auc_drop"] == pytest.approx(report["auc_fp32"] - report["auc_quantized"])
    assert abs(report["auc_drop"]) < 0.02
    assert 0 < report["max_abs_diff"] < 0.1  # int8 weights move the logits, a little
    from sklearn.metrics import roc_auc_score

    assert report["auc_quantized"] == pytest.approx(roc_auc_score(y.numpy(), run_onnx(int8, test)["output"]))


def test_fp16_conversion_and_bad_arguments(ctr, tmp_path):
    _, path, test, _ = ctr
    fp16 = quantize_model(path, tmp_path / "half.onnx", mode="fp16")
    report = quantization_report(path, fp16, test)
    assert report["max_abs_diff"] < 1e-2 and "auc_drop" not in report
    with pytest.raises(ValueError, match="mode must be one of"):
        quantize_model(path, tmp_path / "q.onnx", mode="int4")
    with pytest.raises(ValueError, match="weight_type"):
        quantize_model(path, tmp_path / "q.onnx", weight_type="int4")
    with pytest.raises(FileNotFoundError, match="no ONNX model at"):
        quantize_model(tmp_path / "missing.onnx", tmp_path / "q.onnx")
    assert not (tmp_path / "q.onnx").exists()


def test_missing_onnx_names_the_extra(monkeypatch, tmp_path):
    import sys

    from trainhub.export import export_onnx

    monkeypatch.setitem(sys.modules, "onnx", None)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ImportError, match=r"trainhub\[onnx\]"):
        export_onnx(torch.nn.Linear(2, 2), tmp_path / "m.onnx")
    with pytest.raises(ImportError, match=r"trainhub\[onnx\]"):
        run_onnx(tmp_path / "m.onnx", {})
