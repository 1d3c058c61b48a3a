"""Every index against a numpy brute-force oracle; save/load round trips; multi-interest merging."""

import sys

import numpy as np
import pytest
import torch

from trainhub.retrieval import AnnoyIndex, FaissIndex, TorchIndex


def _data(seed=0, n=200, d=8, q=15):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)).astype(np.float32), rng.normal(size=(q, d)).astype(np.float32)


def _oracle(items, queries, metric, k, ids):
    if metric == "cosine":
        items = items / np.linalg.norm(items, axis=1, keepdims=True)
        queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    if metric == "l2":
        scores = -((queries[:, None, :] - items[None]) ** 2).sum(-1)
    else:
        scores = queries @ items.T
    order = np.argsort(-scores, axis=1)[:, :k]
    return np.take_along_axis(scores, order, 1), ids[order]


BACKENDS = {
    "torch": lambda d, m: TorchIndex(d, m, chunk_size=4),
    "faiss": lambda d, m: FaissIndex(d, m),
    "annoy": lambda d, m: AnnoyIndex(d, m, n_trees=50, search_k=20000),
}


@pytest.mark.parametrize("metric", ["ip", "cosine", "l2"])
@pytest.mark.parametrize("backend", list(BACKENDS))
def test_search_matches_brute_force_and_round_trips(backend, metric, tmp_path):
    items, queries = _data()
    ids = np.arange(1000, 1200)
    index = BACKENDS[backend](8, metric)
    index.add(items[:120], ids[:120])
    index.add(torch.from_numpy(items[120:]), torch.from_numpy(ids[120:]))  # tensors too, in two calls
    assert len(index) == 200
    scores, found = index.search(torch.from_numpy(queries), k=10)
    want_scores, want_ids = _oracle(items, queries, metric, 10, ids)
    assert scores.dtype == torch.float32 and found.dtype == torch.int64 and found.shape == (15, 10)
    if backend == "annoy":  # approximate: most of the true neighbours
        overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found.numpy(), want_ids)])
        assert overlap > 0.9
    else:
        assert (found.numpy() == want_ids).mean() > 0.99
        np.testing.assert_allclose(scores.numpy(), want_scores, rtol=1e-4, atol=1e-4)
    index.save(tmp_path / "idx")
    loaded = type(index).load(tmp_path / "idx")
    again_scores, again_ids = loaded.search(queries, k=10)
    assert torch.equal(again_ids, found)
    assert torch.allclose(again_scores, scores)
    assert not any(p.suffix in (".pkl", ".pickle") for p in (tmp_path / "idx").iterdir())


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_multi_interest_queries_take_best_interest_once(backend):
    items = np.eye(4, dtype=np.float32) * np.array([[4], [3], [2], [1]], dtype=np.float32)
    index = BACKENDS[backend](4, "ip")
    index.add(items)
    queries = np.array([[[1, 0, 0, 0], [0, 0, 1, 0]],  # user 0: interests towards item 0 and item 2
                        [[0, 1, 0, 0], [0, 1, 0, 0]]], dtype=np.float32)  # duplicate interests
    scores, ids = index.search(queries, k=2)
    assert ids[0].tolist() == [0, 2] and scores[0].tolist() == pytest.approx([4.0, 2.0])
    assert ids[1, 0].item() == 1 and scores[1, 0].item() == pytest.approx(3.0)
    assert ids[1, 1].item() != 1  # the item found by both interests appears once


def test_k_larger_than_index_pads_with_minus_one():
    index = TorchIndex(2)
    index.add(np.eye(2, dtype=np.float32))
    scores, ids = index.search(np.ones((1, 2), dtype=np.float32), k=4)
    assert ids.tolist() == [[0, 1, -1, -1]] and torch.isinf(scores[0, 2:]).all()


def test_bad_inputs_are_named():
    index = TorchIndex(3)
    with pytest.raises(ValueError, match="empty"):
        index.search(np.ones((1, 3)), 1)
    with pytest.raises(ValueError, match="dimension 2"):
        index.add(np.ones((2, 2)))
    with pytest.raises(ValueError, match="row 1"):
        index.add(np.array([[0, 0, 0], [np.nan, 0, 0]]))
    with pytest.raises(ValueError, match="metric"):
        TorchIndex(3, metric="hamming")
    index.add(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"\[Q, 3\]"):
        index.search(np.ones((1, 4)), 1)
    with pytest.raises(ValueError, match="'torch' index, not 'faiss'"):
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            index.save(tmp)
            FaissIndex.load(tmp)


def test_missing_backend_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)
    monkeypatch.setitem(sys.modules, "annoy", None)
    with pytest.raises(ImportError, match=r"trainhub\[faiss\]"):
        FaissIndex(4)
    with pytest.raises(ImportError, match=r"trainhub\[annoy\]"):
        AnnoyIndex(4)


def test_a_failed_save_keeps_the_previous_index(tmp_path, monkeypatch):
    import numpy as np

    from trainhub.retrieval import TorchIndex

    old = TorchIndex(dim=3)
    old.add(np.eye(3, dtype=np.float32))
    old.save(tmp_path / "idx")
    new = TorchIndex(dim=3)
    new.add(np.ones((5, 3), dtype=np.float32))

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "save", broken)
    with pytest.raises(OSError):
        new.save(tmp_path / "idx")
    monkeypatch.undo()
    assert len(TorchIndex.load(tmp_path / "idx")) == 3
    assert [p.name for p in tmp_path.iterdir()] == ["idx"]  # no half-written folder left behind
    new.save(tmp_path / "idx")
    assert len(TorchIndex.load(tmp_path / "idx")) == 5
