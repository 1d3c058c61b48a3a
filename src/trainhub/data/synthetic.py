"""Learnable synthetic data: generated from a known model, so a trained model can be checked
against the best possible score.

Every generator returns ``{"train": df, "val": df, "test": df}`` (pandas) built from a seeded
numpy generator, so the same arguments give the same rows on every machine. Ranking and
multi-task frames also carry the generator's own click probability in a column named
``oracle_*`` (never a feature): scoring the test rows with it gives the AUC a perfect model
would reach, which puts a trained model's AUC in context.

* :func:`synthetic_ctr`: Criteo-like clicks from user/item biases, a user-category affinity and
  a low-rank user-item interaction (what FM/DeepFM model), plus two dense columns.
* :func:`synthetic_sequence`: clicks that depend on whether the candidate's category appears in
  the user's recent history (what DIN's target attention models); histories as ``"3,17,5"``.
* :func:`synthetic_multitask`: click and purchase labels sharing part of their signal (MMOE, PLE).
* :func:`synthetic_matching`: user-item interactions drawn from latent tastes; the last item of
  each user is the test target, the one before the validation target (YoutubeDNN, DSSM).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["synthetic_ctr", "synthetic_sequence", "synthetic_multitask", "synthetic_matching", "synthetic_interactions",
           "split_frame"]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _zipf_ids(rng: np.random.Generator, n: int, size: int, a: float = 1.1) -> np.ndarray:
    """Ids ``0..size-1`` with a long-tailed frequency (popular ids first)."""
    p = 1.0 / np.arange(1, size + 1) ** a
    return rng.choice(size, size=n, p=p / p.sum())


def split_frame(df: "pd.DataFrame", split: tuple[float, float], seed: int) -> dict[str, "pd.DataFrame"]:
    """Shuffle rows with ``seed``; the first ``split[0]`` share is train, the next ``split[1]`` val."""
    order = np.random.default_rng(seed).permutation(len(df))
    n_train, n_val = int(len(df) * split[0]), int(len(df) * split[1])
    parts = {"train": order[:n_train], "val": order[n_train:n_train + n_val], "test": order[n_train + n_val:]}
    out = {k: df.iloc[idx].reset_index(drop=True) for k, idx in parts.items()}
    for frame in out.values():  # row positions are shuffled: errors can name the files, not their lines
        frame.attrs = {"split_of": list(df.attrs.get("sources", ()))}
    return out


def _ctr_frame(rng: np.random.Generator, rows: int, num_users: int, num_items: int, num_categories: int):
    import pandas as pd

    item_cate = rng.integers(0, num_categories, num_items)
    user_cate = rng.integers(0, num_categories, num_users)  # each user's favourite category
    user_vec = rng.normal(0, 1, (num_users, 4))
    item_vec = rng.normal(0, 1, (num_items, 4))
    user_bias = rng.normal(0, 0.5, num_users)
    item_bias = rng.normal(0, 0.5, num_items)
    user = _zipf_ids(rng, rows, num_users, 0.8)
    item = _zipf_ids(rng, rows, num_items, 0.9)
    city = rng.integers(0, 30, rows)
    device = rng.integers(0, 3, rows)
    hour = rng.integers(0, 24, rows)
    price = rng.gamma(2.0, 20.0, rows)
    age = rng.integers(16, 70, rows)
    cate = item_cate[item]
    logit = (
        -1.2
        + user_bias[user] + item_bias[item]
        + 1.6 * (user_cate[user] == cate)  # user-category affinity: a pairwise (FM) term
        + 0.6 * np.einsum("nd,nd->n", user_vec[user], item_vec[item])  # low-rank user-item interaction
        + 0.5 * ((device == 2) & (hour >= 18))  # evening mobile traffic clicks more
        - 0.6 * np.log1p(price / 40.0)
        + 0.4 * ((age < 30) & (cate % 2 == 0))
    )
    prob = _sigmoid(logit)
    frame = pd.DataFrame({
        "user_id": [f"u{u}" for u in user], "item_id": [f"i{i}" for i in item], "cate_id": [f"c{c}" for c in cate],
        "city": city, "device": device, "hour": hour, "price": price.round(2).astype(np.float32),
        "age": age.astype(np.float32),
    })
    return frame, prob, item_cate, user_cate


def synthetic_ctr(rows: int = 50_000, num_users: int = 200, num_items: int = 200, num_categories: int = 12,
                  split: tuple[float, float] = (0.8, 0.1), seed: int = 0) -> dict[str, "pd.DataFrame"]:
    """Click-through rows: ``user_id, item_id, cate_id, city, device, hour`` (categorical),
    ``price, age`` (numeric), ``label`` (0/1) and ``oracle_prob``.

    About a quarter of the rows are clicks. The label is drawn from ``oracle_prob``, so no model
    can beat the AUC of that column on the test rows (0.82 with the defaults).
    """
    rng = np.random.default_rng(seed)
    frame, prob, _, _ = _ctr_frame(rng, rows, num_users, num_items, num_categories)
    frame["label"] = (rng.random(rows) < prob).astype(np.int64)
    frame["oracle_prob"] = prob.astype(np.float32)
    return split_frame(frame, split, seed)


def synthetic_multitask(rows: int = 50_000, num_users: int = 200, num_items: int = 200, num_categories: int = 12,
                        split: tuple[float, float] = (0.8, 0.1), seed: int = 0) -> dict[str, "pd.DataFrame"]:
    """The columns of :func:`synthetic_ctr` with two labels: ``click`` and ``purchase``.

    ``purchase`` shares the click signal and adds its own price and age effects, so the tasks are
    related but not the same (what multi-gate experts are for). ``oracle_click`` and
    ``oracle_purchase`` hold the generator's probabilities.
    """
    rng = np.random.default_rng(seed)
    frame, click_prob, _, _ = _ctr_frame(rng, rows, num_users, num_items, num_categories)
    click_logit = np.log(click_prob / (1 - click_prob))
    price = frame["price"].to_numpy(np.float64)
    age = frame["age"].to_numpy(np.float64)
    buy_logit = -1.5 + 0.8 * click_logit - 1.2 * np.log1p(price / 40.0) + 0.03 * (age - 40)
    buy_prob = _sigmoid(buy_logit)
    frame["click"] = (rng.random(rows) < click_prob).astype(np.int64)
    frame["purchase"] = (rng.random(rows) < buy_prob).astype(np.int64)
    frame["oracle_click"] = click_prob.astype(np.float32)
    frame["oracle_purchase"] = buy_prob.astype(np.float32)
    return split_frame(frame, split, seed)


def synthetic_sequence(rows: int = 20_000, num_users: int = 400, num_items: int = 400, num_categories: int = 20,
                       history: int = 10, split: tuple[float, float] = (0.8, 0.1),
                       seed: int = 0) -> dict[str, "pd.DataFrame"]:
    """Rows with a behaviour history: ``user_id, item_id, cate_id`` (candidate),
    ``hist_item_id, hist_cate_id`` (comma-separated, oldest first), ``label``, ``oracle_prob``.

    Each user has two favourite categories, and most of its history comes from them. A candidate
    is clicked far more often when its category appears among the last few history items, so a
    model that attends over the history (DIN) beats one that only sees ids.
    """
    import pandas as pd

    rng = np.random.default_rng(seed)
    item_cate = rng.integers(0, num_categories, num_items)
    items_of = [np.flatnonzero(item_cate == c) for c in range(num_categories)]
    items_of = [ids if len(ids) else np.array([c % num_items]) for c, ids in enumerate(items_of)]
    favourites = np.stack([rng.choice(num_categories, 2, replace=False) for _ in range(num_users)])
    user_bias = rng.normal(0, 0.3, num_users)
    user = rng.integers(0, num_users, rows)
    hist_len = rng.integers(3, history + 1, rows)
    hist_items, hist_cates, match = [], [], np.zeros(rows)
    candidate = rng.integers(0, num_items, rows)
    # half the candidates come from a favourite category, so positives are not rare
    fav_draw = rng.random(rows) < 0.5
    for r in range(rows):
        length = hist_len[r]
        cats = np.where(rng.random(length) < 0.8, favourites[user[r], rng.integers(0, 2, length)],
                        rng.integers(0, num_categories, length))
        items = np.array([rng.choice(items_of[c]) for c in cats])
        if fav_draw[r]:
            candidate[r] = rng.choice(items_of[favourites[user[r], rng.integers(0, 2)]])
        recent = cats[-5:]
        match[r] = np.mean(recent == item_cate[candidate[r]])
        hist_items.append(",".join(f"i{i}" for i in items))
        hist_cates.append(",".join(f"c{c}" for c in cats))
    prob = _sigmoid(-2.0 + 4.0 * match + user_bias[user])
    frame = pd.DataFrame({
        "user_id": [f"u{u}" for u in user], "item_id": [f"i{i}" for i in candidate],
        "cate_id": [f"c{c}" for c in item_cate[candidate]], "hist_item_id": hist_items, "hist_cate_id": hist_cates,
        "label": (rng.random(rows) < prob).astype(np.int64), "oracle_prob": prob.astype(np.float32),
    })
    return split_frame(frame, split, seed)


def synthetic_matching(num_users: int = 2000, num_items: int = 300, interactions: int = 20, history: int = 10,
                       num_categories: int = 20, seed: int = 0) -> dict[str, "pd.DataFrame"]:
    """Interactions for retrieval: ``user_id, age_group, hist_item_id`` (the user's previous
    items, comma-separated, at most ``history``), ``item_id, cate_id`` (the next item).

    Users and items have latent tastes (a category each plus a small vector); each user's
    ``interactions`` items are drawn with probability rising with the match. The last interaction
    of every user is the test row, the one before it the validation row, earlier ones training
    rows (a leave-last-out split, as retrieval papers evaluate).

    With the defaults, recommending the most popular items gives test Recall@50 = 0.19; ranking
    items by how often their category occurs in the history (popularity breaking ties) 0.66.
    """
    import pandas as pd

    rng = np.random.default_rng(seed)
    item_cate = rng.integers(0, num_categories, num_items)
    item_vec = rng.normal(0, 1, (num_items, 8))
    popularity = np.log(1.0 / np.arange(1, num_items + 1) ** 0.3)  # mild: taste, not popularity, decides
    rows = {"user_id": [], "age_group": [], "hist_item_id": [], "item_id": [], "cate_id": [], "position": []}
    for u in range(num_users):
        taste = rng.choice(num_categories, 2, replace=False)
        user_vec = rng.normal(0, 1, 8)
        logits = 4.0 * np.isin(item_cate, taste) + 0.3 * item_vec @ user_vec + popularity
        p = np.exp(logits - logits.max())
        seq = rng.choice(num_items, size=interactions, replace=False, p=p / p.sum())
        age_group = int(taste[0] % 5)  # a profile column that carries part of the taste
        for t in range(1, interactions):
            rows["user_id"].append(f"u{u}")
            rows["age_group"].append(f"a{age_group}")
            rows["hist_item_id"].append(",".join(f"i{i}" for i in seq[max(0, t - history):t]))
            rows["item_id"].append(f"i{seq[t]}")
            rows["cate_id"].append(f"c{item_cate[seq[t]]}")
            rows["position"].append(t)
    frame = pd.DataFrame(rows)
    last = frame.groupby("user_id")["position"].transform("max")
    parts = {"train": frame[frame.position < last - 1], "val": frame[frame.position == last - 1],
             "test": frame[frame.position == last]}
    return {k: v.drop(columns="position").reset_index(drop=True) for k, v in parts.items()}


def synthetic_interactions(num_users: int = 1000, num_items: int = 400, min_events: int = 10, max_events: int = 40,
                           num_clusters: int = 20, follow: float = 0.7, seed: int = 0) -> dict[str, "pd.DataFrame"]:
    """An interaction log (``user_id, item_id, timestamp``) whose order matters, for next-item models.

    Items fall into ``num_clusters`` clusters of consecutive ids. Each user has a favourite cluster
    and walks through it: with probability ``follow`` the next item is the one after the previous
    item (in its cluster), otherwise an item drawn by popularity from the favourite cluster (or, one
    time in five, from any cluster). So the next item is predictable from the last one, which a
    sequence model learns and a most-popular list cannot. Timestamps are seconds, increasing per
    user. Returns ``{"train": log}``: a next-item run splits it itself (leave-one-out by default).
    """
    import pandas as pd

    rng = np.random.default_rng(seed)
    cluster_size = max(1, num_items // num_clusters)
    popularity = 1.0 / np.arange(1, cluster_size + 1) ** 0.8
    popularity /= popularity.sum()
    users, items, times = [], [], []
    for user in range(num_users):
        favourite = int(rng.integers(num_clusters))
        clock = int(rng.integers(880_000_000, 890_000_000))
        item = None
        for _ in range(int(rng.integers(min_events, max_events + 1))):
            if item is not None and rng.random() < follow:
                cluster, offset = divmod(item, cluster_size)
                item = cluster * cluster_size + (offset + 1) % cluster_size
            else:
                cluster = favourite if rng.random() < 0.8 else int(rng.integers(num_clusters))
                item = cluster * cluster_size + int(rng.choice(cluster_size, p=popularity))
            clock += int(rng.integers(60, 86_400))
            users.append(user + 1)
            items.append(item + 1)
            times.append(clock)
    return {"train": pd.DataFrame({"user_id": users, "item_id": items, "timestamp": times})}
