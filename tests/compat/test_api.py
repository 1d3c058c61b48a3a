"""Torch-RecHub's names with Torch-RecHub's semantics, checked against hand computations and the
engines themselves."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from trainhub.data import (
    MatchDataGenerator,
    PredictDataset,
    SequenceDataGenerator,
    TorchDataset,
    array_replace_with_dict,
    df_to_dict,
    gather_inbatch_logits,
    inbatch_negative_sampling,
)
from trainhub.features import SequenceFeature, SparseFeature
from trainhub.metrics.compat import topk_metrics
from trainhub.tasks import RegularizationLoss


# -- utils.data ----------------------------------------------------------------------------------
def test_torch_dataset_keeps_ragged_rows_for_a_custom_collate():
    x = {"hist": [[1], [1, 2], [3, 4, 5]]}
    ds = TorchDataset(x, [7, 8, 9])
    assert len(ds) == 3 and ds[1] == ({"hist": [1, 2]}, 8)
    pad = lambda batch: (torch.nn.utils.rnn.pad_sequence([torch.tensor(b[0]["hist"]) for b in batch],  # noqa: E731
                                                         batch_first=True), torch.tensor([b[1] for b in batch]))
    hist, y = next(iter(DataLoader(ds, batch_size=3, collate_fn=pad)))
    assert hist.tolist() == [[1, 0, 0], [1, 2, 0], [3, 4, 5]] and y.tolist() == [7, 8, 9]
    with pytest.raises(ValueError, match="different numbers of rows"):
        TorchDataset({"a": np.arange(3)}, [0, 1])
    assert PredictDataset({"a": np.arange(4), "b": np.ones(4)})[2] == {"a": 2, "b": 1.0}


def test_df_to_dict_stacks_equal_length_lists():
    df = pd.DataFrame({"hist": [[1, 2, 0], [3, 0, 0]], "ragged": [[1], [2, 3]], "id": [5, 6]})
    out = df_to_dict(df)
    assert out["hist"].shape == (2, 3) and out["hist"].dtype.kind == "i" and out["hist"][1, 0] == 3
    assert out["ragged"].shape == (2,) and out["ragged"][1] == [2, 3]
    assert out["id"].tolist() == [5, 6]


def test_array_replace_with_dict():
    assert array_replace_with_dict(np.array([[3, 1], [2, 3]]), {1: 10, 2: 20, 3: 30}).tolist() == [[30, 10], [20, 30]]
    with pytest.raises(KeyError, match=r"1 value\(s\) have no entry in the mapping \(4\)"):
        array_replace_with_dict(np.array([1, 4]), {1: 10, 2: 20})


def test_sequence_data_generator():
    n, length = 20, 5
    tokens = np.arange(n * length).reshape(n, length)
    gen = SequenceDataGenerator(tokens, np.tile(np.arange(length), (n, 1)), np.arange(n), np.zeros((n, length)))
    (loader,) = gen.generate_dataloader(batch_size=8, shuffle=False)
    seq, pos, dt, target = next(iter(loader))
    assert seq.shape == (8, 5) and seq.dtype == torch.long and target.tolist() == list(range(8))
    assert pos[0].tolist() == [0, 1, 2, 3, 4] and dt.shape == (8, 5)
    parts = gen.generate_dataloader(batch_size=4, split_ratio=(0.6, 0.2, 0.2))
    assert [len(p.dataset) for p in parts] == [12, 4, 4]
    seen = sorted(int(t) for p in parts for *_, targets in p for t in targets)
    assert seen == list(range(n))
    with pytest.raises(ValueError, match="targets has 19"):
        SequenceDataGenerator(tokens, tokens, np.arange(19), tokens)


# -- utils.match: in-batch negatives --------------------------------------------------------------
def test_inbatch_negative_sampling_random():
    scores = torch.zeros(6, 6)
    neg = inbatch_negative_sampling(scores, neg_ratio=3, generator=torch.Generator().manual_seed(0))
    assert neg.shape == (6, 3)
    for row, cols in enumerate(neg.tolist()):
        assert row not in cols and len(set(cols)) == 3
    again = inbatch_negative_sampling(scores, neg_ratio=3, generator=torch.Generator().manual_seed(0))
    other = inbatch_negative_sampling(scores, neg_ratio=3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(neg, again) and not torch.equal(neg, other)
    assert inbatch_negative_sampling(scores).shape == (6, 5)  # None -> every other column
    assert inbatch_negative_sampling(scores, neg_ratio=99).shape == (6, 5)
    # Uniform over the other columns: each appears about equally often.
    counts = torch.bincount(inbatch_negative_sampling(torch.zeros(2000, 2000), 1,
                                                      generator=torch.Generator().manual_seed(2)).reshape(-1) % 4)
    assert counts.min() > 400


def test_inbatch_hard_negatives_and_logits():
    scores = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 0.0]])
    neg = inbatch_negative_sampling(scores, neg_ratio=1, hard_negative=True)
    assert neg.squeeze(1).tolist() == [2, 2, 1]  # the best-scoring column other than the diagonal
    assert gather_inbatch_logits(scores, neg).tolist() == [[1.0, 3.0], [5.0, 6.0], [0.0, 8.0]]
    with pytest.raises(ValueError, match="square"):
        inbatch_negative_sampling(torch.zeros(3, 4))


def test_match_trainer_in_batch_step_leaves_gradients(tmp_path):
    from trainhub.models.matching import DSSM
    from trainhub.trainers import MatchTrainer

    rng = np.random.default_rng(0)
    x = {"user_id": rng.integers(0, 12, 64), "item_id": rng.integers(0, 24, 64),
         "hist_item_id": rng.integers(0, 24, (64, 6))}
    users = [SparseFeature("user_id", 12, embed_dim=8),
             SequenceFeature("hist_item_id", 24, embed_dim=8, pooling="mean", shared_with="item_id")]
    model = DSSM(users, [SparseFeature("item_id", 24, embed_dim=8)], user_params={"dims": [16]},
                 item_params={"dims": [16]})
    train_dl, _, _ = MatchDataGenerator(x, np.zeros(64)).generate_dataloader(x, {"item_id": np.arange(24)},
                                                                            batch_size=16)
    trainer = MatchTrainer(model, mode=0, in_batch_neg=True, in_batch_neg_ratio=3, sampler_seed=2, n_epoch=1,
                           device="cpu", model_path=tmp_path, progress=False)
    loss = trainer.train_one_epoch(train_dl, log_interval=100)
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert np.isfinite(loss) and all(g is not None for g in grads)
    assert any(float(g.abs().sum() if not g.is_sparse else g.coalesce().values().abs().sum()) > 0 for g in grads)


# -- basic.loss_func / basic.metric ---------------------------------------------------------------
def test_regularization_loss_matches_hand_computation():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(5, 3), nn.Linear(3, 2), nn.BatchNorm1d(2), nn.LayerNorm(2))
    model.register_parameter("extra", nn.Parameter(torch.randn(2, 2)))
    emb, lin = model[0].weight, model[1]
    dense = [lin.weight, lin.bias, model.extra]
    expected = (0.1 * emb.abs().sum() + 0.2 * emb.pow(2).sum()
                + sum(0.3 * p.abs().sum() + 0.4 * p.pow(2).sum() for p in dense))
    loss = RegularizationLoss(embedding_l1=0.1, embedding_l2=0.2, dense_l1=0.3, dense_l2=0.4)(model)
    assert torch.allclose(loss, expected)  # norm layers left out
    assert RegularizationLoss()(model) == 0.0
    loss.backward()
    assert emb.grad is not None and model[2].weight.grad is None


def test_regularization_reaches_trainhub_fused_tables():
    from trainhub.models.ranking import DeepFM

    sparse = [SparseFeature("a", 7, embed_dim=4), SparseFeature("b", 5, embed_dim=4)]
    model = DeepFM(sparse, sparse, {"dims": [4]})
    table = model.embedding.fused["d4"].weight
    only_tables = RegularizationLoss(embedding_l2=1.0)(model)
    assert torch.allclose(only_tables, table.pow(2).sum())


def test_topk_metrics_format_and_definitions():
    y_true = {"u1": [1, 2], "u2": [3]}
    y_pred = {"u1": [2, 9, 1], "u2": [7, 8, 9]}
    out = topk_metrics(y_true, y_pred, topKs=[1, 3])
    # u1: hits at ranks 1 and 3; u2: none. Hit is micro recall: 2 hits / 3 true items.
    ndcg_u1_3 = (1 + 1 / np.log2(4)) / (1 + 1 / np.log2(3))
    assert out["Hit"] == ["Hit@1: 0.3333", "Hit@3: 0.6667"]
    assert out["Recall"] == ["Recall@1: 0.25", "Recall@3: 0.5"]
    assert out["Precision"] == ["Precision@1: 0.5", f"Precision@3: {round(2 / 3 / 2, 4)}"]
    assert out["MRR"] == ["MRR@1: 0.5", "MRR@3: 0.5"]
    assert out["NDCG"] == ["NDCG@1: 0.5", f"NDCG@3: {round(ndcg_u1_3 / 2, 4)}"]
    assert topk_metrics({"u": [1]}, {"u": [1]}, topKs=[5])["Hit"] == ["Hit@5: 1.0"]  # fewer than K predictions
    with pytest.raises(ValueError, match="no prediction"):
        topk_metrics({"u": [1]}, {"v": [1]})


# -- data.convert / data.dataset -----------------------------------------------------------------
def test_pa_array_to_tensor():
    pa = pytest.importorskip("pyarrow")
    from trainhub.data import pa_array_to_tensor

    out = pa_array_to_tensor(pa.array([1, None, 3], type=pa.int16()))
    assert out.dtype == torch.float32 and np.allclose(out.tolist(), [1.0, np.nan, 3.0], equal_nan=True)
    assert pa_array_to_tensor(pa.array([True, False])).tolist() == [1.0, 0.0]
    assert pa_array_to_tensor(pa.array([], type=pa.null())).tolist() == []
    assert pa_array_to_tensor(pa.array([[1, 2], [3, 4]], type=pa.list_(pa.int64()))).tolist() == [[1, 2], [3, 4]]
    assert pa_array_to_tensor(pa.array([[]], type=pa.list_(pa.null()))).tolist() == [[]]
    with pytest.raises(TypeError, match="string"):
        pa_array_to_tensor(pa.array(["a"]))
    with pytest.raises(TypeError, match="lists of string"):
        pa_array_to_tensor(pa.array([["a"]]))
    with pytest.raises(ValueError, match="different lengths"):
        pa_array_to_tensor(pa.array([[1], [1, 2]]))


@pytest.mark.parametrize("num_workers", [0, 2])
def test_parquet_iterable_dataset_in_a_plain_dataloader(tmp_path, num_workers):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    from trainhub.data import ParquetIterableDataset

    paths = []
    for i, ids in enumerate((range(0, 7), range(7, 14), range(14, 21))):
        paths.append(str(tmp_path / f"part{i}.parquet"))
        pq.write_table(pa.table({"id": pa.array(list(ids)), "x": pa.array([0.5] * len(ids))}), paths[-1])
    ds = ParquetIterableDataset(paths, columns=["id"], batch_size=4)  # Torch-RecHub's positional signature
    seen = []
    for batch in DataLoader(ds, batch_size=None, num_workers=num_workers):
        assert isinstance(batch, dict) and set(batch) == {"id"} and len(batch["id"]) <= 4
        seen += batch["id"].tolist()
    assert sorted(seen) == list(range(21))


# -- utils.match engines ---------------------------------------------------------------------------
def test_annoy_adapter_matches_annoy():
    annoy = pytest.importorskip("annoy")
    from trainhub.retrieval import Annoy

    items = torch.randn(40, 6, generator=torch.Generator().manual_seed(0))
    for metric in ("angular", "euclidean", "dot"):
        engine = Annoy(metric=metric, n_trees=10)
        engine.fit(items)
        ref = annoy.AnnoyIndex(6, metric)
        ref.set_seed(0)
        for i, v in enumerate(items):
            ref.add_item(i, v.tolist())
        ref.build(10)
        ids, dist = engine.query(v=items[3], n=5)
        ref_ids, ref_dist = ref.get_nns_by_vector(items[3].tolist(), 5, include_distances=True)
        assert ids == ref_ids and np.allclose(dist, ref_dist, atol=1e-4), metric
        assert isinstance(ids, list) and isinstance(dist[0], float)
    assert len(engine.query(items[0].numpy(), 100)[0]) == 40  # fewer items than n: fewer results
    with pytest.raises(ValueError, match="manhattan"):
        Annoy(metric="manhattan")
    with pytest.raises(RuntimeError, match="before fit"):
        Annoy().query(items[0], 3)


def test_faiss_adapter_returns_faiss_distances():
    pytest.importorskip("faiss")
    from trainhub.retrieval import Faiss

    rng = np.random.default_rng(0)
    items, queries = rng.normal(size=(50, 8)).astype(np.float32), rng.normal(size=(3, 8)).astype(np.float32)
    l2 = Faiss(dim=8)
    l2.fit(items)
    ids, dist = l2.query(queries, 4)
    brute = ((queries[:, None, :] - items[None]) ** 2).sum(-1)
    assert ids == np.argsort(brute, axis=1)[:, :4].tolist()
    assert np.allclose(dist, np.sort(brute, axis=1)[:, :4], rtol=1e-4)
    ip = Faiss(dim=8, index_type="hnsw", metric="ip")
    ip.fit(items)
    ip.set_query_arguments(efSearch=64)
    ids, dist = ip.query(torch.from_numpy(queries[0]), 3)  # one vector: still [[...]]
    assert len(ids) == 1 and np.allclose(dist[0], np.sort(items @ queries[0])[::-1][:3], rtol=1e-4)
    with pytest.raises(ValueError, match="'hnsw'"):
        Faiss(dim=8, index_type="ivf")


# -- trainer.visualization -------------------------------------------------------------------------
def test_trainer_visualization(tmp_path):
    pytest.importorskip("torchview")
    import shutil

    from trainhub.models.ranking import DeepFM
    from trainhub.trainers import CTRTrainer

    sparse = [SparseFeature("a", 7, embed_dim=4), SparseFeature("b", 5, embed_dim=4)]
    trainer = CTRTrainer(DeepFM(sparse, sparse, {"dims": [4]}), model_path=tmp_path, progress=False)
    graph = trainer.visualization(depth=2)
    assert "Linear" in graph.visual_graph.source
    if shutil.which("dot"):
        trainer.visualization(save_path=str(tmp_path / "graph.png"))
        assert (tmp_path / "graph.png").stat().st_size > 0
