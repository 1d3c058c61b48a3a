"""Interaction log -> next-item samples: order, splits, layouts, padding, time deltas, errors.

The oracle for the sliding-window layout is Torch-RecHub's own ``preprocess_ml_hstu.py``, run in
its venv on the same log when that venv and the upstream sources are on this machine.
"""

from __future__ import annotations

import logging
import pickle
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

from trainhub.data import ItemVocab, UserSequences, encode_histories, interaction_sequences, read_interactions

REPO = Path(__file__).resolve().parents[2]
RECHUB_PYTHON = REPO / "bench" / ".rechub-venv" / "bin" / "python"
RECHUB_GIT = Path("/work/.mirror/datawhalechina+torch-rechub/repo")


def tiny_log() -> pd.DataFrame:
    """u1: a b c d e (b and c at the same second, c first in the log), u2: two events, u3: x y z."""
    rows = [("u1", "a", 10), ("u3", "x", 5), ("u1", "c", 20), ("u1", "b", 20), ("u1", "d", 35),
            ("u2", "a", 1), ("u3", "y", 6), ("u1", "e", 100), ("u2", "b", 2), ("u3", "z", 9)]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])


def tokens_of(data, names):
    return [int(data.vocab.encode([n])[0]) for n in names]


def test_sequences_are_chronological_with_a_stable_tie_break():
    seqs = UserSequences.from_log(tiny_log())
    assert list(seqs.users) == ["u1", "u2", "u3"]
    assert list(seqs.vocab.index) == ["a", "b", "c", "d", "e", "x", "y", "z"]  # sorted; tokens 1..8
    items, times = seqs.sequence(0)
    assert seqs.vocab.decode(items).tolist() == ["a", "c", "b", "d", "e"]  # c before b: log order at a tie
    assert times.tolist() == [10, 20, 20, 35, 100]


def test_leave_one_out_on_a_tiny_log(caplog):
    with caplog.at_level(logging.INFO, logger="trainhub.data.seqlog"):
        data = interaction_sequences(tiny_log(), max_seq_len=4)
    assert "dropped 1 of 3 users with fewer than 3 interactions" in caplog.text
    a, b, c, d, e, x, y = tokens_of(data, "abcdexy")
    val, test, train = (data.val.batch(range(len(data.val))), data.test.batch(range(len(data.test))),
                        data.train.batch(range(len(data.train))))
    # u1: a c b d e -> test target e after [a c b d], validation target d after [a c b]
    assert test[0].tolist() == [[a, c, b, d], [0, 0, x, y]] and test[3].tolist() == [e, tokens_of(data, "z")[0]]
    assert val[0].tolist() == [[0, a, c, b], [0, 0, 0, x]] and val[3].tolist() == [d, y]
    # one training sample per user (u3 has a single training item: no sample); its loss covers every position
    assert train[0].tolist() == [[0, 0, a, c]] and train[3].tolist() == [b]
    # time differences: seconds before the history's last item, 0 on padding; positions 0..L-1
    assert test[2].tolist() == [[25, 15, 15, 0], [0, 0, 1, 0]]
    assert train[1].tolist() == [[0, 1, 2, 3]]
    assert data.vocab_size == 9 and data.vocab.num_items == 8  # u2's items stay: u1 has them too


def test_truncation_keeps_the_most_recent_items():
    data = interaction_sequences(tiny_log(), max_seq_len=2)
    tokens = data.test.batch([0])[0]
    assert tokens.tolist() == [tokens_of(data, "bd")]


def test_sliding_layout_is_every_prefix_and_user_layout_covers_the_same_transitions():
    rng = np.random.default_rng(0)
    rows = [(u, int(rng.integers(0, 30)), t) for u in range(12) for t in range(int(rng.integers(3, 25)))]
    log_df = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    sliding = interaction_sequences(log_df, max_seq_len=40, layout="sliding")
    per_user = interaction_sequences(log_df, max_seq_len=40)

    def transitions(samples):
        from trainhub.tasks.seq import next_tokens

        tokens, _, _, targets = samples.batch(range(len(samples)))
        labels = next_tokens(tokens, targets)
        pairs = set()
        for tok, lab in zip(tokens.tolist(), labels.tolist()):
            for i, nxt in enumerate(lab):
                if nxt:  # (the context up to position i, the next item): what one loss term trains
                    pairs.add((tuple(h for h in tok[: i + 1] if h), nxt))
        return pairs

    # one sample per prefix vs one per user: the same (context, next item) terms
    lengths = per_user.sequences.lengths
    assert len(sliding.train) == int(np.sum(np.maximum(lengths - 3, 0)))
    assert len(per_user.train) == int(np.sum(lengths >= 4))
    assert transitions(sliding.train) == transitions(per_user.train)


def test_window_stride_tiles_long_histories():
    log_df = pd.DataFrame({"user_id": 0, "item_id": np.arange(12), "timestamp": np.arange(12)})
    data = interaction_sequences(log_df, max_seq_len=3, window_stride=3)
    tokens, _, _, targets = data.train.batch(range(len(data.train)))
    # training items 1..10 (tokens): windows end at targets 10, 7, 4 (and none at 1: it has no history)
    assert targets.tolist() == [10, 7, 4]
    assert tokens.tolist() == [[7, 8, 9], [4, 5, 6], [1, 2, 3]]


def test_time_split():
    log_df = tiny_log()
    data = interaction_sequences(log_df, split="time", val_start=20, test_start=50, max_seq_len=5)
    a, b, c, d, e, x, y, z = tokens_of(data, "abcdexyz")
    val = data.val.batch(range(len(data.val)))
    test = data.test.batch(range(len(data.test)))
    # u1: train on events before 20 (only a: no training sample), validate on c (first at >= 20) after [a],
    # test on e (first at >= 50) after [a c b d]; u2 and u3 end before 20: training only.
    assert val[3].tolist() == [c] and val[0].tolist() == [[0, 0, 0, 0, a]]
    assert test[3].tolist() == [e] and test[0].tolist() == [[0, a, c, b, d]]
    train = data.train.batch(range(len(data.train)))
    assert train[3].tolist() == [b, z] and train[0].tolist() == [[0, 0, 0, 0, a], [0, 0, 0, x, y]]
    quantile = interaction_sequences(log_df, split="time", val_start=0.5, test_start=0.9, max_seq_len=5)
    assert len(quantile.val) + len(quantile.test) >= 1
    dates = log_df.assign(timestamp=pd.to_datetime(log_df["timestamp"], unit="s"))
    by_date = interaction_sequences(dates, split="time", val_start="1970-01-01 00:00:20",
                                    test_start="1970-01-01 00:00:50", max_seq_len=5)
    assert torch.equal(by_date.test.batch([0])[0], data.test.batch([0])[0])
    with pytest.raises(ValueError, match="needs val_start and test_start"):
        interaction_sequences(log_df, split="time")


def test_loaders_batch_the_samples_and_any_dataloader_works():
    data = interaction_sequences(tiny_log(), max_seq_len=4)
    train_dl, val_dl, test_dl = data.dataloaders(batch_size=2, shuffle=False)
    batch = next(iter(test_dl))
    assert all(torch.equal(a, b) for a, b in zip(batch, data.test.batch([0, 1])))
    plain = next(iter(DataLoader(data.test, batch_size=2)))  # default collate, one sample at a time
    assert all(torch.equal(a, b) for a, b in zip(batch, plain))
    arrays = data.arrays("test")
    assert arrays["seq_tokens"].dtype == np.int32 and arrays["seq_time_diffs"].dtype == np.int64
    assert arrays["seq_tokens"].shape == (2, 4) and arrays["targets"].shape == (2,)


def test_timestamps_dates_and_units():
    df = tiny_log()
    as_ms = df.assign(timestamp=df["timestamp"] * 1000)
    assert read_interactions(as_ms, time_unit="ms")["time"].tolist() == df["timestamp"].tolist()
    as_text = df.assign(timestamp=pd.to_datetime(df["timestamp"], unit="s").astype(str))
    assert read_interactions(as_text)["time"].tolist() == df["timestamp"].tolist()
    as_strings_of_seconds = df.assign(timestamp=df["timestamp"].astype(str))
    assert read_interactions(as_strings_of_seconds)["time"].tolist() == df["timestamp"].tolist()


def test_errors_name_the_file_column_and_row(tmp_path):
    df = tiny_log()
    with pytest.raises(ValueError, match=r"no timestamp column 'ts'.*columns are"):
        interaction_sequences(df, time_col="ts")
    path = tmp_path / "log.csv"
    df.drop(columns="item_id").to_csv(path, index=False)
    with pytest.raises(ValueError, match=rf"{path}.*no item column 'item_id'"):
        interaction_sequences(path)
    bad = df.astype({"timestamp": object})
    bad.loc[3, "timestamp"] = "not a time"
    bad.to_csv(path, index=False)
    with pytest.raises(ValueError, match=rf"{path}: column 'timestamp' has an unparsable timestamp 'not a time' "
                                         r"at row 3 \(data line 4\)"):
        interaction_sequences(path)
    missing = df.astype({"timestamp": float})
    missing.loc[6, "timestamp"] = np.nan
    with pytest.raises(ValueError, match=r"column 'timestamp' is missing at row 6"):
        interaction_sequences(missing)
    no_item = df.copy()
    no_item.loc[2, "item_id"] = None
    with pytest.raises(ValueError, match=r"column 'item_id' is missing at row 2"):
        interaction_sequences(no_item)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        interaction_sequences(tmp_path / "nope.csv")
    with pytest.raises(ValueError, match="no user of .* has 30 or more interactions"):
        interaction_sequences(df, min_interactions=30)
    with pytest.raises(ValueError, match="layout must be one of"):
        interaction_sequences(df, layout="windows")


def test_csv_and_parquet_paths(tmp_path):
    df = tiny_log()
    expected = interaction_sequences(df, max_seq_len=4).test.batch([0, 1])
    df.to_csv(tmp_path / "log.tsv", sep="\t", index=False)
    from_csv = interaction_sequences(tmp_path / "log.tsv", max_seq_len=4, read_kwargs={"sep": "\t"})
    df.assign(extra=1.0).to_parquet(tmp_path / "log.parquet")
    from_parquet = interaction_sequences(tmp_path / "log.parquet", max_seq_len=4)
    for data in (from_csv, from_parquet):
        assert all(torch.equal(a, b) for a, b in zip(data.test.batch([0, 1]), expected))


def test_vocab_and_histories_with_unknown_items(caplog):
    vocab = ItemVocab.from_values([30, 10, 20, 10])
    assert vocab.encode([10, 20, 30, 99]).tolist() == [1, 2, 3, 0]
    assert vocab.decode([3, 1]).tolist() == [30, 10]
    assert vocab.item_to_idx == {10: 1, 20: 2, 30: 3}
    with pytest.raises(KeyError, match="99"):
        vocab.encode([99], unknown="raise")
    with pytest.raises(ValueError, match="0 is PAD"):
        vocab.decode([0])
    with caplog.at_level(logging.WARNING):
        tokens, diffs = encode_histories(vocab, [[10, 99, 20], [30]], 3, times=[[100, 150, 160], [5]])
    assert "dropped 1 item(s)" in caplog.text
    assert tokens.tolist() == [[0, 1, 2], [0, 0, 3]] and diffs.tolist() == [[0, 60, 0], [0, 0, 0]]


def test_vocab_save_and_load(tmp_path):
    vocab = ItemVocab.from_values(["b", "a"])
    loaded = ItemVocab.load(vocab.save(tmp_path / "vocab.json"))
    assert loaded.encode(["a", "b"]).tolist() == [1, 2]


@pytest.mark.skipif(not (RECHUB_PYTHON.exists() and RECHUB_GIT.exists()),
                    reason="needs Torch-RecHub's venv (bench/.rechub-venv) and its sources in /work/.mirror")
def test_sliding_layout_equals_torch_rechub_preprocessing(tmp_path):
    """The same log through upstream's preprocess_ml_hstu.py (its own venv) and layout='sliding'."""
    rng = np.random.default_rng(1)
    rows = []
    for user in range(1, 15):
        n = int(rng.integers(3, 30))
        times = 1_000_000 + np.sort(rng.choice(10_000, n, replace=False)) * 7  # no ties: upstream's sort is unstable
        rows += [(user, int(rng.integers(1, 60)), 3, int(t)) for t in times]
    ratings = pd.DataFrame(rows, columns=["user_id", "movie_id", "rating", "timestamp"])
    (tmp_path / "ratings.dat").write_text("".join(f"{u}::{m}::{r}::{t}\n" for u, m, r, t in rows))
    (tmp_path / "movies.dat").write_text("1::Toy::Animation\n")
    script = subprocess.run(["git", "-C", str(RECHUB_GIT), "show", "HEAD:examples/generative/data/ml-1m/"
                             "preprocess_ml_hstu.py"], capture_output=True, text=True, check=True).stdout
    (tmp_path / "upstream.py").write_text(script)
    run = (f"import sys; sys.path.insert(0, {str(tmp_path)!r}); import upstream; "
           f"upstream.MovieLensHSTUPreprocessor({str(tmp_path)!r} + '/', {str(tmp_path / 'out')!r} + '/').preprocess()")
    done = subprocess.run([str(RECHUB_PYTHON), "-c", run], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    ours = interaction_sequences(ratings, item_col="movie_id", max_seq_len=200, layout="sliding", min_interactions=5)
    vocab = pickle.loads((tmp_path / "out" / "vocab.pkl").read_bytes())
    assert vocab["item_to_idx"] == ours.vocab.item_to_idx
    for split in ("train", "val", "test"):
        theirs = pickle.loads((tmp_path / "out" / f"{split}_data.pkl").read_bytes())
        mine = ours.arrays(split)
        for key in ("seq_tokens", "seq_positions", "seq_time_diffs", "targets"):
            assert theirs[key].dtype == mine[key].dtype, (split, key)
            np.testing.assert_array_equal(theirs[key], mine[key], err_msg=f"{split}/{key}")
