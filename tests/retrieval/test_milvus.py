"""MilvusIndex on embedded milvus-lite against a numpy oracle, and the Torch-RecHub-shaped adapter."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from tests.retrieval.test_indexes import _data, _oracle
from trainhub.retrieval import IndexIntegrityError, Milvus, MilvusIndex


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    """One milvus-lite file for the module; each test uses its own collection in it."""
    return str(tmp_path_factory.mktemp("milvus") / "test.db")


@pytest.mark.parametrize("metric", ["ip", "cosine", "l2"])
def test_search_matches_brute_force_and_round_trips(db, metric, tmp_path):
    items, queries = _data()
    ids = np.arange(1000, 1200)
    with MilvusIndex(8, metric, uri=db, collection=f"oracle_{metric}") as index:
        index.add(items[:120], ids[:120])
        index.add(torch.from_numpy(items[120:]), torch.from_numpy(ids[120:]))
        assert len(index) == 200
        scores, found = index.search(torch.from_numpy(queries), k=10)
        index.save(tmp_path / "idx")
    want_scores, want_ids = _oracle(items, queries, metric, 10, ids)
    assert scores.dtype == torch.float32 and found.shape == (15, 10)
    assert (found.numpy() == want_ids).mean() > 0.99  # FLAT is exact
    np.testing.assert_allclose(scores.numpy(), want_scores, rtol=1e-4, atol=1e-4)
    with MilvusIndex.load(tmp_path / "idx") as loaded:  # into a fresh embedded database
        assert len(loaded) == 200 and loaded.metric == metric
        again_scores, again_ids = loaded.search(queries, k=10)
    assert torch.equal(again_ids, found) and torch.allclose(again_scores, scores, atol=1e-5)


def test_multi_interest_queries_and_padding(db):
    items = np.eye(4, dtype=np.float32) * np.array([[4], [3], [2], [1]], dtype=np.float32)
    with MilvusIndex(4, "ip", uri=db, collection="interests") as index:
        index.add(items)
        queries = np.array([[[1, 0, 0, 0], [0, 0, 1, 0]], [[0, 1, 0, 0], [0, 1, 0, 0]]], dtype=np.float32)
        scores, ids = index.search(queries, k=2)
        assert ids[0].tolist() == [0, 2] and scores[0].tolist() == pytest.approx([4.0, 2.0])
        assert ids[1, 0].item() == 1 and ids[1, 1].item() != 1
        _, ids = index.search(np.ones((1, 4), dtype=np.float32), k=6)
        assert ids[0, 4:].tolist() == [-1, -1]  # fewer items than k


def test_an_existing_collection_is_reused_or_replaced(db):
    with MilvusIndex(3, uri=db, collection="kept") as index:
        index.add(np.eye(3, dtype=np.float32))
    with MilvusIndex(3, uri=db, collection="kept", keep_existing=True) as index:
        assert len(index) == 3
    with pytest.raises(ValueError, match="dimension 3, not 5"):
        MilvusIndex(5, uri=db, collection="kept", keep_existing=True)
    with MilvusIndex(3, uri=db, collection="kept") as index:  # default: start empty
        assert len(index) == 0
    with pytest.raises(ValueError, match="collection must be"):
        MilvusIndex(3, uri=db, collection="bad-name")


def test_embedded_default_removes_its_temporary_database():
    index = MilvusIndex(2)
    folder = index._tmpdir
    index.add(np.eye(2, dtype=np.float32))
    assert index.search(np.array([[0.0, 1.0]]), k=1)[1].tolist() == [[1]]
    index.close()
    assert not __import__("os").path.exists(folder)


def test_saved_folder_is_verified_on_load(db, tmp_path):
    with MilvusIndex(4, uri=db, collection="verified") as index:
        index.add(np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32))
        index.save(tmp_path / "idx")
    vectors = tmp_path / "idx" / "vectors.npy"
    vectors.write_bytes(vectors.read_bytes()[:-16])
    with pytest.raises(IndexIntegrityError, match="vectors.npy has .* bytes"):
        MilvusIndex.load(tmp_path / "idx")


def test_torch_rechub_adapter_returns_lists_of_squared_distances(db):
    rng = np.random.default_rng(1)
    items, queries = rng.normal(size=(60, 8)).astype(np.float32), rng.normal(size=(4, 8)).astype(np.float32)
    engine = Milvus(dim=8, uri=db)
    try:
        engine.fit(torch.from_numpy(items))
        idx, dist = engine.query(queries, 5)
        squared = ((queries[:, None, :] - items[None]) ** 2).sum(-1)
        assert isinstance(idx, list) and isinstance(idx[0], list) and len(idx) == 4
        assert idx == np.argsort(squared, axis=1)[:, :5].tolist()
        np.testing.assert_allclose(dist, np.sort(squared, axis=1)[:, :5], rtol=1e-4, atol=1e-4)
        engine.fit(items[:10])  # fitting again replaces the contents, ids restart at 0
        assert max(max(row) for row in engine.query(queries[0], 20)[0]) == 9
        assert "Milvus(dim=8" in str(engine) and engine.index.collection == "rechub"
        hits = [[{"id": 3, "distance": 0.5}, {"id": 1, "distance": 0.7}]]
        assert Milvus.process_result(hits) == ([[3, 1]], [[0.5, 0.7]])
    finally:
        engine.close()


def test_unreachable_server_is_named():
    with pytest.raises(ConnectionError, match=r"cannot open Milvus at http://127\.0\.0\.1:1: .*uri='file\.db'"):
        Milvus(dim=4, host="127.0.0.1", port=1, timeout=2)


def test_missing_pymilvus_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pymilvus", None)
    with pytest.raises(ImportError, match=r"trainhub\[milvus\]"):
        MilvusIndex(4)
