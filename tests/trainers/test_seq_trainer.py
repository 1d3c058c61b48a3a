"""SeqTrainer: Torch-RecHub's API and semantics, the engine's stopping/resume/DDP, prediction, export.

Run as ``python -m tests.trainers.test_seq_trainer ddp OUT`` under torchrun, this module is also the
worker of the two-process test (each rank saves what it saw to ``OUT/rank<r>.pt``).
"""

from __future__ import annotations

import inspect
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from tests.tasks.test_seq import ForwardOnly, TinyNextItem
from trainhub.data import SequenceDataGenerator, interaction_sequences
from trainhub.engine import load_weights, unwrap_model
from trainhub.trainers import SeqTrainer

REPO = Path(__file__).resolve().parents[2]
RECHUB_PYTHON = REPO / "bench" / ".rechub-venv" / "bin" / "python"

UPSTREAM_SIGNATURE = [
    ("model", inspect.Parameter.empty), ("optimizer_fn", torch.optim.Adam), ("optimizer_params", None),
    ("scheduler_fn", None), ("scheduler_params", None), ("n_epoch", 10), ("earlystop_patience", 10),
    ("device", "cpu"), ("gpus", None), ("model_path", "./"), ("loss_type", "cross_entropy"), ("loss_params", None),
    ("model_logger", None),
]


def toy_log(num_users: int = 40, seed: int = 0) -> pd.DataFrame:
    """Users walk a ring of 20 items with steps of 1 or 2: the next item is learnable from the last."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(num_users):
        item, step = int(rng.integers(0, 20)), int(rng.integers(1, 3))
        for t in range(int(rng.integers(5, 14))):
            rows.append((user, 100 + item, 1_000 + 90 * t + int(rng.integers(0, 30))))
            item = (item + step) % 20
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])


def toy_data(max_seq_len: int = 12, **kw):
    return interaction_sequences(toy_log(), max_seq_len=max_seq_len, **kw)


def make_trainer(path, vocab_size, loss_type="cross_entropy", seed=0, **kw):
    torch.manual_seed(seed)
    model = kw.pop("model", None) or TinyNextItem(vocab_size, dim=16, max_seq_len=12, dropout=kw.pop("dropout", 0.0))
    kw.setdefault("optimizer_params", {"lr": 0.03, "weight_decay": 0.0})
    return SeqTrainer(model, n_epoch=kw.pop("n_epoch", 4), model_path=str(path), loss_type=loss_type,
                      progress=False, seed=seed, **kw)


# -- Torch-RecHub API -----------------------------------------------------------------------------------------
def test_constructor_matches_torch_rechub_090():
    params = list(inspect.signature(SeqTrainer.__init__).parameters.values())[1:]
    assert [(p.name, p.default) for p in params[:len(UPSTREAM_SIGNATURE)]] == UPSTREAM_SIGNATURE
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params[len(UPSTREAM_SIGNATURE):]
               if p.kind is not inspect.Parameter.VAR_KEYWORD)


@pytest.mark.skipif(not RECHUB_PYTHON.exists(), reason="needs Torch-RecHub's venv (bench/.rechub-venv)")
def test_constructor_matches_the_installed_torch_rechub():
    code = ("import inspect, json; from torch_rechub.trainers.seq_trainer import SeqTrainer; "
            "ps = list(inspect.signature(SeqTrainer.__init__).parameters.values())[1:]; "
            "print(json.dumps([[p.name, repr(p.default)] for p in ps]))")
    out = subprocess.run([str(RECHUB_PYTHON), "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    upstream = json.loads(out.stdout.strip().splitlines()[-1])
    ours = [[p.name, repr(p.default)] for p in list(inspect.signature(SeqTrainer.__init__).parameters.values())[1:]]
    assert ours[:len(upstream)] == upstream


def test_upstream_next_token_loss_test_passes():
    """Torch-RecHub's own tests/test_hstu_model.py cases for the trainer."""
    trainer = SeqTrainer(torch.nn.Linear(1, 1), device="cpu", loss_params={"ignore_index": 0, "reduction": "sum"},
                         progress=False)
    loss = trainer._compute_next_token_loss(torch.zeros(1, 4, 10), torch.tensor([[0, 0, 5, 6]]), torch.tensor([7]))
    assert torch.allclose(loss, torch.tensor(2.0 * math.log(9.0)), atol=1e-6)
    assert trainer.loss_fn.ignore_index == 0
    sampled = SeqTrainer(torch.nn.Linear(1, 1), loss_type="sampled_softmax", progress=False)
    full = sampled._compute_next_token_loss(torch.zeros(1, 4, 10), torch.tensor([[0, 0, 5, 6]]), torch.tensor([7]))
    assert torch.allclose(full, torch.tensor(math.log(9.0)))  # the full softmax on full logits (mean)


def test_train_one_epoch_on_upstream_style_batches(tmp_path):
    torch.manual_seed(0)
    model = TinyNextItem(20, max_seq_len=8)
    tokens = torch.randint(1, 20, (4, 8))
    tokens[:, -2:] = 0  # a PAD tail, as in upstream's test
    loader = DataLoader(TensorDataset(tokens, torch.zeros_like(tokens), torch.zeros(4, 8, dtype=torch.long),
                                      torch.randint(1, 20, (4, 1))), batch_size=2)
    trainer = SeqTrainer(model, n_epoch=1, model_path=str(tmp_path), progress=False)
    loss = trainer.train_one_epoch(loader)
    assert loss > 0 and math.isfinite(loss)
    # trainhub's SequenceDataGenerator (Torch-RecHub's name and batches) feeds it too
    (dl,) = SequenceDataGenerator(tokens.numpy(), np.tile(np.arange(8), (4, 1)), np.arange(1, 5),
                                  np.zeros((4, 8))).generate_dataloader(batch_size=2)
    assert math.isfinite(trainer.train_one_epoch(dl))


def test_fit_returns_upstream_history_keeps_the_best_weights_and_learns(tmp_path):
    data = toy_data()
    train_dl, val_dl, test_dl = data.dataloaders(batch_size=8, seed=0)
    trainer = make_trainer(tmp_path, data.vocab_size, n_epoch=6, ks=(1, 5, 10))
    before = trainer.evaluate_all(trainer.model, test_dl)
    history = trainer.fit(train_dl, val_dl)
    assert {"train_loss", "val_loss", "val_accuracy", "val_ndcg@10", "val_hr@5"} <= set(history)
    assert len(history["train_loss"]) == 6 and history["train_loss"][-1] < history["train_loss"][0]
    result = trainer.fit_result
    assert trainer.early_stopper.monitor == "ndcg@10" and trainer.early_stopper.mode == "max"
    best = int(np.argmax(history["val_ndcg@10"]))
    assert result.best_epoch == best
    # the model holds, and model.pth / best.safetensors store, the best epoch's weights
    assert trainer.evaluate_all(trainer.model, val_dl)["ndcg@10"] == pytest.approx(history["val_ndcg@10"][best])
    saved = torch.load(tmp_path / "model.pth", weights_only=True)
    assert all(torch.equal(saved[k], v) for k, v in trainer.model.state_dict().items())
    assert all(torch.equal(load_weights(tmp_path / "best.safetensors")[k], v) for k, v in saved.items())
    after = trainer.evaluate_all(trainer.model, test_dl)
    assert after["ndcg@10"] > before["ndcg@10"] + 0.1
    loss, accuracy = trainer.evaluate(test_dl)  # upstream's call
    assert (loss, accuracy) == trainer.evaluate(trainer.model, test_dl) == (after["loss"], after["top1_accuracy"])


@pytest.mark.parametrize("loss_type", ["nce", "sampled_softmax"])
def test_other_objectives_learn(tmp_path, loss_type):
    data = toy_data()
    train_dl, val_dl, test_dl = data.dataloaders(batch_size=8, seed=0)
    params = {"num_negatives": 6, "in_batch_negatives": 6} if loss_type == "sampled_softmax" else None
    trainer = make_trainer(tmp_path, data.vocab_size, loss_type, n_epoch=5, loss_params=params)
    before = trainer.evaluate_all(trainer.model, test_dl)["ndcg@10"]
    trainer.fit(train_dl, val_dl)
    assert trainer.evaluate_all(trainer.model, test_dl)["ndcg@10"] > before + 0.1


def test_monitor_and_loss_choices_are_checked(tmp_path):
    with pytest.raises(ValueError, match="loss_type must be one of"):
        SeqTrainer(TinyNextItem(10), loss_type="bpr", model_path=str(tmp_path))
    data = toy_data()
    train_dl, val_dl, _ = data.dataloaders(batch_size=8)
    trainer = make_trainer(tmp_path, data.vocab_size, earlystop_monitor="auc")
    with pytest.raises(ValueError, match="early stopping monitors 'auc'"):
        trainer.fit(train_dl, val_dl)
    by_loss = make_trainer(tmp_path, data.vocab_size, earlystop_monitor="loss", n_epoch=1)
    assert by_loss.early_stopper.mode == "min"


# -- resume ------------------------------------------------------------------------------------------------
class Interrupted(Exception):
    pass


def test_resume_after_an_interruption_gives_identical_weights(tmp_path):
    """Sampled softmax and dropout draw random numbers every step: their streams come back from last.ckpt."""
    data = toy_data()
    kwargs = dict(loss_type="sampled_softmax", n_epoch=3, dropout=0.2,
                  loss_params={"num_negatives": 5, "in_batch_negatives": 4})

    def run(path, resume=False, stop_at=None):
        train_dl, val_dl, _ = data.dataloaders(batch_size=8, seed=3)
        trainer = make_trainer(path, data.vocab_size, resume=resume, seed=0 if not resume else 5, **kwargs)
        if stop_at is not None:
            step, calls = trainer.task.training_step, [0]

            def interrupted(model, batch):
                calls[0] += 1
                if calls[0] == stop_at:
                    raise Interrupted
                return step(model, batch)

            trainer.task.training_step = interrupted
        trainer.fit(train_dl, val_dl)
        return trainer

    straight = run(tmp_path / "straight")
    steps_per_epoch = math.ceil(len(data.train) / 8)
    with pytest.raises(Interrupted):
        run(tmp_path / "cut", stop_at=steps_per_epoch + 2)  # in the middle of the second epoch
    assert torch.load(tmp_path / "cut" / "last.ckpt", weights_only=True)["state"]["epoch"] == 1
    resumed = run(tmp_path / "cut", resume=True)
    for name, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name
    assert resumed.fit_result.history == straight.fit_result.history


# -- prediction ---------------------------------------------------------------------------------------------
def test_predict_top_k_filters_history_and_speaks_raw_ids(tmp_path):
    data = toy_data()
    train_dl, val_dl, test_dl = data.dataloaders(batch_size=8, seed=0)
    trainer = make_trainer(tmp_path, data.vocab_size, n_epoch=3)
    trainer.fit(train_dl, val_dl)
    ids, scores = trainer.predict(trainer.model, test_dl, k=5, return_scores=True)
    tokens = torch.cat([b[0] for b in test_dl])
    assert ids.shape == (len(data.test), 5) and (scores[:, :-1] >= scores[:, 1:]).all()
    with torch.no_grad():
        full = trainer.model(tokens, torch.cat([b[2] for b in test_dl]))[:, -1]
    full[:, 0] = -np.inf
    full.scatter_(1, tokens, -np.inf)
    assert torch.equal(ids, full.topk(5).indices)
    assert torch.equal(trainer.predict(trainer.model, tokens[:3], k=5, exclude_history=True), ids[:3])
    # raw ids in and out; an unknown item is dropped from the history, never an index error
    history = data.vocab.decode(tokens[0][tokens[0] != 0]).tolist()
    raw = trainer.predict(trainer.model, [history + ["never-seen"]], k=5, vocab=data.vocab)
    assert raw == [data.vocab.decode(ids[0]).tolist()]
    with pytest.raises(ValueError, match="k must be a positive integer"):
        trainer.predict(trainer.model, tokens, k=0)


def test_forward_only_models_train_and_predict(tmp_path):
    data = toy_data()
    train_dl, val_dl, test_dl = data.dataloaders(batch_size=8, seed=0)
    torch.manual_seed(0)
    trainer = make_trainer(tmp_path, data.vocab_size, model=ForwardOnly(data.vocab_size, dim=16), n_epoch=2)
    history = trainer.fit(train_dl, val_dl)
    assert len(history["val_ndcg@10"]) == 2
    assert trainer.predict(trainer.model, test_dl, k=3).shape == (len(data.test), 3)


# -- export and drawing ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("last_position", [False, True])
def test_export_onnx_matches_pytorch_on_other_batch_sizes_and_lengths(tmp_path, last_position):
    pytest.importorskip("onnx", reason="onnx is not installed")
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    torch.manual_seed(0)
    model = TinyNextItem(30, max_seq_len=16, time_scale=0.1)
    trainer = SeqTrainer(model, model_path=str(tmp_path), progress=False)
    path = tmp_path / "seq.onnx"
    assert trainer.export_onnx(str(path), seq_length=8, last_position=last_position) is True
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["seq_tokens", "seq_time_diffs"]
    for batch, length in ((1, 3), (5, 16)):
        tokens = torch.randint(1, 30, (batch, length))
        tokens[0, :1] = 0
        diffs = torch.randint(0, 5000, (batch, length)).float()
        (got,) = session.run(None, {"seq_tokens": tokens.numpy(), "seq_time_diffs": diffs.numpy()})
        with torch.no_grad():
            expected = model(tokens, diffs)
        expected = expected[:, -1] if last_position else expected
        np.testing.assert_allclose(got, expected.numpy(), rtol=1e-4, atol=1e-5)


def test_visualization_draws_the_sequence_model(tmp_path):
    pytest.importorskip("torchview", reason="torchview is not installed")
    trainer = SeqTrainer(TinyNextItem(30, max_seq_len=16), model_path=str(tmp_path), progress=False)
    graph = trainer.visualization(seq_length=6, depth=1)
    assert graph is not None


# -- a generative model from trainhub.models.generative, when it is there ---------------------------------------
def test_hstu_trains_from_an_interaction_log(tmp_path):
    try:
        from trainhub.models.generative import HSTUModel
    except ImportError:
        pytest.skip("trainhub.models.generative.HSTUModel is not built yet")
    data = toy_data()
    train_dl, val_dl, test_dl = data.dataloaders(batch_size=8, seed=0)
    torch.manual_seed(0)
    model = HSTUModel(vocab_size=data.vocab_size, d_model=16, n_heads=2, n_layers=1, dqk=8, dv=8,
                                 max_seq_len=12, dropout=0.0, num_time_buckets=8)
    trainer = SeqTrainer(model, n_epoch=2, model_path=str(tmp_path), progress=False,
                         optimizer_params={"lr": 0.01, "weight_decay": 0.0})
    history = trainer.fit(train_dl, val_dl)
    assert all(math.isfinite(v) for v in history["train_loss"])
    assert trainer.predict(model, test_dl, k=5).shape == (len(data.test), 5)


# -- two processes ---------------------------------------------------------------------------------------------
def test_two_gloo_processes_give_the_metrics_of_one(tmp_path):
    from tests.engine import ddp_cases as cases

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "src"), str(REPO)]), OMP_NUM_THREADS="1",
               TRAINHUB_DIST_TIMEOUT="60")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2", "--rdzv_backend=c10d",
           f"--rdzv_endpoint=127.0.0.1:{cases.free_port()}", "--monitor_interval=0.2",
           "-m", "tests.trainers.test_seq_trainer", "ddp", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-4000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2))
    assert r0["history"] == r1["history"] and r0["metrics"] == r1["metrics"]
    assert torch.equal(r0["predict"], r1["predict"])
    assert r0["sparse_optimizer"] == "HybridOptimizer"  # row-wise Adam on the fused item table
    for name, value in r0["sparse_state"].items():
        assert torch.equal(value, r1["sparse_state"][name]), name
    # one process, the weights the two processes trained: the same whole-set metrics and predictions
    data = toy_data()
    _, _, test_dl = data.dataloaders(batch_size=8, seed=0)
    single = make_trainer(tmp_path / "single", data.vocab_size)
    unwrap_model(single.model).load_state_dict(torch.load(tmp_path / "ddp" / "model.pth", weights_only=True))
    metrics = single.evaluate_all(single.model, test_dl)
    assert metrics == pytest.approx(r0["metrics"], rel=1e-6)
    assert torch.equal(single.predict(single.model, test_dl, k=5), r0["predict"])
    # one optimizer step: DDP averages the two halves' gradients of a summed loss
    for name, value in one_step(tmp_path / "single_step", rows=8).items():
        torch.testing.assert_close(r0["one_step"][name], value, rtol=1e-5, atol=1e-6, msg=name)


def one_step(path, rows: int) -> dict:
    """One SGD step of a summed cross-entropy on 8 fixed sequences, fed ``rows`` at a time (the two
    processes get 4 each). DDP averages the ranks' gradients, so its step uses twice the rate."""
    data = toy_data()
    tokens, positions, diffs, targets = data.train.batch(range(8))
    loader = DataLoader(TensorDataset(tokens, positions, diffs, targets), batch_size=rows)
    lr = 0.1 if rows == 8 else 0.2
    trainer = make_trainer(path, data.vocab_size, optimizer_fn=torch.optim.SGD, optimizer_params={"lr": lr},
                           loss_params={"reduction": "sum"}, n_epoch=1)
    trainer.train_one_epoch(loader)
    return {k: v.detach().clone() for k, v in unwrap_model(trainer.model).state_dict().items()}


def _ddp_worker(out: Path) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    rank = int(os.environ["RANK"])
    data = toy_data()
    train_dl, val_dl, test_dl = data.dataloaders(batch_size=8, seed=0)
    trainer = make_trainer(out / "ddp", data.vocab_size, n_epoch=2)
    history = trainer.fit(train_dl, val_dl)
    result = {"history": history, "metrics": trainer.evaluate_all(trainer.model, test_dl),
              "predict": trainer.predict(trainer.model, test_dl, k=5), "one_step": one_step(out / "step", rows=4)}
    # sampled softmax on a row-sparse table: the row-wise optimizer keeps the ranks' tables equal
    torch.manual_seed(0)
    sparse = make_trainer(out / "sparse", data.vocab_size, "sampled_softmax", n_epoch=2,
                          model=TinyNextItem(data.vocab_size, dim=16, fused=True),
                          loss_params={"num_negatives": 5, "in_batch_negatives": 4})
    sparse.fit(train_dl, val_dl)
    result["sparse_state"] = {k: v.clone() for k, v in unwrap_model(sparse.model).state_dict().items()}
    result["sparse_optimizer"] = type(sparse.optimizer).__name__
    torch.save(result, out / f"rank{rank}.pt")
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "ddp":
    _ddp_worker(Path(sys.argv[2]))
