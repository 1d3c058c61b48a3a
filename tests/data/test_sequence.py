import pandas as pd
import pytest

from trainhub.data import df_to_dict, generate_seq_feature
from trainhub.data.dataset import DictDataset


@pytest.fixture
def clicks():
    # After sorted encoding: items a..e -> 1..5, cates x,y,z -> 1..3, users u1,u2 -> 1,2.
    return pd.DataFrame({
        "user": ["u1", "u1", "u1", "u1", "u2", "u2"],
        "item": ["a", "b", "c", "d", "e", "a"],
        "time": [3, 1, 2, 4, 1, 2],
        "cate": ["x", "y", "x", "y", "z", "x"],
    })


def _rows(df, label=1):
    return [(r.user, r.target_item_id, list(r.hist_item_id)) for r in df.itertuples() if r.label == label]


def test_hand_computed_windows_and_splits(clicks):
    original = clicks.copy()
    train, val, test = generate_seq_feature(clicks, "user", "item", "time", ["cate"], shuffle=False, max_len=3)
    pd.testing.assert_frame_equal(clicks, original)  # the input is not modified
    assert list(train.columns) == ["label", "target_item_id", "user", "hist_item_id", "hist_cate", "target_cate"]
    # u1 in time order: b, c, a, d = 2, 3, 1, 4; u2: e, a = 5, 1.
    assert _rows(train) == [(1, 3, [2, 0, 0])]
    assert _rows(val) == [(1, 1, [2, 3, 0])]
    assert _rows(test) == [(1, 4, [2, 3, 1]), (2, 1, [5, 0, 0])]
    assert list(test.loc[test.label == 1, "target_cate"]) == [2, 1]
    assert list(test.hist_cate.iloc[0]) == [2, 1, 1]
    for df in (train, val, test):
        assert (df.label == 1).sum() == (df.label == 0).sum()  # one negative per positive


def test_negatives_are_unclicked_items_with_their_attributes(clicks):
    train, val, test = generate_seq_feature(clicks, "user", "item", "time", ["cate"], shuffle=False, max_len=3)
    cate_of = {1: 1, 2: 2, 3: 1, 4: 2, 5: 3}
    clicked = {1: {1, 2, 3, 4}, 2: {5, 1}}
    for df in (train, val, test):
        for r in df[df.label == 0].itertuples():
            assert r.target_item_id not in clicked[r.user]
            assert r.target_cate == cate_of[r.target_item_id]
    assert set(test.loc[(test.label == 0) & (test.user == 1), "target_item_id"]) == {5}


def test_users_longer_than_max_len_keep_val_and_test_rows_with_their_last_items(clicks):
    train, val, test = generate_seq_feature(clicks, "user", "item", "time", shuffle=False, max_len=2)
    assert _rows(test)[0] == (1, 4, [3, 1])  # the two items before the last one
    assert _rows(val) == [(1, 1, [2, 3])]
    assert _rows(train) == [(1, 3, [2, 0])]


def test_no_test_target_leaks_into_train(clicks):
    train, val, test = generate_seq_feature(clicks, "user", "item", "time", max_len=3)
    def positives(df):
        return {(r.user, r.target_item_id, tuple(r.hist_item_id)) for r in df.itertuples() if r.label}

    assert not positives(test) & positives(train)
    assert not positives(test) & positives(val)


def test_seeded_and_shuffled(clicks):
    a = generate_seq_feature(clicks, "user", "item", "time", max_len=3, seed=1)
    b = generate_seq_feature(clicks, "user", "item", "time", max_len=3, seed=1)
    for x, y in zip(a, b):
        pd.testing.assert_frame_equal(x, y)


def test_min_item_drops_short_users(clicks):
    _, _, test = generate_seq_feature(clicks, "user", "item", "time", min_item=3, max_len=3)
    assert set(test.user) == {1}


def test_negative_history_is_aligned_with_the_history(clicks):
    _, _, test = generate_seq_feature(clicks, "user", "item", "time", ["cate"], shuffle=False, max_len=3,
                                      neg_history=True)
    row = test.iloc[0]  # u1's positive test row: hist [2, 3, 1]
    assert list(row.neg_hist_item_id) == [5, 5, 5]
    assert list(row.neg_hist_cate) == [3, 3, 3]
    u2 = test[test.user == 2].iloc[0]
    assert list(u2.neg_hist_item_id)[1:] == [0, 0] and u2.neg_hist_item_id[0] in {2, 3, 4}


def test_output_feeds_a_dataset(clicks):
    train, _, test = generate_seq_feature(clicks, "user", "item", "time", ["cate"], max_len=3)
    data = DictDataset(df_to_dict(test.drop(columns="label")), test.label.to_numpy())
    x, y = data.__getitems__([0, 1, 2])
    assert tuple(x["hist_item_id"].shape) == (3, 3) and y.shape == (3,)


def test_errors_name_the_problem(clicks):
    with pytest.raises(KeyError, match="'price'"):
        generate_seq_feature(clicks, "user", "item", "time", ["price"])
    with pytest.raises(ValueError, match="missing value"):
        generate_seq_feature(clicks.assign(cate=[None, "x", "x", "y", "z", "x"]), "user", "item", "time", ["cate"])
    every = pd.DataFrame({"user": [1, 1, 2], "item": [1, 2, 1], "time": [1, 2, 1]})
    with pytest.raises(ValueError, match="user 1 interacted with every item"):
        generate_seq_feature(every, "user", "item", "time")
