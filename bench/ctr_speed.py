"""One CTR training epoch timed with the same script on trainhub or Torch-RecHub.

The two libraries share the API, so only the imports differ. Run through ``bench/run.py``:
``python bench/ctr_speed.py --lib trainhub|torch_rechub --rows 200000`` prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import numpy as np
import torch


def synthetic_criteo(rows: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = {f"C{i}": rng.integers(0, 1000, rows) for i in range(1, 27)}
    x.update({f"I{i}": rng.random(rows).astype(np.float32) for i in range(1, 14)})
    w = rng.normal(0, 0.5, 1000)
    logit = w[x["C1"]] + w[x["C2"]] - w[x["C3"]] + x["I1"] - 0.5
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    return x, y


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lib", choices=["trainhub", "torch_rechub"], required=True)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--out", default="/tmp/trainhub_bench_ctr")
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)

    if args.lib == "trainhub":
        from trainhub.data import DataGenerator
        from trainhub.features import DenseFeature, SparseFeature
        from trainhub.models.ranking import DeepFM
        from trainhub.trainers import CTRTrainer
        extra = {"progress": False, "save_last": False}
    else:
        from torch_rechub.basic.features import DenseFeature, SparseFeature
        from torch_rechub.models.ranking import DeepFM
        from torch_rechub.trainers import CTRTrainer
        from torch_rechub.utils.data import DataGenerator
        extra = {}

    x, y = synthetic_criteo(args.rows)
    sparse = [SparseFeature(f"C{i}", vocab_size=1000, embed_dim=16) for i in range(1, 27)]
    dense = [DenseFeature(f"I{i}") for i in range(1, 14)]
    t0 = time.perf_counter()
    train_dl, val_dl, _ = DataGenerator(x, y).generate_dataloader(split_ratio=[0.9, 0.1], batch_size=args.batch_size)
    t_data = time.perf_counter() - t0
    model = DeepFM(deep_features=dense + sparse, fm_features=sparse,
                   mlp_params={"dims": [256, 128], "dropout": 0.2, "activation": "relu"})
    trainer = CTRTrainer(model, n_epoch=1, model_path=args.out, **extra)
    t0 = time.perf_counter()
    trainer.fit(train_dl, val_dl)
    t_fit = time.perf_counter() - t0
    auc = trainer.evaluate(trainer.model, val_dl)
    n_train = int(args.rows * 0.9)
    print(json.dumps({
        "lib": args.lib, "rows": args.rows, "batch_size": args.batch_size,
        "data_s": round(t_data, 3), "fit_s": round(t_fit, 3),
        "train_rows_per_s": round(n_train / t_fit), "val_auc": round(float(auc), 4),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }))


if __name__ == "__main__":
    main()
