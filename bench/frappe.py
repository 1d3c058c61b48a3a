"""Frappe quality check: DeepFM, DCN, DCNv2, WideDeep, AutoInt (and trainhub's FM/LR) vs a
scikit-learn logistic regression on one-hot features.

    .venv/bin/python bench/frappe.py [--data-dir ../shared/data/rec/frappe] [--out bench/results/frappe.json]

Protocol (the public Frappe train split is not available): train on ``frappe.validation.libfm``
(57,722 rows; 80% train, 20% held out for early stopping on ``--monitor``, AUC by
default), test on ``frappe.test.libfm``
(28,860 rows). libFM lines are ``label idx:1 x 10`` with labels +1/-1 and global one-hot indices
in a fixed field order; each of the 10 fields becomes one categorical column (ids fitted on
the training part; unseen test values map to the OOV id). Prints a markdown table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DIR = ROOT.parent / "shared" / "data" / "rec" / "frappe"
FIELDS = ["user", "item", "daytime", "weekday", "isweekend", "homework", "cost", "weather", "country", "city"]
DEFAULT_MODELS = ("DeepFM", "DCN", "DCNv2", "WideDeep", "AutoInt")  # add FM / LR with --models
OOV = 1  # id of values unseen in training; 0 is left free (padding/missing convention)


def read_libfm(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(x [N, 10] global indices, y [N] in {0, 1})``; every line must have 10 ``idx:1`` tokens."""
    rows, labels = [], []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            tokens = line.split()
            if not tokens:
                continue
            if len(tokens) != 1 + len(FIELDS):
                raise ValueError(f"{path.name}:{lineno}: expected 11 tokens, got {len(tokens)}")
            labels.append(1.0 if float(tokens[0]) > 0 else 0.0)
            rows.append([int(t.split(":")[0]) for t in tokens[1:]])
    return np.asarray(rows, dtype=np.int64), np.asarray(labels, dtype=np.float32)


def encode(train: np.ndarray, others: list[np.ndarray]) -> tuple[list[np.ndarray], list[int]]:
    """Per-field ids ``2..`` for values seen in ``train``, ``OOV`` otherwise; returns vocab sizes too."""
    vocabs = [{v: i + 2 for i, v in enumerate(np.unique(train[:, f]))} for f in range(train.shape[1])]
    out = []
    for data in [train, *others]:
        cols = [np.fromiter((vocabs[f].get(v, OOV) for v in data[:, f]), np.int64, len(data))
                for f in range(data.shape[1])]
        out.append(np.stack(cols, axis=1))
    return out, [len(v) + 2 for v in vocabs]


def as_dict(x: np.ndarray) -> dict[str, np.ndarray]:
    return {name: x[:, i] for i, name in enumerate(FIELDS)}


def sklearn_lr(x_train, y_train, x_test, y_test) -> dict[str, float]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss, roc_auc_score
    from sklearn.preprocessing import OneHotEncoder

    onehot = OneHotEncoder(handle_unknown="ignore").fit(x_train)
    clf = LogisticRegression(max_iter=2000).fit(onehot.transform(x_train), y_train)
    p = clf.predict_proba(onehot.transform(x_test))[:, 1]
    return {"auc": roc_auc_score(y_test, p), "logloss": log_loss(y_test, p)}


def build_models(vocab_sizes: list[int], embed_dim: int) -> dict:
    from trainhub.features import SparseFeature
    from trainhub.models.ranking import DCN, FM, LR, AutoInt, DCNv2, DeepFM, WideDeep

    sparse = [SparseFeature(n, v, embed_dim=embed_dim) for n, v in zip(FIELDS, vocab_sizes)]
    mlp = {"dims": [256, 128], "dropout": 0.2}
    return {
        "DeepFM": lambda: DeepFM(deep_features=sparse, fm_features=sparse, mlp_params=mlp),
        "DCN": lambda: DCN(features=sparse, n_cross_layers=3, mlp_params=mlp),
        "DCNv2": lambda: DCNv2(features=sparse, n_cross_layers=3, mlp_params=mlp),
        "WideDeep": lambda: WideDeep(wide_features=sparse, deep_features=sparse, mlp_params=mlp),
        "AutoInt": lambda: AutoInt(sparse_features=sparse, dense_features=[], num_layers=3, num_heads=2,
                                   mlp_params=mlp),
        "FM (trainhub)": lambda: FM(features=sparse),
        "LR (trainhub)": lambda: LR(features=sparse),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "frappe.json")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--embed-dim", type=int, default=16)
    parser.add_argument("--seed", type=int, default=2022)
    parser.add_argument("--embedding-l2", type=float, default=0.0,
                        help="regularization_params['embedding_l2'] (penalty on all embedding tables)")
    parser.add_argument("--monitor", choices=["auc", "logloss"], default="auc",
                        help="validation metric for early stopping and the kept weights")
    parser.add_argument("--models", nargs="*", default=None,
                        help="models to run (default: the five deep models; FM and LR are trainhub extras)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    train_file, test_file = args.data_dir / "frappe.validation.libfm", args.data_dir / "frappe.test.libfm"
    if not (train_file.is_file() and test_file.is_file()):
        print(f"SKIP: Frappe data not found in {args.data_dir} (needs frappe.validation.libfm and "
              f"frappe.test.libfm; see ../shared/data/rec/SOURCES.md)")
        return 0

    from trainhub.data import DataGenerator
    from trainhub.trainers import CTRTrainer

    torch.set_num_threads(2)
    x_all, y_all = read_libfm(train_file)
    x_test_raw, y_test = read_libfm(test_file)
    perm = np.random.default_rng(args.seed).permutation(len(x_all))
    n_train = int(0.8 * len(x_all))
    train_idx, val_idx = perm[:n_train], perm[n_train:]
    (x_train, x_val, x_test), vocab_sizes = encode(x_all[train_idx], [x_all[val_idx], x_test_raw])
    y_train, y_val = y_all[train_idx], y_all[val_idx]
    print(f"Frappe: train {len(x_train)}, validation {len(x_val)}, test {len(x_test)} rows; "
          f"positives {y_train.mean():.3f}")

    results = {}
    start = time.time()
    results["LR (sklearn, one-hot)"] = {**sklearn_lr(x_train, y_train, x_test, y_test), "epochs": None,
                                        "seconds": round(time.time() - start, 1)}
    print(f"LR (sklearn): {results['LR (sklearn, one-hot)']}")

    loaders = DataGenerator(as_dict(x_train), y_train).generate_dataloader(
        as_dict(x_val), y_val, as_dict(x_test), y_test, batch_size=args.batch_size, seed=args.seed)
    train_dl, val_dl, test_dl = loaders
    for name, make in build_models(vocab_sizes, args.embed_dim).items():
        short = name.split()[0]
        wanted = args.models or DEFAULT_MODELS
        if short not in wanted:
            continue
        torch.manual_seed(args.seed)
        start = time.time()
        trainer = CTRTrainer(make(), optimizer_params={"lr": 1e-3, "weight_decay": 1e-6}, n_epoch=args.epochs,
                             regularization_params={"embedding_l2": args.embedding_l2},
                             earlystop_patience=2, earlystop_monitor=args.monitor,
                             earlystop_mode="max" if args.monitor == "auc" else "min",
                             model_path=str(ROOT / "runs" / "bench_frappe" / short),
                             seed=args.seed, progress=False, save_last=False)
        result = trainer.fit(train_dl, val_dl)
        test = trainer.evaluate_all(trainer.model, test_dl)
        results[name] = {"auc": test["auc"], "logloss": test["logloss"], "epochs": result.best_epoch,
                         "seconds": round(time.time() - start, 1)}
        print(f"{name}: {results[name]}", flush=True)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print("\n| model | test AUC | test log loss | best epoch | seconds |\n|---|---|---|---|---|")
    for name, r in results.items():
        epoch = "-" if r["epochs"] is None else r["epochs"]
        print(f"| {name} | {r['auc']:.4f} | {r['logloss']:.4f} | {epoch} | {r['seconds']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
