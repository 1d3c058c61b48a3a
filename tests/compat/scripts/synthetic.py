"""Tiny synthetic frames in the shape of Torch-RecHub's sample data (no files needed).

Columns and value types follow the samples the upstream examples read; the values are random
but structured (users prefer a few genres), so training has something to learn.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

GENRES = ["Action", "Comedy", "Drama", "Horror", "Sci-Fi"]


def movielens(n_users: int = 24, n_items: int = 60, per_user: int = 8, seed: int = 0) -> pd.DataFrame:
    """``user_id, movie_id, rating, timestamp, title, genres, gender, age, occupation, zip`` (ml-1m sample)."""
    rng = np.random.default_rng(seed)
    item_genre = rng.integers(0, len(GENRES), n_items)
    rows = []
    for u in range(n_users):
        liked = rng.choice(len(GENRES), 2, replace=False)
        pool = np.flatnonzero(np.isin(item_genre, liked))
        items = rng.choice(pool, min(per_user, len(pool)), replace=False)
        for t, i in enumerate(items):
            rows.append({"user_id": 1000 + u, "movie_id": 5000 + int(i), "rating": int(rng.integers(1, 6)),
                         "timestamp": 978300000 + 60 * (u * per_user + t),
                         "title": f"Movie {i}", "genres": f"{GENRES[item_genre[i]]}|{GENRES[(item_genre[i] + 1) % 5]}",
                         "gender": "MF"[u % 2], "age": int(rng.choice([18, 25, 35])),
                         "occupation": int(rng.integers(0, 5)), "zip": f"{int(rng.integers(10000, 10010))}"})
    return pd.DataFrame(rows)


def sessions(n_sessions: int = 60, n_items: int = 30, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Session frames as Torch-RecHub's session preprocessing leaves them: a list column ``iid``
    of item ids (1-based) per session; ``(train, test)``."""
    rng = np.random.default_rng(seed)
    lists = []
    for _ in range(n_sessions):
        start, length = int(rng.integers(1, n_items)), int(rng.integers(2, 7))
        lists.append([1 + (start + k) % (n_items - 1) for k in range(length)])  # mostly "next item" chains
    df = pd.DataFrame({"session_id": range(n_sessions), "iid": lists})
    return df.iloc[: n_sessions * 3 // 4].reset_index(drop=True), df.iloc[n_sessions * 3 // 4:].reset_index(drop=True)


def amazon_electronics(n_users: int = 30, n_items: int = 40, n_cates: int = 6, per_user: int = 7,
                       seed: int = 0) -> pd.DataFrame:
    """``user_id, item_id, time, cate_id`` (the Amazon Electronics sample used by DIN and DIEN)."""
    rng = np.random.default_rng(seed)
    item_cate = rng.integers(1, n_cates + 1, n_items + 1)
    rows = []
    for u in range(1, n_users + 1):
        for t, i in enumerate(rng.choice(np.arange(1, n_items + 1), per_user, replace=False)):
            rows.append({"user_id": u, "item_id": int(i), "time": 1300000000 + 100 * (u * per_user + t),
                         "cate_id": int(item_cate[i])})
    return pd.DataFrame(rows)


def avazu(n_rows: int = 120, seed: int = 0) -> pd.DataFrame:
    """``label, feat_1 .. feat_22``: three small integer counts, then categorical codes (Avazu sample)."""
    rng = np.random.default_rng(seed)
    data = {"label": rng.integers(0, 2, n_rows)}
    for j in range(1, 23):
        data[f"feat_{j}"] = rng.integers(0, 40 if j <= 3 else 6, n_rows)
    return pd.DataFrame(data)


def census(n_rows: int = 160, seed: int = 0) -> pd.DataFrame:
    """Label-encoded census-income-like frame: sparse codes, dense numbers, two 0/1 labels."""
    rng = np.random.default_rng(seed)
    data = {f"s{j}": rng.integers(0, 5, n_rows) for j in range(6)}
    data.update({f"d{j}": rng.random(n_rows) for j in range(3)})
    logit = data["s0"] - 2 + 2 * data["d0"]
    data["income"] = (rng.random(n_rows) < 1 / (1 + np.exp(-logit))).astype(int)
    data["marital status"] = (rng.random(n_rows) < 0.5).astype(int)
    return pd.DataFrame(data)
