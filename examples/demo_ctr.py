"""Demo: train DeepFM with `trainhub train examples/configs/deepfm_ctr.yaml`, then reload the run
folder and score new rows, as a user would without this script.

Run with ``make demo`` or ``python examples/demo_ctr.py [key=value ...]``. The data is
``synthetic_ctr``, generated from a seed by code in the repository (50,000 rows; nothing to
download): clicks follow a known logistic model, so the demo can print the AUC of the generator's
own probabilities next to the model's. That is the best any model can score on these rows.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from trainhub.runs import load_dataset, load_run, train_run

CONFIG = Path(__file__).resolve().parent / "configs" / "deepfm_ctr.yaml"


def main(overrides: list[str]) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    start = time.time()
    # One thread: the model is small, and extra threads only wait on each other on a busy machine.
    result = train_run(CONFIG, ["num_threads=1", "trainer.progress=false", "loggers=[csv,tensorboard,mlflow]",
                                *overrides])
    seconds = time.time() - start

    run = load_run(result.run_dir)  # a fresh model, rebuilt from the folder alone
    rows = run.manifest["rows"]
    frames = load_dataset("synthetic_ctr", **yaml_params(run))
    test = frames["test"]
    probs = run.predict(test.drop(columns=["label", "oracle_prob"]))
    oracle = roc_auc_score(test["label"], test["oracle_prob"])
    item_rate = frames["train"].groupby("item_id")["label"].mean()  # baseline: each item's training click rate
    by_item = test["item_id"].map(item_rate).fillna(frames["train"]["label"].mean())

    print(f"\n== DeepFM on synthetic_ctr: train {rows['train']:,}, validation {rows['val']:,}, "
          f"test {rows['test']:,} rows; {result.epochs_run} epochs in {seconds:.0f} s "
          f"(best: epoch {result.best_epoch + 1}) ==")
    print(f"test AUC (trained model):                {result.metrics['test']['auc']:.4f}")
    print(f"test AUC (reloaded from the run folder): {roc_auc_score(test['label'], probs):.4f}")
    print(f"test AUC (generator's own probabilities, the ceiling): {oracle:.4f}")
    print(f"test AUC (baseline: the item's click rate in the training rows): "
          f"{roc_auc_score(test['label'], by_item):.4f}")
    print(f"test AUC (a constant guess): 0.5000;  click rate {test['label'].mean():.3f}")

    new = test.drop(columns=["label", "oracle_prob"]).head(3).copy()
    new.loc[new.index[0], "user_id"] = "a-user-never-seen"  # unseen ids map to the OOV id
    print("\nscoring new rows with trainhub.load_run(folder).predict(rows):")
    for (_, row), p in zip(new.iterrows(), run.predict(new)):
        print(f"  user={row.user_id:18s} item={row.item_id:5s} price={row.price:7.2f}  p(click)={p:.3f}")
    folder = result.run_dir.resolve()
    print(f"\nrun folder:  {folder}  (run.json, model.safetensors, encoder.json, curves.png, ...)")
    print(f"same from the shell: trainhub predict {folder} rows.parquet")
    print(f"TensorBoard: tensorboard --logdir {folder / 'logs' / 'tensorboard'}")
    print(f"MLflow:      mlflow ui --backend-store-uri sqlite:///{folder / 'logs' / 'mlflow.db'}\n")
    if not np.isfinite(probs).all():
        raise SystemExit("predictions are not finite")


def yaml_params(run) -> dict:
    """The dataset parameters the run was trained with (from its saved config)."""
    import yaml

    return yaml.safe_load((run.folder / "config.yaml").read_text())["dataset"].get("params", {})


if __name__ == "__main__":
    main(sys.argv[1:])
