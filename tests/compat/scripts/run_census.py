"""A multi-task script in the shape of Torch-RecHub's ``examples/ranking/run_census.py``.

    python tests/compat/scripts/run_census.py MMOE
"""

from __future__ import annotations

import torch

from trainhub.data import DataGenerator
from trainhub.features import DenseFeature, SparseFeature
from trainhub.models.multitask import AITM, ESMM, MMOE, PLE, SharedBottom
from trainhub.trainers import MTLTrainer

try:
    from synthetic import census
except ImportError:
    from tests.compat.scripts.synthetic import census


def get_census_data_dict(model_name, data):
    n_train, n_val = 100, 130
    data = data.rename(columns={"income": "cvr_label", "marital status": "ctr_label"})
    data["ctcvr_label"] = data["cvr_label"] * data["ctr_label"]
    dense_cols = [c for c in data.columns if c.startswith("d")]
    sparse_cols = [c for c in data.columns if c.startswith("s")]
    if model_name == "ESMM":
        label_cols, user_cols = ["cvr_label", "ctr_label", "ctcvr_label"], sparse_cols[:3]
        user_features = [SparseFeature(c, data[c].max() + 1, embed_dim=8) for c in user_cols]
        item_features = [SparseFeature(c, data[c].max() + 1, embed_dim=8) for c in sparse_cols[3:]]
        used = sparse_cols
    else:
        label_cols = ["cvr_label", "ctr_label"]
        features = [SparseFeature(c, data[c].max() + 1, embed_dim=4) for c in sparse_cols] + [
            DenseFeature(c) for c in dense_cols]
        used = sparse_cols + dense_cols
    splits = [(0, n_train), (n_train, n_val), (n_val, len(data))]
    xs = [{name: data[name].values[a:b] for name in used} for a, b in splits]
    ys = [data[label_cols].values[a:b] for a, b in splits]
    feats = (user_features, item_features) if model_name == "ESMM" else (features,)
    return feats, xs, ys


def main(model_name="MMOE", epoch=1, learning_rate=1e-3, batch_size=32, weight_decay=1e-4, device="cpu",
         save_dir="./saved", seed=2022, adaptive_params=None):
    torch.manual_seed(seed)
    feats, (x_train, x_val, x_test), (y_train, y_val, y_test) = get_census_data_dict(model_name, census(seed=seed))
    task_types = ["classification", "classification"]
    if model_name == "SharedBottom":
        model = SharedBottom(feats[0], task_types, bottom_params={"dims": [16]}, tower_params_list=[{"dims": [8]}] * 2)
    elif model_name == "ESMM":
        task_types = ["classification"] * 3  # cvr, ctr, ctcvr
        model = ESMM(feats[0], feats[1], cvr_params={"dims": [16, 8]}, ctr_params={"dims": [16, 8]})
    elif model_name == "MMOE":
        model = MMOE(feats[0], task_types, 4, expert_params={"dims": [16]}, tower_params_list=[{"dims": [8]}] * 2)
    elif model_name == "PLE":
        model = PLE(feats[0], task_types, n_level=1, n_expert_specific=2, n_expert_shared=1,
                    expert_params={"dims": [16]}, tower_params_list=[{"dims": [8]}] * 2)
    else:
        model = AITM(feats[0], 2, bottom_params={"dims": [16, 8]}, tower_params_list=[{"dims": [8]}] * 2)
    dg = DataGenerator(x_train, y_train)
    train_dl, val_dl, test_dl = dg.generate_dataloader(x_val=x_val, y_val=y_val, x_test=x_test, y_test=y_test,
                                                       batch_size=batch_size)
    trainer = MTLTrainer(model, task_types=task_types, optimizer_params={"lr": learning_rate,
                         "weight_decay": weight_decay}, n_epoch=epoch, earlystop_patience=30, device=device,
                         model_path=save_dir, adaptive_params=adaptive_params)
    trainer.fit(train_dl, val_dl)
    auc = trainer.evaluate(trainer.model, test_dl)
    print(f"test auc: {auc}")
    return auc


if __name__ == "__main__":
    import sys

    main(sys.argv[1] if len(sys.argv) > 1 else "MMOE")
