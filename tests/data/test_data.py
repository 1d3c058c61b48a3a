import numpy as np
import pandas as pd
import pytest
import torch

from trainhub.data import CategoricalEncoder, DataGenerator, DictDataset, df_to_dict, make_loader, pad_sequences
from trainhub.data.encoders import MISSING_ID, OOV_ID


def test_batches_are_slices_of_whole_columns():
    x = {"a": np.arange(10), "b": np.arange(10, dtype=np.float64) / 10, "seq": np.arange(30).reshape(10, 3)}
    y = np.arange(10) % 2
    loader = make_loader(DictDataset(x, y), batch_size=4)
    batches = list(loader)
    assert len(batches) == 3
    xb, yb = batches[0]
    assert torch.equal(xb["a"], torch.arange(4))
    assert xb["b"].dtype == torch.float32 and xb["seq"].shape == (4, 3)
    assert torch.equal(yb, torch.tensor([0, 1, 0, 1]))
    assert batches[2][0]["a"].tolist() == [8, 9]


def test_dataframe_input_and_prediction_dataset():
    df = pd.DataFrame({"a": [1, 2, 3], "b": [0.5, 0.25, 0.0]})
    ds = DictDataset(df)
    batch = ds.__getitems__([2, 0])
    assert isinstance(batch, dict) and batch["a"].tolist() == [3, 1]


def test_bad_columns_are_named():
    with pytest.raises(ValueError, match="different numbers of rows"):
        DictDataset({"a": np.arange(3), "b": np.arange(4)})
    with pytest.raises(TypeError, match="column 'city' holds strings"):
        DictDataset({"city": np.array(["paris", "rome"])})
    with pytest.raises(TypeError, match="column 'city' holds strings \\(e.g. 'paris'\\)"):
        DictDataset(pd.DataFrame({"city": ["paris", "rome"]}).astype(object))
    with pytest.raises(TypeError, match="column 'hist' holds non-numeric"):
        DictDataset({"hist": pd.Series([[1, 2], [3]])})


def test_data_generator_split_is_seeded_and_complete():
    x = {"a": np.arange(100)}
    y = np.zeros(100)
    def split(seed):
        tr, va, te = DataGenerator(x, y).generate_dataloader(split_ratio=[0.7, 0.1], batch_size=16, seed=seed)
        return [torch.cat([b[0]["a"] for b in dl]).sort().values for dl in (tr, va, te)]

    a, b = split(1), split(1)
    assert [len(t) for t in a] == [70, 10, 20]
    assert all(torch.equal(s, t) for s, t in zip(a, b))
    assert torch.equal(torch.cat(a).sort().values, torch.arange(100))
    assert not torch.equal(split(2)[1], a[1])


def test_data_generator_with_explicit_validation_and_no_test():
    x = {"a": np.arange(10)}
    tr, va, te = DataGenerator(x, np.zeros(10)).generate_dataloader(x_val={"a": np.arange(3)}, y_val=np.ones(3))
    assert len(va.dataset) == 3 and te is None


def test_encoder_oov_missing_and_round_trip(tmp_path):
    train = pd.DataFrame({"c": ["x", "y", "y", None], "n": [3, 4, 3, 3]})
    enc = CategoricalEncoder(["c", "n"]).fit(train)
    assert enc.vocab_sizes == {"c": 4, "n": 4}
    test = pd.DataFrame({"c": ["y", "zzz", np.nan], "n": [4, 5, 3]})
    out = enc.transform(test)
    assert out["c"].tolist() == [3, OOV_ID, MISSING_ID]
    assert out["n"].tolist() == [3, OOV_ID, 2]
    enc.save(tmp_path / "enc.json")
    again = CategoricalEncoder.load(tmp_path / "enc.json").transform(test)
    pd.testing.assert_frame_equal(out, again)


def test_encoder_file_is_readable_by_others_and_hand_edited_ids_are_refused(tmp_path):
    import json

    enc = CategoricalEncoder(["c"]).fit(pd.DataFrame({"c": ["a", "b", "c"]}))
    import os

    umask = os.umask(0o022)
    try:
        path = enc.save(tmp_path / "encoder.json")
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o644  # the usual umask 022 applies, not mkstemp's 0600
    payload = json.loads(path.read_text())
    payload["vocab"]["c"]["c"] = payload["vocab"]["c"]["a"]  # two values share one id
    path.write_text(json.dumps(payload))
    with pytest.raises(ValueError, match=r"encoder.json: column 'c' gives id 2 to both 'a' and 'c'"):
        CategoricalEncoder.load(path)
    payload["vocab"]["c"]["c"] = 9  # an id past the table (vocab_sizes would be 5)
    path.write_text(json.dumps(payload))
    with pytest.raises(ValueError, match=r"column 'c' has ids \[9\] outside 2..4"):
        CategoricalEncoder.load(path)


def test_encoder_names_missing_column():
    with pytest.raises(KeyError, match="'nope'"):
        CategoricalEncoder(["nope"]).fit(pd.DataFrame({"a": [1]}))


def test_pad_sequences_keras_semantics():
    seqs = [[1, 2, 3], [4], []]
    assert pad_sequences(seqs, maxlen=2).tolist() == [[2, 3], [0, 4], [0, 0]]
    assert pad_sequences(seqs, maxlen=2, padding="post", truncating="post").tolist() == [[1, 2], [4, 0], [0, 0]]
    assert pad_sequences(seqs).shape == (3, 3)


def test_df_to_dict():
    d = df_to_dict(pd.DataFrame({"a": [1, 2], "b": [3, 4]}))
    assert list(d) == ["a", "b"] and d["b"].tolist() == [3, 4]
