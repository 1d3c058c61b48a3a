"""Example: DIN on Torch-RecHub's Amazon-Electronics sample (runs in seconds).

    python examples/din_amazon.py [--data other.csv] [--epochs 5] [--out runs/din_amazon]

The shipped sample (``examples/data/amazon_electronics_sample.csv``, 100 clicks of 17 users)
has columns ``user_id, item_id, time, cate_id``. ``generate_seq_feature`` turns each user's
clicks into sliding-window samples (history -> next item, plus one sampled negative), the
user's last click becomes the test sample and the one before it the validation sample. DIN
attends over the item and category histories with the candidate item as the query.

100 clicks say nothing about model quality; the AUC printed is a smoke check. Point ``--data``
at the full Amazon-Electronics file (same columns) for a real run.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pandas as pd

import trainhub
from trainhub.data import DataGenerator, df_to_dict, generate_seq_feature
from trainhub.features import SequenceFeature, SparseFeature
from trainhub.models.ranking import DIN
from trainhub.trainers import CTRTrainer

HERE = Path(__file__).resolve().parent
SHIPPED = HERE / "data" / "amazon_electronics_sample.csv"


def build_features(frames: list[pd.DataFrame], embed_dim: int = 8):
    """Vocabulary sizes from the encoded frames (ids start at 1; 0 is padding)."""
    def vocab(*cols: str) -> int:
        top = 0
        for df in frames:
            for col in cols:
                values = df[col]
                top = max(top, int(values.map(max).max() if values.dtype == object else values.max()))
        return top + 1

    n_items, n_cates = vocab("target_item_id", "hist_item_id"), vocab("target_cate_id", "hist_cate_id")
    features = [SparseFeature("user_id", vocab("user_id"), embed_dim)]
    target_features = [SparseFeature("target_item_id", n_items, embed_dim),
                       SparseFeature("target_cate_id", n_cates, embed_dim)]
    history_features = [
        SequenceFeature("hist_item_id", n_items, embed_dim, pooling="concat", shared_with="target_item_id"),
        SequenceFeature("hist_cate_id", n_cates, embed_dim, pooling="concat", shared_with="target_cate_id"),
    ]
    return features, history_features, target_features


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=SHIPPED)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-len", type=int, default=50)
    parser.add_argument("--out", type=Path, default=Path("runs") / "din_amazon")
    parser.add_argument("--seed", type=int, default=2022)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    data = pd.read_csv(args.data)
    train, val, test = generate_seq_feature(data, "user_id", "item_id", "time", item_attribute_cols=["cate_id"],
                                            max_len=args.max_len, seed=args.seed)
    features, history_features, target_features = build_features([train, val, test])
    splits = [(df_to_dict(df.drop(columns="label")), df["label"].to_numpy()) for df in (train, val, test)]
    (x, y), (xv, yv), (xt, yt) = splits
    train_dl, val_dl, test_dl = DataGenerator(x, y).generate_dataloader(xv, yv, xt, yt, batch_size=args.batch_size,
                                                                        seed=args.seed)

    trainhub.seed_everything(args.seed)  # before the model: its initial weights are random
    model = DIN(features=features, history_features=history_features, target_features=target_features,
                mlp_params={"dims": [64, 32], "dropout": 0.1},
                attention_mlp_params={"dims": [32, 16]})
    trainer = CTRTrainer(model, optimizer_params={"lr": 1e-3, "weight_decay": 1e-5}, n_epoch=args.epochs,
                         earlystop_patience=2, model_path=str(args.out), seed=args.seed, progress=False)
    result = trainer.fit(train_dl, val_dl)
    test_metrics = trainer.evaluate_all(trainer.model, test_dl)
    print(f"DIN on {args.data.name}: train {len(train)}, validation {len(val)}, test {len(test)} rows")
    print(f"best epoch {result.best_epoch}; test AUC {test_metrics['auc']:.4f}, log loss {test_metrics['logloss']:.4f}")
    print(f"weights: {(args.out / 'model.pth').resolve()}")


if __name__ == "__main__":
    main()
