"""Matching data helpers: sample layout per mode, negatives outside the user's positives, padding."""

from collections import OrderedDict

import numpy as np
import pandas as pd
import pytest

from trainhub.data import MatchDataGenerator, gen_model_input, generate_seq_feature_match, negative_sample


def _log(num_users=6, num_items=12, per_user=6, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(1, num_users + 1):
        items = rng.choice(np.arange(1, num_items + 1), size=per_user, replace=False)
        for t, i in enumerate(items):
            rows.append((u, int(i), 100 * u + t, int(i) % 3 + 1))
    return pd.DataFrame(rows, columns=["user_id", "movie_id", "ts", "genre"]).sample(frac=1.0, random_state=0)


def test_negative_sample_methods_follow_their_distributions():
    counts = OrderedDict([(10, 1000), (20, 100), (30, 10), (40, 1)])
    assert set(negative_sample(counts, 500, 0, seed=0)) == {10, 20, 30, 40}
    draws = negative_sample(counts, 20000, 1, seed=0)
    p = np.array([1000, 100, 10, 1]) ** 0.75
    assert np.mean(draws == 10) == pytest.approx(p[0] / p.sum(), abs=0.02)
    ralm = negative_sample(counts, 50, 3, seed=0)  # more draws than items: Torch-RecHub raised here
    assert len(ralm) == 50
    with pytest.raises(ValueError, match="method_id"):
        negative_sample(counts, 5, 7)


@pytest.mark.parametrize("mode,neg_ratio", [(0, 2), (1, 0), (2, 3)])
def test_layout_and_negatives_exclude_positives(mode, neg_ratio):
    df = _log()
    before = df.copy()
    train, test = generate_seq_feature_match(df, "user_id", "movie_id", "ts", item_attribute_cols=["genre"],
                                             mode=mode, neg_ratio=neg_ratio, seed=0)
    pd.testing.assert_frame_equal(df, before)  # input untouched
    base = ["user_id", "movie_id", "hist_movie_id", "histlen_movie_id", "hist_genre"]
    last = "label" if mode == 0 else "neg_items"
    assert list(train.columns) == base + [last] and list(test.columns) == base + [last]
    positives = df.groupby("user_id")["movie_id"].apply(set).to_dict()
    ordered = df.sort_values("ts").groupby("user_id")["movie_id"].apply(list).to_dict()
    assert len(test) == 6
    for _, row in test.iterrows():  # the test item is each user's last one, the history all before it
        assert row["movie_id"] == ordered[row["user_id"]][-1]
        assert list(row["hist_movie_id"]) == ordered[row["user_id"]][:-1]
    if mode == 0:
        pos, neg = train[train.label == 1], train[train.label == 0]
        assert len(pos) == 6 * 4 and len(neg) == 2 * len(pos)
        assert all(item not in positives[u] for u, item in zip(neg.user_id, neg.movie_id))
        assert all(item in positives[u] for u, item in zip(pos.user_id, pos.movie_id))
    else:
        assert len(train) == 6 * 4
        for frame in (train, test):
            for u, negs in zip(frame.user_id, frame.neg_items):
                negs = [negs] if mode == 1 else list(negs)
                assert len(negs) == (1 if mode == 1 else 3)
                assert not set(negs) & positives[u]


def test_min_item_and_bad_arguments():
    df = _log()
    df = df[~((df.user_id == 1) & (df.ts > 102))]  # user 1 keeps 3 items
    train, test = generate_seq_feature_match(df, "user_id", "movie_id", "ts", min_item=4)
    assert 1 not in set(test.user_id) and 1 not in set(train.user_id)
    with pytest.raises(ValueError, match="neg_ratio"):
        generate_seq_feature_match(df, "user_id", "movie_id", "ts", mode=2)
    with pytest.raises(KeyError, match="timestamp"):
        generate_seq_feature_match(df, "user_id", "movie_id", "timestamp")


def test_user_owning_every_item_cannot_get_negatives():
    df = pd.DataFrame({"u": [1, 1, 1, 2, 2], "i": [1, 2, 3, 1, 2], "t": range(5)})
    with pytest.raises(ValueError, match="user 1"):
        generate_seq_feature_match(df, "u", "i", "t", mode=0, neg_ratio=1, seed=0)


def test_gen_model_input_pads_and_merges_and_loaders():
    train, test = generate_seq_feature_match(_log(), "user_id", "movie_id", "ts", mode=2, neg_ratio=2, seed=0)
    users = pd.DataFrame({"user_id": range(1, 7), "gender": [1, 2] * 3})
    items = pd.DataFrame({"movie_id": range(1, 13), "year": range(13, 25)})
    x = gen_model_input(train, users, "user_id", items, "movie_id", seq_max_len=3)
    assert x["hist_movie_id"].shape == (len(train), 3)
    row = int(np.argmax(train["histlen_movie_id"].to_numpy() == 1))  # a one-item history: pre-padded
    assert x["hist_movie_id"][row].tolist() == [0, 0, train["hist_movie_id"][row][0]]
    assert x["neg_items"].shape == (len(train), 2)
    assert (x["year"] == x["movie_id"] + 12).all() and (x["gender"] == 2 - x["user_id"] % 2).all()
    x_test = gen_model_input(test, users, "user_id", None, "movie_id", seq_max_len=3)
    train_dl, test_dl, item_dl = MatchDataGenerator(x).generate_dataloader(x_test, {"movie_id": np.arange(1, 13)}, 8)
    first = next(iter(train_dl))
    assert isinstance(first, dict) and first["neg_items"].shape == (8, 2)  # no dummy y needed
    assert sum(len(b["movie_id"]) for b in item_dl) == 12 and sum(len(b["user_id"]) for b in test_dl) == 6
