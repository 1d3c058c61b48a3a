"""Ranking scripts in the shape of Torch-RecHub's ``examples/ranking``: DIEN and DIN on Amazon
Electronics (``run_dien.py``, ``run_amazon_electronics.py``) and the Avazu script (``run_avazu.py``).

``din(fixed=False)`` and ``avazu(fixed=False)`` are the upstream scripts' feature setups, which
trainhub rejects on purpose (README lists both with their one-line fix); ``fixed=True`` applies it.

    python tests/compat/scripts/run_ranking.py dien
"""

from __future__ import annotations

import random

import numpy as np
import torch
from sklearn.preprocessing import LabelEncoder, MinMaxScaler

from trainhub.data import DataGenerator, df_to_dict, generate_seq_feature
from trainhub.features import DenseFeature, SequenceFeature, SparseFeature
from trainhub.models.ranking import DCN, DIEN, DIN, DeepFFM, DeepFM, WideDeep
from trainhub.trainers import CTRTrainer

try:
    from synthetic import amazon_electronics
    from synthetic import avazu as avazu_frame
except ImportError:
    from tests.compat.scripts.synthetic import amazon_electronics
    from tests.compat.scripts.synthetic import avazu as avazu_frame


def build_neg_history(split, hist_col, item2cate, n_items):
    """A random other item (and its category) at every non-padding history step: ``seqs[i, t]``."""
    seqs = split[hist_col]  # [N, T] integer array (df_to_dict stacks the padded histories)
    neg_items, neg_cates = np.zeros_like(seqs), np.zeros_like(seqs)
    for i, row in enumerate(seqs):
        for t, item in enumerate(row):
            if item == 0:
                continue
            neg = item
            while neg == item:
                neg = random.randint(1, n_items)
            neg_items[i, t] = neg
            neg_cates[i, t] = item2cate.get(neg, 1)
    return neg_items, neg_cates


def dien(epoch=1, batch_size=64, device="cpu", save_dir="./saved", seed=2022):
    torch.manual_seed(seed)
    random.seed(seed)
    raw = amazon_electronics(seed=seed)
    enc = raw.copy()
    for col in enc:
        enc[col] = LabelEncoder().fit_transform(enc[col]) + 1  # the ids generate_seq_feature will use
    item2cate = enc[["item_id", "cate_id"]].drop_duplicates().set_index("item_id")["cate_id"].to_dict()
    n_users, n_items, n_cates = enc["user_id"].max(), enc["item_id"].max(), enc["cate_id"].max()
    train, val, test = generate_seq_feature(data=raw, user_col="user_id", item_col="item_id", time_col="time",
                                            item_attribute_cols=["cate_id"], max_len=10)
    features = [SparseFeature("user_id", vocab_size=n_users + 1, embed_dim=8)]
    targets = [SparseFeature("target_item_id", vocab_size=n_items + 1, embed_dim=8, padding_idx=0),
               SparseFeature("target_cate_id", vocab_size=n_cates + 1, embed_dim=8, padding_idx=0)]
    history = [SequenceFeature(f"hist_{c}", vocab_size=v + 1, embed_dim=8, pooling="concat",
                               shared_with=f"target_{c}", padding_idx=0) for c, v in (("item_id", n_items),
                                                                                       ("cate_id", n_cates))]
    neg_history = [SequenceFeature(f"neg_hist_{c}", vocab_size=v + 1, embed_dim=8, pooling="concat",
                                   shared_with=f"target_{c}", padding_idx=0) for c, v in (("item_id", n_items),
                                                                                           ("cate_id", n_cates))]
    splits = [df_to_dict(frame) for frame in (train, val, test)]
    labels = [split.pop("label") for split in splits]
    for split in splits:
        split["neg_hist_item_id"], split["neg_hist_cate_id"] = build_neg_history(split, "hist_item_id", item2cate,
                                                                                 n_items)
    dg = DataGenerator(splits[0], labels[0])
    train_dl, val_dl, test_dl = dg.generate_dataloader(x_val=splits[1], y_val=labels[1], x_test=splits[2],
                                                       y_test=labels[2], batch_size=batch_size)
    model = DIEN(features=features, history_features=history, neg_history_features=neg_history,
                 target_features=targets, mlp_params={"dims": [32, 16]}, alpha=0.2)
    trainer = CTRTrainer(model, optimizer_params={"lr": 1e-3, "weight_decay": 1e-3}, n_epoch=epoch,
                         earlystop_patience=4, device=device, model_path=save_dir, loss_mode=False)
    trainer.fit(train_dl, val_dl)
    auc = trainer.evaluate(trainer.model, test_dl)
    print(f"test auc: {auc:.4f}")
    return auc, splits[0]


def din(fixed=True, epoch=1, batch_size=64, device="cpu", save_dir="./saved", seed=2022):
    torch.manual_seed(seed)
    data = amazon_electronics(seed=seed)
    train, val, test = generate_seq_feature(data=data, user_col="user_id", item_col="item_id", time_col="time",
                                            item_attribute_cols=["cate_id"], max_len=10)
    n_users, n_items, n_cates = data["user_id"].max(), data["item_id"].max(), data["cate_id"].max()
    features = [SparseFeature("target_item_id", vocab_size=n_items + 1, embed_dim=8),
                SparseFeature("target_cate_id", vocab_size=n_cates + 1, embed_dim=8),
                SparseFeature("user_id", vocab_size=n_users + 1, embed_dim=8)]
    # Torch-RecHub's script passes all three as targets; DIN pairs targets with the two histories.
    target_features = features[:2] if fixed else features
    history = [SequenceFeature("hist_item_id", vocab_size=n_items + 1, embed_dim=8, pooling="concat",
                               shared_with="target_item_id"),
               SequenceFeature("hist_cate_id", vocab_size=n_cates + 1, embed_dim=8, pooling="concat",
                               shared_with="target_cate_id")]
    splits = [df_to_dict(frame) for frame in (train, val, test)]
    labels = [split.pop("label") for split in splits]
    dg = DataGenerator(splits[0], labels[0])
    train_dl, val_dl, test_dl = dg.generate_dataloader(x_val=splits[1], y_val=labels[1], x_test=splits[2],
                                                       y_test=labels[2], batch_size=batch_size)
    model = DIN(features=features, history_features=history, target_features=target_features,
                mlp_params={"dims": [32, 16]}, attention_mlp_params={"dims": [32, 16]})
    trainer = CTRTrainer(model, optimizer_params={"lr": 1e-3, "weight_decay": 1e-3}, n_epoch=epoch,
                         earlystop_patience=4, device=device, model_path=save_dir)
    trainer.fit(train_dl, val_dl)
    return trainer.evaluate(trainer.model, test_dl)


def avazu(model_name="deepfm", fixed=True, epoch=1, batch_size=64, device="cpu", save_dir="./saved", seed=2022):
    torch.manual_seed(seed)
    data = avazu_frame(seed=seed)
    n_train, n_val = 80, 100
    features = [c for c in data.columns if c.startswith("f")]
    dense_features, sparse_features = features[:3], features[3:]
    for feat in dense_features:  # discretised copies of the counts become extra sparse features
        sparse_features.append(feat + "_cat")
        data[feat + "_cat"] = data[feat].apply(lambda v: int(np.log(v) ** 2) if v > 2 else int(v) - 2)
    data[dense_features] = MinMaxScaler().fit_transform(data[dense_features])
    for feat in sparse_features:
        data[feat] = LabelEncoder().fit_transform(data[feat])
    dense_feas = [DenseFeature(name) for name in dense_features]
    # Torch-RecHub's script builds sparse features from `features`, i.e. also from the three
    # min-max scaled floats; their ids are then fractions. The fix: the encoded sparse columns.
    sparse_names = sparse_features if fixed else features
    sparse_feas = [SparseFeature(name, vocab_size=data[name].nunique(), embed_dim=8) for name in sparse_names]
    ffm_linear = [SparseFeature(f.name, vocab_size=f.vocab_size, embed_dim=1) for f in sparse_feas]
    ffm_cross = [SparseFeature(f.name, vocab_size=f.vocab_size * len(sparse_feas), embed_dim=4) for f in sparse_feas]
    y = data.pop("label")
    dg = DataGenerator(data[:n_train], y[:n_train])
    train_dl, val_dl, test_dl = dg.generate_dataloader(x_val=data[n_train:n_val], y_val=y[n_train:n_val],
                                                       x_test=data[n_val:], y_test=y[n_val:], batch_size=batch_size)
    if model_name == "widedeep":
        model = WideDeep(wide_features=dense_feas, deep_features=sparse_feas, mlp_params={"dims": [16, 8]})
    elif model_name == "deepfm":
        model = DeepFM(deep_features=dense_feas, fm_features=sparse_feas, mlp_params={"dims": [16, 8]})
    elif model_name == "dcn":
        model = DCN(features=dense_feas + sparse_feas, n_cross_layers=2, mlp_params={"dims": [16, 8]})
    else:
        model = DeepFFM(linear_features=ffm_linear, cross_features=ffm_cross, embed_dim=4,
                        mlp_params={"dims": [16, 8], "dropout": 0.5})
    trainer = CTRTrainer(model, optimizer_params={"lr": 1e-3, "weight_decay": 1e-5}, n_epoch=epoch,
                         earlystop_patience=10, device=device, model_path=save_dir)
    trainer.fit(train_dl, val_dl)
    return trainer.evaluate(trainer.model, test_dl)


if __name__ == "__main__":
    import sys

    which = sys.argv[1] if len(sys.argv) > 1 else "dien"
    print({"dien": lambda: dien()[0], "din": din, "avazu": avazu}[which]())
