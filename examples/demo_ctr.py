"""Demo: train DeepFM with CTRTrainer on Criteo samples.

Run with ``make demo`` or ``python examples/demo_ctr.py``. It trains on the 115-row Torch-RecHub
sample shipped in ``examples/data`` and, when ``../shared/data/rec/criteo_kaggle_sample`` is
present, also on that 8,000-row sample (115 rows are too few for a meaningful AUC). It prints
validation and test AUC and where the MLflow and TensorBoard logs are.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.preprocessing import MinMaxScaler

import trainhub
from trainhub.data import CategoricalEncoder, DataGenerator, df_to_dict
from trainhub.features import DenseFeature, SparseFeature
from trainhub.models.ranking import DeepFM
from trainhub.trainers import CTRTrainer

HERE = Path(__file__).resolve().parent
SHIPPED = HERE / "data" / "criteo_sample.csv"
KAGGLE = HERE.parent.parent / "shared" / "data" / "rec" / "criteo_kaggle_sample"
COLUMNS = ["label"] + [f"I{i}" for i in range(1, 14)] + [f"C{i}" for i in range(1, 27)]


def prepare(frames: list[pd.DataFrame], encoder_path: Path):
    """Fit encoders on the first frame (train); return features and (x, y) for every frame."""
    train = frames[0]
    dense_cols = [c for c in train.columns if c.startswith("I")]
    sparse_cols = [c for c in train.columns if c.startswith("C")] + [f"{c}_cat" for c in dense_cols]
    for df in frames:
        # Bucketise each dense value (log^2) into an extra categorical column.
        for col in dense_cols:
            values = df[col].fillna(0).astype(float)
            df[f"{col}_cat"] = np.where(values > 2, np.floor(np.log(values.clip(lower=1)) ** 2), values - 2).astype(int)
    scaler = MinMaxScaler().fit(train[dense_cols].fillna(0))
    encoder = CategoricalEncoder(sparse_cols).fit(train)
    encoder.save(encoder_path)
    data = []
    for df in frames:
        df[dense_cols] = scaler.transform(df[dense_cols].fillna(0)).clip(0, 1)
        df = encoder.transform(df)
        y = df.pop("label").to_numpy()
        data.append((df_to_dict(df), y))
    dense = [DenseFeature(c) for c in dense_cols]
    sparse = [SparseFeature(c, vocab_size=encoder.vocab_sizes[c], embed_dim=16) for c in sparse_cols]
    return dense, sparse, data


def run(name: str, frames: list[pd.DataFrame], out: Path, epochs: int, batch_size: int, seed: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    dense, sparse, data = prepare(frames, out / "encoder.json")
    if len(data) == 1:  # one file: Torch-RecHub's seeded 70/10/20 split
        dg = DataGenerator(*data[0])
        train_dl, val_dl, test_dl = dg.generate_dataloader(split_ratio=[0.7, 0.1], batch_size=batch_size, seed=seed)
    else:
        (x, y), (xv, yv), (xt, yt) = data
        train_dl, val_dl, test_dl = DataGenerator(x, y).generate_dataloader(xv, yv, xt, yt, batch_size=batch_size,
                                                                            seed=seed)
    trainhub.seed_everything(seed)  # before the model: its initial weights are random
    model = DeepFM(deep_features=dense + sparse, fm_features=sparse,
                   mlp_params={"dims": [64, 32], "dropout": 0.2, "activation": "relu"})
    trainer = CTRTrainer(
        model, optimizer_params={"lr": 1e-3, "weight_decay": 1e-5}, n_epoch=epochs, earlystop_patience=3,
        model_path=str(out), seed=seed, loggers=["csv", "tensorboard", "mlflow"], experiment_name=f"demo_{name}",
        progress=False,
    )
    result = trainer.fit(train_dl, val_dl)
    val = trainer.evaluate_all(trainer.model, val_dl)
    test = trainer.evaluate_all(trainer.model, test_dl)
    logs = (out / "logs").resolve()
    print(f"\n== DeepFM on {name}: train {len(train_dl.dataset)}, validation {len(val_dl.dataset)}, "
          f"test {len(test_dl.dataset)} rows ==")
    print(f"best epoch {result.best_epoch} of {result.state.epoch} run (kept and saved)")
    print(f"validation AUC: {val['auc']:.4f}   log loss: {val['logloss']:.4f}")
    print(f"test AUC:       {test['auc']:.4f}   log loss: {test['logloss']:.4f}")
    print(f"weights:     {(out / 'model.pth').resolve()} and best.safetensors")
    print(f"metrics CSV: {logs / 'metrics.csv'}")
    print(f"TensorBoard: tensorboard --logdir {logs / 'tensorboard'}")
    print(f"MLflow:      mlflow ui --backend-store-uri sqlite:///{logs / 'mlflow.db'}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("runs") / "demo_ctr")
    parser.add_argument("--seed", type=int, default=2022)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    run("criteo_sample (115 rows, shipped)", [pd.read_csv(SHIPPED)], args.out / "sample", args.epochs, 16,
        args.seed)
    if KAGGLE.is_dir():
        frames = [pd.read_csv(KAGGLE / f"{part}.csv", sep="\t", header=None, names=COLUMNS)
                  for part in ("train", "dev", "test")]
        run("criteo_kaggle_sample (8,000 rows)", frames, args.out / "kaggle", args.epochs, 256, args.seed)
    else:
        print(f"(skipped the 8,000-row Criteo sample: {KAGGLE} not found)")


if __name__ == "__main__":
    main()
