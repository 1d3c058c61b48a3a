"""Train the same CTR and in-batch matching runs under any torchrun layout; rank 0 writes JSON.

``bench/multinode.sh`` runs it as one node with two processes and as two single-process "nodes"
(c10d rendezvous on 127.0.0.1) and checks that both give the same metrics. Run alone (no
torchrun) it trains in one process with the per-process batch doubled, for reference.

    torchrun --standalone --nproc_per_node=2 bench/ddp_compare.py out.json
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

import numpy as np
import torch

from trainhub.data import DataGenerator, DictDataset, make_loader
from trainhub.features import DenseFeature, SparseFeature
from trainhub.models import toy
from trainhub.models.matching import DSSM
from trainhub.models.ranking import DeepFM
from trainhub.trainers import CTRTrainer, MatchTrainer

WORLD = int(os.environ.get("WORLD_SIZE", "1"))
BATCH = 64 if WORLD > 1 else 128  # per process: the combined batch is 128 either way


def ctr_run(path: str) -> dict:
    rng = np.random.default_rng(0)
    n = 4000
    x = {"user": rng.integers(0, 50, n), "item": rng.integers(0, 80, n), "price": rng.random(n).astype(np.float32)}
    logit = rng.normal(0, 1, 50)[x["user"]] + rng.normal(0, 1, 80)[x["item"]] + 2 * (x["price"] - 0.5)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    sparse = [SparseFeature("user", 50, embed_dim=8), SparseFeature("item", 80, embed_dim=8)]
    train, val, test = DataGenerator(x, y).generate_dataloader(split_ratio=[0.7, 0.15], batch_size=BATCH)
    torch.manual_seed(0)
    model = DeepFM(sparse + [DenseFeature("price")], sparse, {"dims": [32], "batch_norm": False})
    trainer = CTRTrainer(model, optimizer_params={"lr": 0.01, "weight_decay": 0.0}, n_epoch=3, model_path=path,
                         progress=False, seed=0)
    result = trainer.fit(train, val)
    return {"history": result.history, "test": trainer.evaluate_all(trainer.model, test)}


def match_run(path: str) -> dict:
    def rows(n, seed):
        x, _ = toy.match_dataset(2 * n, seed=seed)
        return {k: v[::2] for k, v in x.items()}

    features = toy.sparse_features()
    user = [f for f in features if f.name in ("user_id", "city")]
    item = [f for f in features if f.name in ("item_id", "cate_id")]
    torch.manual_seed(0)
    model = DSSM(user, item, {"dims": [16, 8], "batch_norm": False}, {"dims": [16, 8], "batch_norm": False},
                 temperature=0.2)
    train = make_loader(DictDataset(rows(1024, 0), torch.zeros(1024)), BATCH // 4, shuffle=True, seed=0)
    val = make_loader(DictDataset(rows(256, 1), torch.zeros(256)), 32)
    trainer = MatchTrainer(model, mode=2, in_batch_neg=True, optimizer_params={"lr": 0.01, "weight_decay": 0.0},
                           n_epoch=3, model_path=path, progress=False, seed=0)
    return {"history": trainer.fit(train, val).history}


def main() -> None:
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        result = {"world_size": WORLD, "ctr": ctr_run(f"{tmp}/ctr"), "match": match_run(f"{tmp}/match")}
    if int(os.environ.get("RANK", "0")) == 0:
        with open(sys.argv[1], "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=1)


if __name__ == "__main__":
    main()
