"""Streaming Parquet: batches, epochs, rank/worker partitions, trainers, encoding, and errors.

The oracle throughout is the in-memory path (DictDataset / CategoricalEncoder on a DataFrame).
"""

import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from trainhub.data import (
    CategoricalEncoder,
    DictDataset,
    ParquetIterableDataset,
    ParquetLoader,
    encode_to_parquet,
    make_loader,
)
from trainhub.features import SequenceFeature, SparseFeature
from trainhub.models import get_model_entry, toy
from trainhub.models.matching import DSSM
from trainhub.trainers import CTRTrainer, MatchTrainer, MTLTrainer


def to_arrow(values, variable_lists=False):
    values = values.numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
    if values.ndim == 1:
        return pa.array(values)
    if variable_lists:  # strip the trailing padding: lists of different lengths
        return pa.array([row[: int(np.flatnonzero(row).max(initial=-1)) + 1].tolist() for row in values],
                        type=pa.list_(pa.int64()))
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])


def write_parquet(folder, columns, num_files=3, row_group_size=50, variable_lists=False):
    """Columns ``{name: [N] or [N, L]}`` split over ``num_files`` files; returns the folder."""
    os.makedirs(folder, exist_ok=True)
    n = len(next(iter(columns.values())))
    bounds = np.linspace(0, n, num_files + 1).astype(int)
    for i in range(num_files):
        part = {k: to_arrow(v[bounds[i]:bounds[i + 1]], variable_lists) for k, v in columns.items()}
        pq.write_table(pa.table(part), os.path.join(folder, f"part-{i}.parquet"), row_group_size=row_group_size)
    return str(folder)


def table_rows(n=400, seed=0):
    rng = np.random.default_rng(seed)
    return {"a": np.arange(n), "f": rng.random(n), "i32": rng.integers(0, 9, n).astype(np.int32),
            "seq": rng.integers(1, 9, (n, 4)), "y1": rng.integers(0, 2, n), "y2": rng.random(n).astype(np.float32)}


# -- reading ---------------------------------------------------------------------------------
def test_batches_equal_the_in_memory_batches_in_file_order(tmp_path):
    cols = table_rows()
    folder = write_parquet(tmp_path / "d", cols)
    ds = ParquetIterableDataset(folder, batch_size=64, label_columns="y1")
    x_mem = {k: v for k, v in cols.items() if k != "y1"}
    expected = list(make_loader(DictDataset(x_mem, cols["y1"]), batch_size=64))
    got = list(ds)
    assert len(ds) == len(got) == len(expected) == 7
    for (xg, yg), (xe, ye) in zip(got, expected):
        assert set(xg) == set(xe)
        for k in xe:
            # int_dtype (int64 by default) sets the stream's id width; in memory int32 stays int32
            same_kind = xg[k].dtype == xe[k].dtype or not (xg[k].is_floating_point() or xe[k].is_floating_point())
            assert same_kind and torch.equal(xg[k].to(xe[k].dtype), xe[k]), k
        assert yg.dtype == ye.dtype == torch.int64 and torch.equal(yg, ye)
    assert got[0][0]["f"].dtype == torch.float32 and got[0][0]["seq"].shape == (64, 4)
    # Torch-RecHub's usage: a DataLoader with batch_size=None passes the batches through.
    plain = list(torch.utils.data.DataLoader(ds, batch_size=None))
    assert len(plain) == 7 and all(torch.equal(a[0]["a"], b[0]["a"]) for a, b in zip(plain, got))

    several = next(iter(ParquetIterableDataset(folder, batch_size=8, label_columns=["y1", "y2"])))[1]
    assert several.shape == (8, 2) and several.dtype == torch.float32
    assert torch.allclose(several[:, 1], torch.from_numpy(cols["y2"][:8]))
    bare = next(iter(ParquetIterableDataset([folder], columns=["a", "seq"], batch_size=8, int_dtype=torch.int32)))
    assert isinstance(bare, dict) and set(bare) == {"a", "seq"} and bare["a"].dtype == torch.int32
    # Windows smaller than row groups: a row group is read forward across windows.
    small = ParquetIterableDataset(folder, batch_size=16, shuffle_buffer=20, label_columns="y1")
    assert torch.equal(all_rows(small), torch.arange(400)) and len(small) == 25
    glob_ds = ParquetIterableDataset(str(tmp_path / "d" / "part-[12].parquet"), batch_size=1000)
    assert glob_ds.num_rows == 400 - 133 and len(glob_ds) == 1


def test_variable_lists_are_post_padded_and_keep_their_last_items(tmp_path):
    lists = [[], [5], [1, 2, 3, 4, 5], [7, 8]]
    pq.write_table(pa.table({"h": pa.array(lists, type=pa.list_(pa.int32()))}), tmp_path / "v.parquet")
    batch = next(iter(ParquetIterableDataset(tmp_path / "v.parquet", batch_size=4)))["h"]
    assert batch.tolist() == [[0] * 5, [5, 0, 0, 0, 0], [1, 2, 3, 4, 5], [7, 8, 0, 0, 0]]
    batch = next(iter(ParquetIterableDataset(tmp_path / "v.parquet", batch_size=4, max_len=3)))["h"]
    assert batch.tolist() == [[0, 0, 0], [5, 0, 0], [3, 4, 5], [7, 8, 0]]


def all_rows(loader):
    return torch.cat([x["a"] for x, _ in loader])


def test_shuffle_is_a_permutation_per_epoch_replayed_by_set_epoch_and_workers(tmp_path):
    folder = write_parquet(tmp_path / "d", table_rows(), row_group_size=30)
    ds = ParquetIterableDataset(folder, batch_size=32, label_columns="y1", shuffle=True, shuffle_buffer=100, seed=3)
    first, second = all_rows(ds), all_rows(ds)  # passes advance the epoch by themselves
    assert torch.equal(first.sort().values, torch.arange(400)) and not torch.equal(first, second)
    ds.set_epoch(1)
    assert torch.equal(all_rows(ds), second)
    loader = ParquetLoader(ds, num_workers=2)
    loader.sampler.set_epoch(1)  # what the training loop calls
    batches = [set(x["a"].tolist()) for x, _ in loader]
    ds.set_epoch(1)
    assert len(batches) == len(loader) == len(ds)
    # Workers take turns on windows: the same batches, interleaved differently.
    assert sorted(map(sorted, batches)) == sorted(sorted(set(x["a"].tolist())) for x, _ in ds)
    assert ds.epoch == 2
    other_seed = ParquetIterableDataset(folder, batch_size=32, label_columns="y1", shuffle=True, seed=4)
    assert not torch.equal(all_rows(other_seed), first)


@pytest.mark.parametrize("shuffle", [True, False])
def test_ranks_and_workers_read_disjoint_parts(tmp_path, monkeypatch, shuffle):
    n = 400 + 2  # not divisible by 3 ranks
    cols = table_rows(n)
    folder = write_parquet(tmp_path / "d", cols, row_group_size=40)
    seen, lengths = [], []
    for rank in range(3):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "3")
        ds = ParquetIterableDataset(folder, batch_size=16, label_columns="y1", shuffle=shuffle, shuffle_buffer=50)
        rows = all_rows(ds)
        ds.set_epoch(0)
        with_workers = torch.cat([x["a"] for x, _ in ParquetLoader(ds, num_workers=2)])
        assert torch.equal(with_workers.sort().values, rows.sort().values)
        seen.append(rows)
        lengths.append((len(ds), len(list(ds))))
    union = torch.cat(seen)
    assert len(set(union.tolist())) == len(union)  # disjoint
    if shuffle:  # training: every rank the same number of rows and batches, remainder dropped
        assert [len(r) for r in seen] == [n // 3] * 3 and len(union) == 3 * (n // 3)
        assert len({a for a, _ in lengths}) == 1
    else:  # evaluation: every row exactly once
        assert torch.equal(union.sort().values, torch.arange(n))
    assert all(a == b for a, b in lengths)


def test_workers_use_the_rank_seen_by_their_parent(tmp_path, monkeypatch):
    """A DataLoader worker may not see its parent's process group: it keeps the parent's rank."""
    import trainhub.data.parquet as parquet_module

    folder = write_parquet(tmp_path / "d", table_rows(300), num_files=1)
    ds = ParquetIterableDataset(folder, batch_size=50, shuffle=True)
    monkeypatch.setattr(parquet_module, "rank_and_world_size", lambda: (1, 3))
    ds.set_epoch(0)  # in the main process, where the group is visible
    expected = torch.cat([b["a"] for b in ds])
    assert len(expected) == 100
    monkeypatch.setattr(parquet_module, "rank_and_world_size", lambda: (0, 1))  # what a worker would see
    monkeypatch.setattr(parquet_module, "get_worker_info", lambda: type("Info", (), {"id": 0, "num_workers": 1}))
    ds.set_epoch(0)
    assert torch.equal(torch.cat([b["a"] for b in ds]), expected) and len(ds) == 2


def test_drop_last(tmp_path):
    folder = write_parquet(tmp_path / "d", table_rows(100), num_files=1)
    ds = ParquetIterableDataset(folder, batch_size=32, drop_last=True)
    assert len(ds) == 3 and [len(b["a"]) for b in ds] == [32, 32, 32]


# -- trainers: Parquet versus the same rows in memory ------------------------------------------
def memory_loader(x, y, batch_size=64):
    return make_loader(DictDataset(x, y), batch_size=batch_size)


def split_to_parquet(tmp_path, x, labels, n_train, variable_lists=False):
    """Train rows to one folder, the rest to another; labels as named columns."""
    cols = {**x, **labels}
    train = write_parquet(tmp_path / "train", {k: v[:n_train] for k, v in cols.items()},
                          variable_lists=variable_lists)
    val = write_parquet(tmp_path / "val", {k: v[n_train:] for k, v in cols.items()}, num_files=2,
                        variable_lists=variable_lists)
    return train, val


def test_ctr_trainer_fits_evaluates_and_predicts_from_parquet(tmp_path):
    kwargs, _ = get_model_entry("DeepFM").example()
    x, y = toy.batch(300, seed=1), toy.labels(300, seed=1)
    train, val = split_to_parquet(tmp_path, x, {"label": y}, 200, variable_lists=True)
    features = kwargs["deep_features"]
    pq_ds = lambda path, **kw: ParquetIterableDataset(path, batch_size=32, label_columns="label",  # noqa: E731
                                                      features=features, max_len=toy.SEQ_LEN, **kw)
    x_val = {k: v[200:] for k, v in x.items()}
    # Unshuffled training sees the same batches as the in-memory loader: the same weights.
    models = []
    # (ParquetLoader, like any DataLoader, draws a base seed from torch's RNG per pass: same dropout draws.)
    x_train = {k: v[:200] for k, v in x.items()}
    for loader in (ParquetLoader(pq_ds(train)), make_loader(DictDataset(x_train, y[:200]), 32)):
        torch.manual_seed(0)
        models.append(get_model_entry("DeepFM").cls(**kwargs))
        CTRTrainer(models[-1], n_epoch=1, model_path=str(tmp_path / "m"), progress=False, seed=0).fit(loader)
    for (name, a), b in zip(models[0].state_dict().items(), models[1].state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), name

    torch.manual_seed(0)
    trainer = CTRTrainer(get_model_entry("DeepFM").cls(**kwargs), n_epoch=2, model_path=str(tmp_path / "s"),
                         progress=False, seed=0)
    result = trainer.fit(pq_ds(train, shuffle=True), pq_ds(val))
    assert len(result.history) == 2 and np.isfinite(result.history[-1]["train/loss"])
    got = trainer.evaluate_all(trainer.model, pq_ds(val))
    want = trainer.evaluate_all(trainer.model, memory_loader(x_val, y[200:]))
    assert got == pytest.approx(want, abs=1e-6)
    assert trainer.predict(trainer.model, pq_ds(val)) == pytest.approx(
        trainer.predict(trainer.model, memory_loader(x_val, y[200:])), abs=1e-6)


def test_match_trainer_fits_evaluates_and_predicts_from_parquet(tmp_path):
    x, y = toy.match_dataset(300)
    names = ["user_id", "city", "age", "item_id", "cate_id", "hist_item_id"]
    x = {k: x[k] for k in names}
    features = toy.sparse_features()
    user = [f for f in features if f.name in ("user_id", "city")] + toy.dense_features()[:1] + [
        SequenceFeature("hist_item_id", toy.VOCAB["item_id"], toy.EMBED_DIM, shared_with="item_id")]
    item = [f for f in features if f.name in ("item_id", "cate_id")]
    torch.manual_seed(0)
    model = DSSM(user, item, {"dims": [16, 8]}, {"dims": [16, 8]})
    train, val = split_to_parquet(tmp_path, x, {"label": y}, 200)
    pq_ds = lambda path, **kw: ParquetIterableDataset(path, batch_size=32, label_columns="label",  # noqa: E731
                                                      features=user + item, **kw)
    trainer = MatchTrainer(model, mode=0, n_epoch=2, model_path=str(tmp_path / "m"), progress=False, seed=0,
                           optimizer_params={"lr": 0.01, "weight_decay": 0.0})
    result = trainer.fit(pq_ds(train, shuffle=True), pq_ds(val))
    assert len(result.history) == 2
    x_val = {k: v[200:] for k, v in x.items()}
    assert trainer.evaluate_all(model, pq_ds(val)) == pytest.approx(
        trainer.evaluate_all(model, memory_loader(x_val, y[200:])), abs=1e-6)
    assert trainer.predict(model, pq_ds(val)) == pytest.approx(
        trainer.predict(model, memory_loader(x_val, y[200:])), abs=1e-6)
    users = trainer.inference_embedding(model, "user", pq_ds(val), model_path=None)
    assert torch.allclose(users, trainer.inference_embedding(model, "user", memory_loader(x_val, None), None),
                          atol=1e-6)


def test_mtl_trainer_fits_evaluates_and_predicts_from_parquet(tmp_path):
    kwargs, _ = get_model_entry("SharedBottom").example()
    x = toy.batch(300, seed=2)
    g = torch.Generator().manual_seed(5)
    click, score = torch.randint(0, 2, (300,), generator=g).float(), torch.randn(300, generator=g)
    train, val = split_to_parquet(tmp_path, x, {"click": click, "score": score}, 200, variable_lists=True)
    pq_ds = lambda path, **kw: ParquetIterableDataset(  # noqa: E731
        path, batch_size=32, label_columns=["click", "score"], features=kwargs["features"], max_len=toy.SEQ_LEN, **kw)
    torch.manual_seed(0)
    trainer = MTLTrainer(get_model_entry("SharedBottom").cls(**kwargs), kwargs["task_types"], n_epoch=2,
                         model_path=str(tmp_path / "m"), progress=False)
    log = trainer.fit(pq_ds(train, shuffle=True), pq_ds(val))
    assert len(log) == 2
    x_val, y_val = {k: v[200:] for k, v in x.items()}, torch.stack([click, score], 1)[200:]
    assert trainer.evaluate(trainer.model, pq_ds(val)) == pytest.approx(
        trainer.evaluate(trainer.model, memory_loader(x_val, y_val)), abs=1e-6)
    assert np.allclose(trainer.predict(trainer.model, pq_ds(val)),
                       trainer.predict(trainer.model, memory_loader(x_val, y_val)), atol=1e-6)


# -- encoding --------------------------------------------------------------------------------
def raw_frame(n=500, seed=0):
    rng = np.random.default_rng(seed)
    items = np.array(["i%d" % i for i in range(30)])
    return pd.DataFrame({
        "user": rng.integers(0, 40, n).astype(str),
        "item": np.where(rng.random(n) < 0.05, None, items[rng.integers(0, 30, n)]),
        "price": np.where(rng.random(n) < 0.1, np.nan, rng.random(n)),
        "hist": ["|".join(items[rng.integers(0, 30, rng.integers(0, 7))]) for _ in range(n)],
        "label": rng.integers(0, 2, n),
    })


def test_partial_fit_over_chunks_equals_one_fit_and_hashing_is_stable(tmp_path):
    df = raw_frame()
    whole = CategoricalEncoder(["user", "item"], min_freq=2, sequences={"hist": "item"}, sep="|").fit(df)
    chunked = CategoricalEncoder(["user", "item"], min_freq=2, sequences={"hist": "item"}, sep="|")
    for start in range(0, len(df), 120):
        chunked.partial_fit(df.iloc[start:start + 120])
    assert chunked.vocab == whole.vocab and chunked.sequence_lengths == whole.sequence_lengths == {"hist": 6}
    assert whole.vocab_sizes["hist"] == whole.vocab_sizes["item"]
    hashed = CategoricalEncoder(["user", "item"], hash_buckets={"user": 7}).fit(df)
    codes = hashed.encode_column(df["user"], "user")
    assert codes.min() >= 2 and codes.max() < 9 and hashed.vocab_sizes["user"] == 9 and "user" not in hashed.vocab
    hashed.save(tmp_path / "enc.json")
    assert np.array_equal(CategoricalEncoder.load(tmp_path / "enc.json").encode_column(df["user"], "user"), codes)
    # Same value, same bucket: the hash does not depend on the process or the chunk.
    assert np.array_equal(hashed.encode_column(df["user"].iloc[::-1], "user"), codes[::-1])


def expected_encoding(df, enc):
    out = enc.transform(df)
    x = {"user": out["user"].to_numpy(), "item": out["item"].to_numpy(),
         "price": df["price"].fillna(0.0).to_numpy(np.float32), "hist": np.stack(out["hist"].to_list())}
    return x, df["label"].to_numpy()


@pytest.mark.parametrize("source", ["csv", "parquet"])
def test_encode_to_parquet_matches_the_in_memory_encoder(tmp_path, source):
    df = raw_frame()
    if source == "csv":
        df.iloc[:250].to_csv(tmp_path / "a.csv", index=False)
        df.iloc[250:].to_csv(tmp_path / "b.csv", index=False)
        inputs = str(tmp_path / "*.csv")
    else:
        df.to_parquet(tmp_path / "raw.parquet", row_group_size=100)
        inputs = [tmp_path / "raw.parquet"]
    enc = encode_to_parquet(inputs, tmp_path / "out", sparse=["user", "item"], dense=["price"],
                            sequence={"hist": "item"}, label="label", sep="|", chunk_rows=90,
                            rows_per_file=200, row_group_rows=64)
    assert sorted(os.listdir(tmp_path / "out")) == ["encoder.json"] + [f"part-0000{i}.parquet" for i in range(3)]
    assert pq.ParquetFile(tmp_path / "out" / "part-00000.parquet").metadata.row_group(0).num_rows == 64
    reference = CategoricalEncoder(["user", "item"], sequences={"hist": "item"}, sep="|").fit(df)
    assert enc.vocab == reference.vocab
    x, y = expected_encoding(df, reference)
    ds = ParquetIterableDataset(tmp_path / "out", batch_size=500, label_columns="label")
    got_x, got_y = next(iter(ds))
    for k in x:
        assert torch.equal(got_x[k], torch.from_numpy(np.array(x[k])).to(got_x[k].dtype)), k
    assert torch.equal(got_y, torch.from_numpy(np.array(y)))
    loaded = CategoricalEncoder.load(tmp_path / "out" / "encoder.json")
    assert loaded.vocab == enc.vocab and loaded.sequence_lengths == {"hist": 6}


def test_encode_to_parquet_with_hashing(tmp_path):
    df = raw_frame()
    df.to_csv(tmp_path / "raw.csv", index=False)
    enc = encode_to_parquet(tmp_path / "raw.csv", tmp_path / "out", sparse=["user", "item"], sequence={"hist": "item"},
                            sep="|", hash_buckets={"item": 5}, label="label", chunk_rows=128)
    assert enc.vocab_sizes["item"] == enc.vocab_sizes["hist"] == 7 and "item" not in enc.vocab
    reference = CategoricalEncoder(["user", "item"], sequences={"hist": "item"}, sep="|", hash_buckets={"item": 5})
    x, _ = expected_encoding(df, reference.fit(df))
    got = next(iter(ParquetIterableDataset(tmp_path / "out", batch_size=500, label_columns="label")))[0]
    assert torch.equal(got["item"], torch.from_numpy(np.array(x["item"])))
    assert torch.equal(got["hist"], torch.from_numpy(np.array(x["hist"])))
    assert int(got["hist"].max()) < 7 and set(got["item"].tolist()) <= set(range(7))


def test_encode_with_a_given_encoder_and_failures_keep_the_previous_output(tmp_path):
    df = raw_frame()
    df.to_csv(tmp_path / "train.csv", index=False)
    spec = dict(sparse=["user", "item"], dense=["price"], sequence={"hist": "item"}, label="label", sep="|")
    enc = encode_to_parquet(tmp_path / "train.csv", tmp_path / "out", **spec)
    before = {p: (tmp_path / "out" / p).read_bytes() for p in os.listdir(tmp_path / "out")}
    with pytest.raises(FileExistsError, match="overwrite=True"):
        encode_to_parquet(tmp_path / "train.csv", tmp_path / "out", **spec)
    test = raw_frame(100, seed=1)
    test["price"] = test["price"].astype(object)
    test.loc[50, "price"] = "cheap"
    test.to_csv(tmp_path / "test.csv", index=False)
    with pytest.raises(TypeError, match=r"column 'price' in file .*test.csv.* 'cheap' at row 50"):
        encode_to_parquet(tmp_path / "test.csv", tmp_path / "out", encoder=enc, overwrite=True, chunk_rows=30, **spec)
    assert {p: (tmp_path / "out" / p).read_bytes() for p in os.listdir(tmp_path / "out")} == before
    assert sorted(os.listdir(tmp_path)) == ["out", "test.csv", "train.csv"]  # no temporary folder left
    test.loc[50, "price"] = 0.5
    test.to_csv(tmp_path / "test.csv", index=False)
    encode_to_parquet(tmp_path / "test.csv", tmp_path / "out", encoder=enc, overwrite=True, **spec)
    x, _ = expected_encoding(test.astype({"price": float}), enc)
    got = next(iter(ParquetIterableDataset(tmp_path / "out", batch_size=100, label_columns="label")))[0]
    assert torch.equal(got["item"], torch.from_numpy(np.array(x["item"])))
    assert CategoricalEncoder.load(tmp_path / "out" / "encoder.json").vocab == enc.vocab


# -- errors name the file and the column --------------------------------------------------------
def test_bad_files_are_named(tmp_path):
    good = tmp_path / "good.parquet"
    pq.write_table(pa.table({"id": [1, 2], "x": [0.5, 0.1], "s": ["a", "b"], "label": [0, 1]}), good)
    with pytest.raises(KeyError, match=r"column 'nope' is missing from file .*good.parquet"):
        ParquetIterableDataset(good, columns=["nope"])
    with pytest.raises(TypeError, match=r"column 's' in file .*good.parquet.* type string.*encode"):
        ParquetIterableDataset(good, columns=["id", "s"])
    with pytest.raises(TypeError, match=r"column 'x' in file .*good.parquet.* double.*SparseFeature 'x' needs int"):
        ParquetIterableDataset(good, features=[SparseFeature("id", 3), SparseFeature("x", 3)])
    floats = tmp_path / "b" / "floats.parquet"
    floats.parent.mkdir()
    pq.write_table(pa.table({"id": [1.0, 2.0], "label": [0, 1]}), floats)
    with pytest.raises(TypeError, match=r"column 'id' is float in file .*floats.parquet.* but int in .*good"):
        ParquetIterableDataset([good, floats], columns=["id"])
    nulls = tmp_path / "nulls.parquet"
    pq.write_table(pa.table({"id": pa.array([1, None], pa.int64())}), nulls)
    with pytest.raises(ValueError, match=r"column 'id' in file .*nulls.parquet.* null"):
        list(ParquetIterableDataset(nulls))
    corrupt = tmp_path / "c" / "corrupt.parquet"
    corrupt.parent.mkdir()
    corrupt.write_bytes(b"not parquet at all" * 10)
    with pytest.raises(ValueError, match=r"cannot read Parquet file .*corrupt.parquet"):
        ParquetIterableDataset([good, corrupt])
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"directory .*empty.* holds no"):
        ParquetIterableDataset(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match=r"pattern .*\*.nothing. matches no file"):
        ParquetIterableDataset(str(tmp_path / "*.nothing"))

    # encode_to_parquet: the same cases on its inputs
    out = tmp_path / "out"
    with pytest.raises(KeyError, match=r"column 'nope' is missing from file .*good.parquet"):
        encode_to_parquet(good, out, sparse=["nope"])
    with pytest.raises(TypeError, match=r"column 'id' in file .*floats.parquet.* double.*ids must be integers"):
        encode_to_parquet(floats, out, sparse=["id"])
    with pytest.raises(TypeError, match=r"column 's' in file .*good.parquet.* dense and label columns must be numbers"):
        encode_to_parquet(good, out, dense=["s"])
    with pytest.raises(ValueError, match=r"cannot read .*corrupt.parquet"):
        encode_to_parquet([good, corrupt], out, sparse=["id"])
    (tmp_path / "broken.csv").write_bytes(b"id,label\n\"1,0\n")
    with pytest.raises(ValueError, match=r"cannot read .*broken.csv"):
        encode_to_parquet(tmp_path / "broken.csv", out, sparse=["id"], label="label")
    with pytest.raises(FileNotFoundError, match=r"directory .*empty.* holds no"):
        encode_to_parquet(tmp_path / "empty", out, sparse=["id"])
    assert not out.exists()


def _flip_in_first_data_page(path, column=0):
    meta = pq.ParquetFile(path).metadata.row_group(0).column(column)
    data = bytearray(open(path, "rb").read())
    start = meta.dictionary_page_offset if meta.has_dictionary_page else meta.data_page_offset
    data[start + meta.total_compressed_size - 8] ^= 0x01  # inside the last data page's values
    open(path, "wb").write(bytes(data))


def test_a_damaged_page_is_an_error_naming_the_file_not_wrong_ids(tmp_path):
    from trainhub.runs.prepare import read_table

    pd.DataFrame({"item": [f"i{i % 300}" for i in range(3000)], "y": np.arange(3000) % 2}).to_csv(
        tmp_path / "raw.csv", index=False)
    encode_to_parquet(tmp_path / "raw.csv", tmp_path / "enc", sparse=["item"], label="y", row_group_rows=3000)
    part = tmp_path / "enc" / "part-00000.parquet"
    assert list(ParquetIterableDataset(part, batch_size=3000))  # intact: reads
    _flip_in_first_data_page(part)
    with pytest.raises(ValueError, match=r"cannot read .*part-00000.parquet.*CRC"):
        list(ParquetIterableDataset(part, batch_size=3000))
    with pytest.raises(ValueError, match=r"cannot read .*part-00000.parquet.*CRC"):
        read_table(str(part))


def test_conversion_leftovers_are_removed_and_empty_csv_is_named(tmp_path):
    (tmp_path / "raw.csv").write_text("item,y\na,1\nb,0\n")
    stale = tmp_path / ".enc.999999999.abc.tmp"  # a killed conversion (no such process)
    stale.mkdir()
    (stale / "part-00000.parquet").write_bytes(b"half")
    encode_to_parquet(tmp_path / "raw.csv", tmp_path / "enc", sparse=["item"], label="y")
    assert not stale.exists() and (tmp_path / "enc" / "encoder.json").is_file()
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ValueError, match=r"empty\.csv' is empty"):
        encode_to_parquet(tmp_path / "empty.csv", tmp_path / "enc2", sparse=["item"])
