"""HSTU and SASRec with a row-sparse item table: the same gradients and optimizer steps as the dense
path, row-sparse gradients only for the rows a sampled-softmax step reads, Torch-RecHub's names."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from trainhub.models.generative import HSTUModel, SASRecModel
from trainhub.models.generative.item_table import ItemEmbedding
from trainhub.nn.fused_table import ROWWISE_ATTR
from trainhub.optim import HybridOptimizer, build_optimizer, set_sparse_embeddings
from trainhub.optim.rowwise import RowWiseAdam
from trainhub.tasks import NextItemTask
from trainhub.tasks.seq import next_tokens
from trainhub.trainers import SeqTrainer

VOCAB, LENGTH, BATCH = 400, 6, 4
MODELS = ("hstu", "sasrec")
SAMPLED = {"num_negatives": 6, "in_batch_negatives": 3}


def tiny(name: str, vocab: int = VOCAB, **kw):
    torch.manual_seed(0)
    if name == "hstu":
        return HSTUModel(vocab_size=vocab, d_model=16, n_heads=2, n_layers=2, dqk=8, dv=8, max_seq_len=LENGTH,
                         dropout=0.0, num_time_buckets=8, **kw)
    return SASRecModel(vocab_size=vocab, d_model=16, n_heads=2, n_layers=2, max_seq_len=LENGTH, dropout=0.0, **kw)


def twins(name: str, **kw):
    """The same weights twice: a dense model and one switched to row-sparse (as SeqTrainer does)."""
    dense = tiny(name, **kw)
    sparse = copy.deepcopy(dense)
    assert set_sparse_embeddings(sparse, True) == 1
    return dense, sparse


def make_batch(seed: int, vocab: int = VOCAB, batch: int = BATCH, length: int = LENGTH):
    """Left-padded ``(seq_tokens, seq_positions, seq_time_diffs, targets)``."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(1, vocab, (batch, length), generator=g)
    lengths = torch.randint(1, length + 1, (batch,), generator=g)
    tokens = tokens.masked_fill(torch.arange(length) < (length - lengths).unsqueeze(1), 0)
    diffs = torch.randint(0, 100_000, (batch, length), generator=g).sort(dim=1, descending=True).values
    diffs = diffs * (tokens != 0)
    return tokens, torch.zeros_like(tokens), diffs, torch.randint(1, vocab, (batch,), generator=g)


def item_params(model) -> dict[str, torch.Tensor]:
    """The model's item-indexed parameters (those that switch with the item table)."""
    names = ("token_embedding.weight", "output_bias", "output_projection.weight", "output_projection.bias")
    return {n: p for n, p in model.named_parameters() if n in names}


def loss_of(model, task, batch, seed: int = 7) -> torch.Tensor:
    torch.manual_seed(seed)  # the same negatives for every model
    return task.training_step(model, batch).loss


def touched_rows(task, batch, seed: int = 7) -> tuple[set[int], set[int]]:
    """(input token ids, candidate ids) of a sampled-softmax step seeded like :func:`loss_of`."""
    tokens, _, _, targets = batch
    labels = next_tokens(tokens, targets)
    torch.manual_seed(seed)
    negatives, _, _ = task.loss.sample(labels[labels != 0], VOCAB)
    return set(tokens.unique().tolist()), set(labels[labels != 0].tolist()) | set(negatives.tolist())


def dense_grad(p: torch.Tensor) -> torch.Tensor:
    return p.grad.to_dense() if p.grad.is_sparse else p.grad


# -- names and switching -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("tie", [True, False])
def test_names_are_torch_rechubs_and_a_bare_model_is_dense(name, tie):
    model = tiny(name, tie_embeddings=tie)
    assert isinstance(model.token_embedding, ItemEmbedding)
    keys = set(model.state_dict())
    assert "token_embedding.weight" in keys and not any(k.startswith("token_embedding.") and k != "token_embedding"
                                                         ".weight" for k in keys)
    head = {"output_bias"} if tie else {"output_projection.weight", "output_projection.bias"}
    assert head <= keys and set(dict(model.named_parameters())) == keys - {
        k for k, _ in model.named_buffers() if k in keys}
    assert model.token_embedding.weight.shape == (VOCAB, 16) and torch.equal(model.token_embedding.weight[0],
                                                                             torch.zeros(16))
    assert not any(getattr(p, ROWWISE_ATTR, False) for p in model.parameters())
    # a plain torch.optim optimizer trains a bare model
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss_of(model, NextItemTask("sampled_softmax", SAMPLED), make_batch(0)).backward()
    assert not any(p.grad.is_sparse for p in model.parameters() if p.grad is not None)
    optimizer.step()
    # state dicts move between the two kinds of table
    other = tiny(name, tie_embeddings=tie)
    set_sparse_embeddings(other, True)
    other.load_state_dict(model.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(other.state_dict().values(), model.state_dict().values()))


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("tie", [True, False])
def test_seq_trainer_switches_the_item_table_and_head_to_the_row_wise_optimizer(name, tie, tmp_path):
    model = tiny(name, tie_embeddings=tie)
    trainer = SeqTrainer(model, model_path=str(tmp_path), progress=False, loss_type="sampled_softmax")
    assert model.token_embedding.sparse_grad
    assert isinstance(trainer.optimizer, HybridOptimizer) and isinstance(trainer.optimizer.rowwise, RowWiseAdam)
    rowwise = {id(p) for g in trainer.optimizer.rowwise.param_groups for p in g["params"]}
    assert rowwise == {id(p) for p in item_params(model).values()}
    assert all(getattr(p, ROWWISE_ATTR) for p in item_params(model).values())
    dense = SeqTrainer(tiny(name, tie_embeddings=tie), model_path=str(tmp_path / "dense"), progress=False,
                       sparse_embeddings=False)
    assert not isinstance(dense.optimizer, HybridOptimizer)
    assert not any(getattr(p, ROWWISE_ATTR, False) for p in dense.model.parameters())


def test_under_several_processes_the_output_bias_stays_dense(monkeypatch):
    """The row-wise optimizers gather [rows, D] gradients across processes: a [V] bias is left to DDP."""
    from trainhub.models.generative import item_table

    monkeypatch.setattr(item_table, "_world_size", lambda: 2)
    for tie in (True, False):
        model = tiny("hstu", tie_embeddings=tie)
        set_sparse_embeddings(model, True)
        marked = {n for n, p in model.named_parameters() if getattr(p, ROWWISE_ATTR, False)}
        assert marked == ({"token_embedding.weight"} if tie else {"token_embedding.weight", "output_projection.weight"})


# -- sampled softmax: row-sparse gradients equal to the dense ones --------------------------------------------
@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("head", [{}, {"tie_embeddings": False}, {"score_norm": "l2", "temperature": 0.2}])
def test_sampled_softmax_gradients_equal_dense_and_reach_only_input_and_candidate_rows(name, head):
    dense, sparse = twins(name, **head)
    task = NextItemTask("sampled_softmax", SAMPLED)
    batch = make_batch(1)
    loss_dense, loss_sparse = loss_of(dense, task, batch), loss_of(sparse, task, batch)
    torch.testing.assert_close(loss_sparse, loss_dense, rtol=0, atol=1e-6)
    loss_dense.backward()
    loss_sparse.backward()
    inputs, candidates = touched_rows(task, batch)
    tied = head.get("tie_embeddings", True)
    for param_name, p in item_params(sparse).items():
        assert p.grad.is_sparse, param_name
        rows = set(p.grad.coalesce().indices()[0].tolist())
        if param_name == "token_embedding.weight":
            allowed = inputs | candidates if tied else inputs
        else:
            allowed = candidates
        assert rows <= allowed, param_name
    for (param_name, p), q in zip(sparse.named_parameters(), dense.parameters()):
        torch.testing.assert_close(dense_grad(p), q.grad, rtol=1e-5, atol=1e-7, msg=param_name)
    assert torch.equal(dense_grad(sparse.token_embedding.weight)[0], torch.zeros(16))  # PAD takes no update


@pytest.mark.parametrize("name", MODELS)
def test_candidate_scores_equal_full_columns_on_a_row_sparse_table(name):
    _, sparse = twins(name)
    tokens, _, diffs, _ = make_batch(2)
    hidden = sparse.encode(tokens, diffs)[:, -1]
    ids = torch.tensor([3, 17, 399, 3])
    torch.testing.assert_close(sparse.score(hidden, ids), sparse.score(hidden)[:, ids])
    own = torch.randint(1, VOCAB, (BATCH, 5))
    torch.testing.assert_close(sparse.score(hidden, own), sparse.score(hidden).gather(1, own))


# -- optimizer steps ------------------------------------------------------------------------------------------
def train(model, optimizer, task, batches) -> None:
    for i, batch in enumerate(batches):
        optimizer.zero_grad(set_to_none=True)
        loss_of(model, task, batch, seed=10 + i).backward()
        optimizer.step()
    flush = getattr(optimizer, "flush", None)
    if flush is not None:
        flush()


def assert_same_weights(a, b, rtol, atol):
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        if name.endswith("qkv.bias"):
            # SASRec's key bias shifts every score of a softmax row alike: its gradient is rounding
            # noise, which Adam scales up to full-size steps. Compare the query and value biases.
            d = p.shape[0] // 3
            p, q = torch.cat([p[:d], p[2 * d:]]), torch.cat([q[:d], q[2 * d:]])
        torch.testing.assert_close(p, q, rtol=rtol, atol=atol, msg=name)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("optimizer_fn, params", [(torch.optim.Adam, {"lr": 0.01}),
                                                  (torch.optim.AdamW, {"lr": 0.01, "weight_decay": 0.1}),
                                                  (torch.optim.Adagrad, {"lr": 0.05}),
                                                  (torch.optim.SGD, {"lr": 0.5})])
def test_one_sampled_softmax_step_equals_the_dense_optimizer(name, optimizer_fn, params):
    dense, sparse = twins(name)
    task = NextItemTask("sampled_softmax", SAMPLED)
    before = sparse.token_embedding.weight.detach().clone()
    train(dense, optimizer_fn(dense.parameters(), **params), task, [make_batch(3)])
    optimizer = build_optimizer(sparse.parameters(), optimizer_fn, params)
    assert isinstance(optimizer, HybridOptimizer)
    train(sparse, optimizer, task, [make_batch(3)])
    assert_same_weights(sparse, dense, rtol=1e-5, atol=1e-6)
    if optimizer_fn is not torch.optim.AdamW:  # AdamW's decay moves every row, in both
        moved = set((sparse.token_embedding.weight != before).any(dim=1).nonzero().reshape(-1).tolist())
        inputs, candidates = touched_rows(task, make_batch(3), seed=10)
        assert moved and moved <= (inputs | candidates) - {0}


@pytest.mark.parametrize("name", MODELS)
def test_several_steps_follow_dense_adam_with_catch_up(name):
    """RowWiseAdam's default: rows a batch skips are moved as dense Adam moves them (momentum),
    applied when they are read again or flushed: dense Adam up to rounding and eps."""
    dense, sparse = twins(name, tie_embeddings=True)
    task = NextItemTask("sampled_softmax", SAMPLED)
    batches = [make_batch(s) for s in (4, 5, 6, 4)]
    train(dense, torch.optim.Adam(dense.parameters(), lr=0.01), task, batches)
    train(sparse, build_optimizer(sparse.parameters(), torch.optim.Adam, {"lr": 0.01}), task, batches)
    assert_same_weights(sparse, dense, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_lazy_row_wise_adam_is_lazy_adam(name):
    """``catch_up=False`` is LazyAdam (TensorFlow, TorchRec): the rows in a step's sparse gradient
    (input tokens and candidates) take Adam's update with their own moments and the global step's
    bias correction; other rows and their moments stand still."""
    reference, sparse = twins(name)
    task = NextItemTask("sampled_softmax", SAMPLED)
    batches = [make_batch(s) for s in (4, 5, 6)]
    lr, (beta1, beta2), eps = 0.01, (0.9, 0.999), 1e-8
    items = item_params(sparse)
    dense_params = [p for p in sparse.parameters() if all(p is not q for q in items.values())]
    optimizer = HybridOptimizer(torch.optim.Adam(dense_params, lr=lr),
                                RowWiseAdam(list(items.values()), lr=lr, catch_up=False))
    train(sparse, optimizer, task, batches)
    # the reference: dense gradients, Adam for the encoder, LazyAdam written out for the item rows
    ref_items = item_params(reference)
    ref_dense = [p for p in reference.parameters() if all(p is not q for q in ref_items.values())]
    adam = torch.optim.Adam(ref_dense, lr=lr)
    moments = {n: (torch.zeros_like(p), torch.zeros_like(p)) for n, p in ref_items.items()}
    for step, batch in enumerate(batches, start=1):
        adam.zero_grad(set_to_none=True)
        for p in ref_items.values():
            p.grad = None
        loss_of(reference, task, batch, seed=10 + step - 1).backward()
        adam.step()
        inputs, candidates = touched_rows(task, batch, seed=10 + step - 1)
        with torch.no_grad():
            for n, p in ref_items.items():
                rows = torch.tensor(sorted(inputs | candidates if n == "token_embedding.weight" else candidates))
                m, v = moments[n]
                g = p.grad[rows]
                m[rows] = beta1 * m[rows] + (1 - beta1) * g
                v[rows] = beta2 * v[rows] + (1 - beta2) * g * g
                denom = v[rows].sqrt() / math.sqrt(1 - beta2**step) + eps
                p[rows] -= lr / (1 - beta1**step) * m[rows] / denom
    assert_same_weights(sparse, reference, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("tie", [True, False])
def test_full_softmax_on_a_row_sparse_table_is_dense_adam(name, tie):
    """Full softmax scores every item: the gradient of the tied (row-sparse) table is dense, and the
    row-wise optimizer's dense rule is Adam's own, L2 decay included. Untied, only the output
    projection is read whole; the input table's gradient stays row-sparse."""
    dense, sparse = twins(name, tie_embeddings=tie)
    task = NextItemTask("cross_entropy")
    loss_of(sparse, task, make_batch(1)).backward()
    for param_name, p in item_params(sparse).items():
        assert p.grad.is_sparse == (param_name == "token_embedding.weight" and not tie), param_name
    sparse.zero_grad(set_to_none=True)
    batches = [make_batch(s) for s in (1, 2, 3)]
    # untied, input rows a batch skips are caught up (see the catch-up test): exact without L2 decay
    params = {"lr": 0.01, "weight_decay": 1e-3 if tie else 0.0}
    train(dense, torch.optim.Adam(dense.parameters(), **params), task, batches)
    train(sparse, build_optimizer(sparse.parameters(), torch.optim.Adam, params), task, batches)
    assert_same_weights(sparse, dense, rtol=1e-5, atol=1e-6)


# -- the trainer end to end, and export ---------------------------------------------------------------------
def loader(vocab: int = 60, rows: int = 16, seed: int = 0):
    tokens, positions, diffs, targets = make_batch(seed, vocab=vocab, batch=rows)
    return DataLoader(TensorDataset(tokens, positions, diffs, targets), batch_size=8)


@pytest.mark.parametrize("name", MODELS)
def test_seq_trainer_fits_with_sampled_softmax_and_exports_to_onnx(name, tmp_path):
    model = tiny(name, vocab=60)
    trainer = SeqTrainer(model, n_epoch=2, model_path=str(tmp_path), progress=False, seed=0,
                         loss_type="sampled_softmax", loss_params=SAMPLED, ks=(5,),
                         optimizer_params={"lr": 0.01, "weight_decay": 1e-5})
    history = trainer.fit(loader(), loader(seed=1))
    assert all(math.isfinite(v) for v in history["train_loss"]) and model.token_embedding.sparse_grad
    assert trainer.predict(model, loader(seed=2), k=3).shape == (16, 3)
    pytest.importorskip("onnx", reason="onnx is not installed")
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    assert trainer.export_onnx(tmp_path / "model.onnx", seq_length=LENGTH) is True  # checked in onnxruntime


def test_resume_restores_the_row_wise_state_of_table_and_bias(tmp_path):
    """Two epochs straight equal one epoch, then a resumed second (row-wise Adam's moments and
    step counts of the item table and the output bias come back from last.ckpt)."""
    def trainer(path, n_epoch, resume=False):
        return SeqTrainer(tiny("hstu", vocab=60), n_epoch=n_epoch, model_path=str(path), progress=False, seed=0,
                          resume=resume, loss_type="sampled_softmax", loss_params=SAMPLED, ks=(5,))

    straight = trainer(tmp_path / "straight", 2)
    straight.fit(loader(), loader(seed=1))
    first = trainer(tmp_path / "cut", 1)
    first.fit(loader(), loader(seed=1))
    resumed = trainer(tmp_path / "cut", 2, resume=True)
    resumed.fit(loader(), loader(seed=1))
    assert isinstance(resumed.optimizer, HybridOptimizer)
    for name, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name
