"""MovieLens 100K retrieval quality check for MatchTrainer models against a most-popular baseline.

Protocol: the last item of each user (by timestamp) is held out; every earlier position is a
training sample (history -> next item). Each test user is ranked against ALL items, excluding the
items in the user's training history. Reports Recall@10, Recall@50, NDCG@10 and HR@10.

Run:  .venv/bin/python bench/movielens.py            (all models, ~10 min on 2 CPU cores)
      .venv/bin/python bench/movielens.py --models DSSM --epochs-scale 0.5
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from trainhub.data import MatchDataGenerator, gen_model_input, generate_seq_feature_match
from trainhub.features import SequenceFeature, SparseFeature
from trainhub.metrics import RankingMetrics
from trainhub.models.matching import DSSM, GRU4Rec, SASRec, YoutubeDNN
from trainhub.trainers import MatchTrainer

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "rec" / "ml-100k"
MAX_LEN = 50
KS = (10, 50)


def load(data_dir: Path):
    ratings = pd.read_csv(data_dir / "u.data", sep="\t", names=["user_id", "movie_id", "rating", "ts"])
    users = pd.read_csv(data_dir / "u.user", sep="|", names=["user_id", "age", "gender", "occupation", "zip"])
    users["age"] = pd.cut(users["age"], [0, 18, 25, 35, 45, 50, 56, 200], labels=False) + 1
    users["gender"] = (users["gender"] == "M").astype(int) + 1
    users["occupation"] = users["occupation"].astype("category").cat.codes + 1
    return ratings, users[["user_id", "age", "gender", "occupation"]]


def build_data(ratings, users, neg_ratio: int, seed: int):
    train_df, test_df = generate_seq_feature_match(ratings, "user_id", "movie_id", "ts", mode=2,
                                                   neg_ratio=neg_ratio, sample_method=0, seed=seed)
    x_train = gen_model_input(train_df, users, "user_id", None, "movie_id", MAX_LEN)
    x_test = gen_model_input(test_df, users, "user_id", None, "movie_id", MAX_LEN)
    num_items = int(ratings.movie_id.max()) + 1
    x_items = {"movie_id": np.arange(1, num_items)}
    # Items each test user saw in training (its whole history), excluded from its ranking.
    seen = [list(h) for h in test_df["hist_movie_id"]]
    return x_train, x_test, x_items, seen, num_items, int(users.user_id.max()) + 1


POINTWISE_NEGATIVES = 4


def pointwise(x_train: dict, num_negatives: int) -> tuple[dict, np.ndarray]:
    """Mode-0 rows from the list-wise samples: each positive (label 1) plus its first sampled
    negatives as label-0 rows with the same user and history."""
    n = len(x_train["movie_id"])
    reps = 1 + num_negatives
    x = {k: np.repeat(v, reps, axis=0) for k, v in x_train.items() if k != "neg_items"}
    items = np.concatenate([x_train["movie_id"][:, None], x_train["neg_items"][:, :num_negatives]], axis=1)
    x["movie_id"] = items.reshape(-1)
    y = np.tile(np.r_[1.0, np.zeros(num_negatives)], n).astype(np.float32)
    return x, y


def evaluate(user_emb: torch.Tensor, item_emb: torch.Tensor, item_ids: np.ndarray, seen, target) -> dict:
    """Rank all items per user (max over interests if 3-D), minus seen ones, and score the held-out item."""
    if user_emb.dim() == 2:
        scores = user_emb @ item_emb.T
    else:
        scores = torch.einsum("ukd,nd->ukn", user_emb, item_emb).max(1).values
    id_to_col = {int(i): c for c, i in enumerate(item_ids)}
    rows = np.concatenate([[u] * len(s) for u, s in enumerate(seen)]).astype(np.int64)
    cols = np.array([id_to_col[int(i)] for s in seen for i in s], dtype=np.int64)
    scores[torch.from_numpy(rows), torch.from_numpy(cols)] = float("-inf")
    top = torch.as_tensor(item_ids)[scores.topk(max(KS), dim=1).indices]
    metric = RankingMetrics(KS)
    metric.update(top, torch.as_tensor(np.array(target)))
    return metric.compute()


def most_popular(x_train, x_items, seen, target, num_items) -> dict:
    counts = np.zeros(num_items)
    # Training interactions = every item before each user's held-out one (the test histories).
    np.add.at(counts, np.concatenate([np.asarray(s, dtype=np.int64) for s in seen]), 1)
    user_emb = torch.ones(len(seen), 1)
    item_emb = torch.as_tensor(counts[x_items["movie_id"]], dtype=torch.float32).unsqueeze(1)
    return evaluate(user_emb, item_emb, x_items["movie_id"], seen, target)


def make_models(num_users: int, num_items: int, dim: int):
    def item(name="movie_id"):
        return SparseFeature(name, num_items, dim)

    hist_mean = SequenceFeature("hist_movie_id", num_items, dim, pooling="mean", shared_with="movie_id")
    hist_seq = SequenceFeature("hist_movie_id", num_items, dim, pooling="concat", shared_with="movie_id")
    negs = SequenceFeature("neg_items", num_items, dim, pooling="concat", shared_with="movie_id")
    profile = [SparseFeature("user_id", num_users, dim), SparseFeature("age", 9, 4), SparseFeature("gender", 3, 2),
               SparseFeature("occupation", 22, 4)]
    # name -> (builder, trainer kwargs, epochs, learning rate, batch size)
    return {
        # Towers end in PReLU / linear so cosines can be negative: with Torch-RecHub's ReLU ending
        # both towers are non-negative and BCE drives them to the zero vector (logit 0).
        "DSSM": (lambda: DSSM(profile + [hist_mean], [item()], {"dims": [128, dim], "activation": "prelu"},
                              {"dims": [dim], "activation": "linear"}, temperature=0.1),
                 {"mode": 0}, 3, 1e-3, 1024),
        "YoutubeDNN": (lambda: YoutubeDNN(profile + [hist_mean], [item()], [negs], {"dims": [128, dim]},
                                          temperature=0.05), {"mode": 2}, 4, 1e-3, 256),
        "GRU4Rec": (lambda: GRU4Rec([], [hist_seq], [item()], [negs], {"dims": [dim]}, temperature=0.05),
                    {"mode": 2}, 3, 2e-3, 256),
        "SASRec": (lambda: SASRec([hist_seq], max_len=MAX_LEN, dropout_rate=0.2, num_blocks=2, num_heads=1,
                                  item_feature=item(), neg_item_feature=negs, temperature=1.0),
                   {"mode": 2}, 3, 1e-3, 256),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--models", nargs="*", default=["DSSM", "YoutubeDNN", "GRU4Rec", "SASRec"])
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--neg-ratio", type=int, default=20)
    parser.add_argument("--epochs-scale", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("results") / "movielens.json")
    args = parser.parse_args(argv)
    if not (args.data / "u.data").is_file():
        print(f"SKIP: MovieLens 100K not found at {args.data} (needs ../shared/data/rec/ml-100k)")
        return 0
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(2)
    start = time.time()
    ratings, users = load(args.data)
    x_train, x_test, x_items, seen, num_items, num_users = build_data(ratings, users, args.neg_ratio, args.seed)
    target = x_test["movie_id"]
    print(f"train samples {len(x_train['movie_id'])}, test users {len(target)}, items {len(x_items['movie_id'])} "
          f"(data prep {time.time() - start:.0f}s)")
    results = {"MostPopular": most_popular(x_train, x_items, seen, target, num_items)}
    results["MostPopular"]["seconds"] = 0.0
    specs = make_models(num_users, num_items, args.dim)
    for name in args.models:
        build, trainer_kw, epochs, lr, batch = specs[name]
        t0 = time.time()
        torch.manual_seed(args.seed)
        model = build()
        x_fit, y_fit = pointwise(x_train, POINTWISE_NEGATIVES) if trainer_kw["mode"] == 0 else (x_train, None)
        train_dl, test_dl, item_dl = MatchDataGenerator(x_fit, y_fit).generate_dataloader(x_test, x_items, batch)
        out = Path("/tmp") / f"trainhub_movielens_{name}"
        trainer = MatchTrainer(model, n_epoch=max(1, round(epochs * args.epochs_scale)), model_path=str(out),
                               optimizer_params={"lr": lr, "weight_decay": 0.0}, progress=False, seed=args.seed,
                               **trainer_kw)
        trainer.fit(train_dl)
        user_emb = trainer.inference_embedding(model, "user", test_dl, out)
        item_emb = trainer.inference_embedding(model, "item", item_dl, out)
        results[name] = evaluate(user_emb, item_emb, x_items["movie_id"], seen, target)
        results[name]["seconds"] = round(time.time() - t0, 1)
        print(f"{name}: recall@50={results[name]['recall@50']:.4f} ({results[name]['seconds']}s)", flush=True)
    print("\n| model | Recall@10 | Recall@50 | NDCG@10 | HR@10 | train+eval s |\n|---|---|---|---|---|---|")
    for name, m in results.items():
        print(f"| {name} | {m['recall@10']:.4f} | {m['recall@50']:.4f} | {m['ndcg@10']:.4f} | {m['hit_rate@10']:.4f} "
              f"| {m['seconds']:.0f} |")
    print(f"\ntotal {time.time() - start:.0f}s")
    args.out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
