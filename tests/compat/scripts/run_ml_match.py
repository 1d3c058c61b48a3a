"""A MovieLens retrieval script in the shape of Torch-RecHub's ``examples/matching/run_ml_*.py``.

Only the imports differ from a Torch-RecHub script (README, "Porting from Torch-RecHub"). One
``--model_name`` per upstream example: dssm, youtube_dnn, youtube_sbc, facebook_dssm, mind,
comirec_sa, comirec_dr, gru4rec, sine. Without ``--dataset_path`` a synthetic ml-1m-like frame
is used.

    python tests/compat/scripts/run_ml_match.py --model_name mind --epoch 1
"""

from __future__ import annotations

import collections
import os
from collections import Counter

import numpy as np
import pandas as pd
import torch
from sklearn.preprocessing import LabelEncoder

from trainhub.data import (
    MatchDataGenerator,
    array_replace_with_dict,
    df_to_dict,
    gen_model_input,
    generate_seq_feature_match,
)
from trainhub.features import DenseFeature, SequenceFeature, SparseFeature
from trainhub.metrics.compat import topk_metrics
from trainhub.models.matching import (
    DSSM,
    MIND,
    SINE,
    ComirecDR,
    ComirecSA,
    FaceBookDSSM,
    GRU4Rec,
    YoutubeDNN,
    YoutubeSBC,
)
from trainhub.retrieval import Annoy
from trainhub.trainers import MatchTrainer

try:  # run as a script or imported by the tests
    from synthetic import movielens
except ImportError:
    from tests.compat.scripts.synthetic import movielens

# (sample mode of generate_seq_feature_match, MatchTrainer mode, history padding)
SETUP = {
    "dssm": (0, 0, "pre"), "youtube_dnn": (2, 2, "pre"), "youtube_sbc": (0, 2, "pre"),
    "facebook_dssm": (1, 1, "pre"), "mind": (2, 2, "post"), "comirec_sa": (2, 2, "post"),
    "comirec_dr": (2, 2, "post"), "gru4rec": (2, 2, "post"), "sine": (2, 2, "pre"),
}


def item_sample_weight(items):
    counts = Counter(items)
    weights = {item: n ** 0.75 for item, n in counts.items()}
    total = sum(weights.values())
    return {item: w / total for item, w in weights.items()}


def get_movielens_data(data, model_name, seq_max_len=50):
    data = data.copy()
    data["cate_id"] = data["genres"].apply(lambda g: g.split("|")[0])
    sparse = ["user_id", "movie_id", "gender", "age", "occupation", "zip", "cate_id"]
    vocab = {}
    for col in sparse:
        data[col] = LabelEncoder().fit_transform(data[col]) + 1  # 0 stays free for padding
        vocab[col] = int(data[col].max()) + 1
    data["sample_weight"] = data["movie_id"].map(item_sample_weight(data["movie_id"].tolist()))
    user_profile = data[["user_id", "gender", "age", "occupation", "zip"]].drop_duplicates("user_id")
    item_cols = ["movie_id", "cate_id"] + (["sample_weight"] if model_name == "youtube_sbc" else [])
    item_profile = data[item_cols].drop_duplicates("movie_id")

    sample_mode, _, padding = SETUP[model_name]
    neg_ratio = 0 if model_name == "youtube_sbc" else 3
    df_train, df_test = generate_seq_feature_match(data, "user_id", "movie_id", time_col="timestamp",
                                                   item_attribute_cols=[], sample_method=1, mode=sample_mode,
                                                   neg_ratio=neg_ratio, min_item=0)
    x_train = gen_model_input(df_train, user_profile, "user_id", item_profile, "movie_id", seq_max_len=seq_max_len,
                              padding=padding, truncating=padding)
    x_test = gen_model_input(df_test, user_profile, "user_id", item_profile, "movie_id", seq_max_len=seq_max_len,
                             padding=padding, truncating=padding)
    if model_name == "dssm":
        y_train = x_train["label"]
    else:
        y_train = np.array([0] * df_train.shape[0])  # list-wise: the positive is column 0; pair-wise: unused
    if model_name == "facebook_dssm":
        cate_of = dict(zip(item_profile["movie_id"], item_profile["cate_id"]))
        x_train["neg_cate"] = array_replace_with_dict(x_train["neg_items"], cate_of)
    return vocab, x_train, y_train, x_test, df_to_dict(item_profile)


def build_model(model_name, vocab, batch_size, seq_max_len):
    user_cols = ["user_id", "gender", "age", "occupation", "zip"]
    users = [SparseFeature(c, vocab_size=vocab[c], embed_dim=16) for c in user_cols]
    hist_mean = SequenceFeature("hist_movie_id", vocab_size=vocab["movie_id"], embed_dim=16, pooling="mean",
                                shared_with="movie_id")
    hist_concat = SequenceFeature("hist_movie_id", vocab_size=vocab["movie_id"], embed_dim=16, pooling="concat",
                                  shared_with="movie_id")
    movie = SparseFeature("movie_id", vocab_size=vocab["movie_id"], embed_dim=16)
    cate = SparseFeature("cate_id", vocab_size=vocab["cate_id"], embed_dim=16)
    negs = [SequenceFeature("neg_items", vocab_size=vocab["movie_id"], embed_dim=16, pooling="concat",
                            shared_with="movie_id")]
    if model_name == "dssm":
        return DSSM(users + [hist_mean], [movie, cate], temperature=0.02,
                    user_params={"dims": [32, 16], "activation": "prelu"},
                    item_params={"dims": [32, 16], "activation": "prelu"})
    if model_name == "youtube_dnn":
        return YoutubeDNN(users + [hist_mean], [movie], negs, user_params={"dims": [32, 16]}, temperature=0.02)
    if model_name == "youtube_sbc":
        return YoutubeSBC(users + [hist_mean], [movie, cate], [DenseFeature("sample_weight")],
                          user_params={"dims": [32, 16]}, item_params={"dims": [32, 16]}, batch_size=batch_size,
                          n_neg=3, temperature=0.02)
    if model_name == "facebook_dssm":
        neg_features = [SparseFeature("neg_items", vocab_size=vocab["movie_id"], embed_dim=16),
                        SparseFeature("neg_cate", vocab_size=vocab["cate_id"], embed_dim=16)]
        return FaceBookDSSM(users + [hist_mean], [movie, cate], neg_features, temperature=0.02,
                            user_params={"dims": [32, 16]}, item_params={"dims": [32, 16]})
    if model_name == "mind":
        return MIND(users, [hist_concat], [movie], negs, max_length=seq_max_len, temperature=0.02)
    if model_name == "comirec_sa":
        return ComirecSA(users, [hist_concat], [movie], negs, temperature=0.02)
    if model_name == "comirec_dr":
        return ComirecDR(users, [hist_concat], [movie], negs, max_length=seq_max_len, temperature=0.02)
    if model_name == "gru4rec":
        return GRU4Rec(users, [hist_concat], [movie], negs, user_params={"dims": [32, 16]}, temperature=0.02)
    if model_name == "sine":  # Torch-RecHub's SINE example passes column names
        return SINE(["hist_movie_id"], ["movie_id"], ["neg_items"], vocab["movie_id"], 16, 32, 6, 2, seq_max_len,
                    temperature=0.1)
    raise ValueError(f"unknown model {model_name!r}")


def match_evaluation(user_embedding, item_embedding, test_user, all_item, topk=10):
    """Top-k items per test user from an Annoy forest, scored with topk_metrics (upstream's helper)."""
    annoy = Annoy(n_trees=10)
    annoy.fit(item_embedding)
    match_res = collections.defaultdict(list)
    for user_id, user_emb in zip(test_user["user_id"], user_embedding):
        if user_emb.dim() == 2:  # multi-interest: query each interest, keep each item's best distance
            found = {}
            for interest in user_emb:
                for idx, dist in zip(*annoy.query(v=interest, n=topk)):
                    found[idx] = min(dist, found.get(idx, np.inf))
            best = sorted(found, key=found.get)[:topk]
            match_res[user_id] = all_item["movie_id"][best]
        else:
            items_idx, _ = annoy.query(v=user_emb, n=topk)
            match_res[user_id] = all_item["movie_id"][items_idx]
    truth = pd.DataFrame({"user_id": test_user["user_id"], "movie_id": test_user["movie_id"]})
    ground_truth = dict(truth.groupby("user_id")["movie_id"].agg(list).items())
    return topk_metrics(y_true=ground_truth, y_pred=match_res, topKs=[topk])


def main(model_name="dssm", dataset_path=None, epoch=1, learning_rate=1e-3, batch_size=64, weight_decay=1e-6,
         device="cpu", save_dir="./saved", seed=2022, seq_max_len=20):
    os.makedirs(save_dir, exist_ok=True)
    torch.manual_seed(seed)
    data = pd.read_csv(dataset_path) if dataset_path else movielens(seed=seed)
    vocab, x_train, y_train, x_test, all_item = get_movielens_data(data, model_name, seq_max_len)
    dg = MatchDataGenerator(x=x_train, y=y_train)
    model = build_model(model_name, vocab, batch_size, seq_max_len)
    # gpus=[0] with device="cpu" is what several upstream examples pass: it trains on the CPU.
    trainer = MatchTrainer(model, mode=SETUP[model_name][1], optimizer_params={"lr": learning_rate,
                           "weight_decay": weight_decay}, n_epoch=epoch, device=device, model_path=save_dir, gpus=[0])
    train_dl, test_dl, item_dl = dg.generate_dataloader(x_test, all_item, batch_size=batch_size, num_workers=0)
    trainer.fit(train_dl)
    user_embedding = trainer.inference_embedding(model=model, mode="user", data_loader=test_dl, model_path=save_dir)
    item_embedding = trainer.inference_embedding(model=model, mode="item", data_loader=item_dl, model_path=save_dir)
    metrics = match_evaluation(user_embedding, item_embedding, x_test, all_item, topk=10)
    print(user_embedding.shape, item_embedding.shape, dict(metrics))
    return {"user_embedding": user_embedding, "item_embedding": item_embedding, "metrics": metrics,
            "num_items": len(all_item["movie_id"]), "num_test_users": len(x_test["user_id"])}


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--model_name", default="dssm", choices=sorted(SETUP))
    parser.add_argument("--dataset_path", default=None)
    parser.add_argument("--epoch", type=int, default=1)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--save_dir", default="./saved")
    args = parser.parse_args()
    main(args.model_name, args.dataset_path, args.epoch, batch_size=args.batch_size, device=args.device,
         save_dir=args.save_dir)
