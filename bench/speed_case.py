"""One speed case, one run, on trainhub or Torch-RecHub: the same code, only the imports differ.

    python bench/speed_case.py --lib trainhub|torch_rechub --case deepfm [--scale 1.0] [--seed 0]

prints one JSON line (the last line of stdout). ``bench/run.py`` runs every case in its own
subprocess, alternating the libraries, and builds the tables. Cases:

- ``deepfm``: DeepFM + CTRTrainer, one epoch, 26 Zipf-distributed categorical fields with
  vocabularies from 1k to 100k (~9.58M parameters at embed_dim 16) + 13 dense, batch 2048; then
  ``evaluate`` and ``predict`` on the validation loader are timed too.
- ``deepfm_3ep``: the same for three epochs, validation AUC after each (via ``model_logger``).
- ``deepfm_1m``: ``deepfm`` with the largest table grown to 1,000,000 rows (Criteo-like).
- ``deepfm_old``: the earlier case: uniform ids, vocabulary 1,000 for every field, batch 1024.
- ``deepfm_bf16``: ``deepfm`` with trainhub's opt-in ``precision="bf16"`` (bfloat16 autocast);
  Torch-RecHub has no such option and runs float32.
- ``mmoe``: MMOE + MTLTrainer, 30 fields (vocabularies 10 to 10k), 2 tasks, batch 1024.
- ``dssm`` / ``youtubednn``: MatchTrainer list-wise with in-batch negatives (``mode=2,
  in_batch_neg=True``) on ~200k synthetic interactions (20k users, 50k items), Recall@50 on
  held-out interactions from ``inference_embedding`` + exact top-k in plain torch.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import sys
import tempfile
import time

import numpy as np
import torch

THREADS = int(os.environ.get("BENCH_THREADS", "2"))  # torch threads per run


# name -> (trainhub module, Torch-RecHub module): the only library-specific code.
IMPORTS = {
    "DataGenerator": ("trainhub.data", "torch_rechub.utils.data"),
    "MatchDataGenerator": ("trainhub.data", "torch_rechub.utils.data"),
    "DenseFeature": ("trainhub.features", "torch_rechub.basic.features"),
    "SequenceFeature": ("trainhub.features", "torch_rechub.basic.features"),
    "SparseFeature": ("trainhub.features", "torch_rechub.basic.features"),
    "DeepFM": ("trainhub.models.ranking", "torch_rechub.models.ranking"),
    "MMOE": ("trainhub.models.multitask", "torch_rechub.models.multi_task"),
    "DSSM": ("trainhub.models.matching", "torch_rechub.models.matching"),
    "YoutubeDNN": ("trainhub.models.matching", "torch_rechub.models.matching"),
    "CTRTrainer": ("trainhub.trainers", "torch_rechub.trainers"),
    "MatchTrainer": ("trainhub.trainers", "torch_rechub.trainers"),
    "MTLTrainer": ("trainhub.trainers", "torch_rechub.trainers"),
}


def load_lib(lib: str) -> argparse.Namespace:
    """``lib.DeepFM``, ``lib.CTRTrainer``, ... from trainhub or Torch-RecHub."""
    column = 0 if lib == "trainhub" else 1
    return argparse.Namespace(name=lib, **{name: getattr(importlib.import_module(modules[column]), name)
                                           for name, modules in IMPORTS.items()})


# ---------------------------------------------------------------------------------- data
def zipf_ids(rng: np.random.Generator, vocab: int, rows: int, exponent: float = 1.1) -> np.ndarray:
    """Ids in [0, vocab) with Zipf-like frequencies; the popular ids are scattered, not 0, 1, 2..."""
    cdf = np.cumsum(1.0 / np.arange(1, vocab + 1) ** exponent)
    ranks = np.minimum(np.searchsorted(cdf, rng.random(rows) * cdf[-1]), vocab - 1)
    return rng.permutation(vocab)[ranks].astype(np.int64)


def ctr_vocabs(big_table: int | None = None) -> list[int]:
    vocabs = [int(v) for v in np.geomspace(1_000, 100_000, 26).round()]
    if big_table:
        vocabs[-1] = big_table
    return vocabs


def synthetic_ctr(rows: int, vocabs: list[int], seed: int):
    """26 Zipf categorical fields + 13 dense; the label mixes per-id effects of eight fields of
    every size, one pairwise interaction and two dense fields (validation AUC ~0.8 is reachable)."""
    rng = np.random.default_rng(seed)
    x = {f"C{i + 1}": zipf_ids(rng, v, rows) for i, v in enumerate(vocabs)}
    x.update({f"I{i}": rng.random(rows).astype(np.float32) for i in range(1, 14)})
    logit = np.full(rows, -1.0)
    for i in (0, 3, 7, 11, 15, 19, 22, 25):
        name = f"C{i + 1}"
        logit += rng.normal(0, 0.9, vocabs[i])[x[name]]
    pair = rng.normal(0, 0.8, 997)
    logit += pair[(x["C1"] * 31 + x["C2"]) % 997]
    logit += 1.5 * (x["I1"] - 0.5) - 1.0 * (x["I2"] - 0.5)
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    return x, y


def synthetic_ctr_old(rows: int, seed: int):
    """The earlier case, kept as it was: uniform ids in 1,000 values, a label from three fields."""
    rng = np.random.default_rng(seed)
    x = {f"C{i}": rng.integers(0, 1000, rows) for i in range(1, 27)}
    x.update({f"I{i}": rng.random(rows).astype(np.float32) for i in range(1, 14)})
    w = rng.normal(0, 0.5, 1000)
    logit = w[x["C1"]] + w[x["C2"]] - w[x["C3"]] + x["I1"] - 0.5
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    return x, y


def synthetic_mtl(rows: int, seed: int):
    """30 categorical fields (vocabularies 10..10k), two correlated binary tasks."""
    rng = np.random.default_rng(seed)
    vocabs = [int(v) for v in np.geomspace(10, 10_000, 30).round()]
    x = {f"F{i}": zipf_ids(rng, v, rows, 1.05) for i, v in enumerate(vocabs)}
    shared = sum(rng.normal(0, 0.6, vocabs[i])[x[f"F{i}"]] for i in (2, 9, 17, 26))
    own = [sum(rng.normal(0, 0.7, vocabs[i])[x[f"F{i}"]] for i in fields) for fields in ((0, 5, 21), (4, 13, 29))]
    y = np.stack([rng.random(rows) < 1 / (1 + np.exp(-(shared + own[t] - 1.0))) for t in range(2)], 1)
    return x, vocabs, y.astype(np.float32)


def synthetic_match(interactions: int, seed: int, num_users: int = 20_000, num_items: int = 50_000):
    """Users in 200 taste clusters (each prefers 5 of 100 categories), the city hints at the cluster;
    items Zipf-popular within their category. 10% of interactions are held out for Recall@50."""
    rng = np.random.default_rng(seed)
    num_cats, num_clusters = 100, 200
    item_cat = rng.integers(0, num_cats, num_items)
    item_brand = item_cat * 10 + rng.integers(0, 10, num_items)
    popularity = 1.0 / np.arange(1, num_items + 1) ** 0.9
    popularity = popularity[rng.permutation(num_items)]
    cat_items = [np.flatnonzero(item_cat == c) for c in range(num_cats)]
    cat_cdf = [np.cumsum(popularity[items]) / popularity[items].sum() for items in cat_items]
    user_cluster = rng.integers(0, num_clusters, num_users)
    user_city = np.where(rng.random(num_users) < 0.8, user_cluster, rng.integers(0, num_clusters, num_users))
    user_age = rng.integers(0, 10, num_users)
    cluster_cats = rng.integers(0, num_cats, (num_clusters, 5))

    users = zipf_ids(rng, num_users, interactions, 0.6)
    cats = np.where(rng.random(interactions) < 0.8, cluster_cats[user_cluster[users], rng.integers(0, 5, interactions)],
                    rng.integers(0, num_cats, interactions))
    items = np.empty(interactions, dtype=np.int64)
    for c in range(num_cats):
        rows = np.flatnonzero(cats == c)
        pick = np.minimum(np.searchsorted(cat_cdf[c], rng.random(len(rows))), len(cat_items[c]) - 1)
        items[rows] = cat_items[c][pick]

    def columns(u: np.ndarray, i: np.ndarray | None) -> dict:
        x = {"user_id": u, "user_age": user_age[u], "user_city": user_city[u]}
        if i is not None:
            x.update({"item_id": i, "item_cat": item_cat[i], "item_brand": item_brand[i]})
        return x

    test = rng.random(interactions) < 0.1
    x_train = columns(users[~test], items[~test])
    # negatives for models that take them as input (unused with in-batch negatives)
    x_train["neg_items"] = rng.integers(0, num_items, (int((~test).sum()), 3))
    all_items = np.arange(num_items)
    x_items = {"item_id": all_items, "item_cat": item_cat, "item_brand": item_brand}
    return x_train, columns(users[test], None), x_items, items[test], num_users, num_items


# -------------------------------------------------------------------------------- helpers
class RecordingLogger:
    """A Torch-RecHub-style ``model_logger`` (both libraries call it) keeping every logged metric."""

    def __init__(self):
        self.records: list[dict] = []

    def log_hyperparams(self, params):
        pass

    def log_metrics(self, metrics, step=None):
        self.records.append(dict(metrics))

    def finish(self):
        pass

    def series(self, key: str) -> list[float]:
        return [float(r[key]) for r in self.records if key in r]


def peak_rss_mb() -> int:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def split(x: dict, y: np.ndarray, val_fraction: float = 0.1):
    """Fixed split (both libraries get the same rows): the last ``val_fraction`` is validation."""
    n_val = int(len(y) * val_fraction)
    head = {k: v[:-n_val] for k, v in x.items()}
    tail = {k: v[-n_val:] for k, v in x.items()}
    return head, y[:-n_val], tail, y[-n_val:]


def recall_at_k(user_emb: torch.Tensor, item_emb: torch.Tensor, target: np.ndarray, k: int = 50) -> float:
    """Fraction of held-out interactions whose item is in the user's exact top-k (all items ranked)."""
    target_t = torch.as_tensor(target)
    hits = 0
    for start in range(0, len(user_emb), 2048):
        top = (user_emb[start:start + 2048] @ item_emb.T).topk(k, dim=1).indices  # [b, k]
        hits += int((top == target_t[start:start + 2048, None]).any(1).sum())
    return hits / len(target)


# ---------------------------------------------------------------------------------- cases
def case_deepfm(lib, rows: int, seed: int, out: str, *, epochs: int = 1, big_table: int | None = None,
                old: bool = False, bf16: bool = False) -> dict:
    if old:
        x, y = synthetic_ctr_old(rows, seed)
        vocabs, batch_size = [1000] * 26, 1024
    else:
        vocabs, batch_size = ctr_vocabs(big_table), 2048
        x, y = synthetic_ctr(rows, vocabs, seed)
    x_train, y_train, x_val, y_val = split(x, y)
    sparse = [lib.SparseFeature(f"C{i + 1}", vocab_size=v, embed_dim=16) for i, v in enumerate(vocabs)]
    dense = [lib.DenseFeature(f"I{i}") for i in range(1, 14)]
    train_dl, val_dl, _ = lib.DataGenerator(x_train, y_train).generate_dataloader(
        x_val=x_val, y_val=y_val, x_test=x_val, y_test=y_val, batch_size=batch_size)
    torch.manual_seed(seed)
    model = lib.DeepFM(deep_features=dense + sparse, fm_features=sparse,
                       mlp_params={"dims": [256, 128], "dropout": 0.2, "activation": "relu"})
    recorder = RecordingLogger()
    # bf16: trainhub's opt-in bfloat16 autocast; Torch-RecHub has no such option and runs float32
    extra = {"precision": "bf16"} if bf16 and lib.name == "trainhub" else {}
    trainer = lib.CTRTrainer(model, optimizer_params={"lr": 1e-3, "weight_decay": 1e-5}, n_epoch=epochs,
                             model_path=out, model_logger=recorder, **extra)
    # One epoch: train only (evaluate/predict timed apart). Several: validate after each epoch.
    _, fit_s = timed(lambda: trainer.fit(train_dl, val_dl if epochs > 1 else None))
    # The first evaluate pays one-time costs (trainhub imports scikit-learn lazily; Torch-RecHub at
    # import): timed apart, so the rows/s below are steady-state throughput for both.
    _, eval_first_s = timed(lambda: trainer.evaluate(trainer.model, val_dl))
    auc, eval_s = timed(lambda: trainer.evaluate(trainer.model, val_dl))
    preds, predict_s = timed(lambda: trainer.predict(trainer.model, val_dl))
    assert len(preds) == len(y_val)
    quality = {"auc": round(float(auc), 4)}
    if epochs > 1:
        quality = {f"auc_epoch{i + 1}": round(a, 4) for i, a in enumerate(recorder.series("val/auc"))}
        quality["auc_final"] = round(float(auc), 4)
    return {"train_rows": len(y_train) * epochs, "fit_s": fit_s, "quality": quality,
            "eval_rows_per_s": len(y_val) / eval_s, "predict_rows_per_s": len(y_val) / predict_s,
            "eval_first_s": eval_first_s, "val_rows": len(y_val),
            "params": sum(p.numel() for p in model.parameters()), "batch_size": batch_size}


def case_mmoe(lib, rows: int, seed: int, out: str) -> dict:
    x, vocabs, y = synthetic_mtl(rows, seed)
    x_train, y_train, x_val, y_val = split(x, y)
    features = [lib.SparseFeature(f"F{i}", vocab_size=v, embed_dim=16) for i, v in enumerate(vocabs)]
    train_dl, val_dl, _ = lib.DataGenerator(x_train, y_train).generate_dataloader(
        x_val=x_val, y_val=y_val, x_test=x_val, y_test=y_val, batch_size=1024)
    torch.manual_seed(seed)
    task_types = ["classification", "classification"]
    model = lib.MMOE(features, task_types, n_expert=4, expert_params={"dims": [128, 64]},
                     tower_params_list=[{"dims": [32]}, {"dims": [32]}])
    trainer = lib.MTLTrainer(model, task_types=task_types, optimizer_params={"lr": 1e-3, "weight_decay": 1e-5},
                             n_epoch=1, model_path=out)
    _, fit_s = timed(lambda: trainer.fit(train_dl, val_dl))  # Torch-RecHub's MTL fit requires validation
    aucs, eval_s = timed(lambda: trainer.evaluate(trainer.model, val_dl))
    return {"train_rows": len(y_train), "fit_s": fit_s, "eval_rows_per_s": len(y_val) / eval_s,
            "quality": {f"auc_task{i}": round(float(a), 4) for i, a in enumerate(aucs)},
            "params": sum(p.numel() for p in model.parameters()), "batch_size": 1024}


def case_match(lib, interactions: int, seed: int, out: str, *, model_name: str) -> dict:
    x_train, x_test, x_items, target, num_users, num_items = synthetic_match(interactions, seed)
    dim = 32
    user = [lib.SparseFeature("user_id", num_users, dim), lib.SparseFeature("user_age", 10, dim),
            lib.SparseFeature("user_city", 200, dim)]
    item_id = lib.SparseFeature("item_id", num_items, dim)
    torch.manual_seed(seed)
    tower = {"dims": [128, 64], "activation": "prelu"}
    if model_name == "dssm":
        item = [item_id, lib.SparseFeature("item_cat", 100, dim), lib.SparseFeature("item_brand", 1000, dim)]
        model = lib.DSSM(user, item, tower, tower, temperature=0.05)
    else:
        # YoutubeDNN's item vector is the item-id embedding, so the user tower ends at embed_dim.
        negs = lib.SequenceFeature("neg_items", num_items, dim, pooling="concat", shared_with="item_id")
        # Its item vector is the raw item embedding (initialised at std 1e-4): at temperature 0.05 the
        # in-batch softmax saturates and Recall@50 stays at chance (0.001) on either optimizer; 1.0 learns.
        model = lib.YoutubeDNN(user, [item_id], [negs], {"dims": [128, dim], "activation": "prelu"}, temperature=1.0)
    y_train = np.zeros(len(x_train["user_id"]), dtype=np.int64)  # list-wise: the positive is column 0
    train_dl, test_dl, item_dl = lib.MatchDataGenerator(x_train, y_train).generate_dataloader(
        x_test, x_items, batch_size=1024, num_workers=0)
    trainer = lib.MatchTrainer(model, mode=2, in_batch_neg=True, sampler_seed=seed,
                               optimizer_params={"lr": 1e-3, "weight_decay": 1e-6}, n_epoch=1, model_path=out)
    _, fit_s = timed(lambda: trainer.fit(train_dl))
    (user_emb, item_emb), embed_s = timed(lambda: (trainer.inference_embedding(model, "user", test_dl, out),
                                                   trainer.inference_embedding(model, "item", item_dl, out)))
    recall = recall_at_k(user_emb.float(), item_emb.float(), target)
    # reference point, the same for both libraries: the 50 most frequent training items for everyone
    popular = np.argsort(-np.bincount(x_train["item_id"], minlength=num_items))[:50]
    popular_recall = float(np.isin(target, popular).mean())
    return {"train_rows": len(y_train), "fit_s": fit_s,
            "quality": {"recall@50": round(recall, 4), "most_popular_recall@50": round(popular_recall, 4)},
            "embed_rows_per_s": (len(target) + num_items) / embed_s,
            "params": sum(p.numel() for p in model.parameters()), "batch_size": 1024}


CASES = {
    "deepfm": lambda lib, s, seed, out: case_deepfm(lib, round(200_000 * s), seed, out),
    "deepfm_3ep": lambda lib, s, seed, out: case_deepfm(lib, round(200_000 * s), seed, out, epochs=3),
    "deepfm_1m": lambda lib, s, seed, out: case_deepfm(lib, round(200_000 * s), seed, out, big_table=1_000_000),
    "deepfm_old": lambda lib, s, seed, out: case_deepfm(lib, round(200_000 * s), seed, out, old=True),
    "deepfm_bf16": lambda lib, s, seed, out: case_deepfm(lib, round(200_000 * s), seed, out, bf16=True),
    "mmoe": lambda lib, s, seed, out: case_mmoe(lib, round(200_000 * s), seed, out),
    "dssm": lambda lib, s, seed, out: case_match(lib, round(220_000 * s), seed, out, model_name="dssm"),
    "youtubednn": lambda lib, s, seed, out: case_match(lib, round(220_000 * s), seed, out, model_name="youtubednn"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lib", choices=["trainhub", "torch_rechub"], required=True)
    parser.add_argument("--case", choices=sorted(CASES), required=True)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the number of rows (smoke runs)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    torch.set_num_threads(THREADS)
    lib = load_lib(args.lib)
    with tempfile.TemporaryDirectory(prefix="trainhub_bench_") as out:
        # progress bars and epoch prints go to stderr; stdout's last line is the result
        stdout, sys.stdout = sys.stdout, sys.stderr
        try:
            result = CASES[args.case](lib, args.scale, args.seed, out)
        finally:
            sys.stdout = stdout
    result.update({"lib": args.lib, "case": args.case, "scale": args.scale, "threads": THREADS,
                   "samples_per_s": result["train_rows"] / result["fit_s"], "peak_rss_mb": peak_rss_mb()})
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}))


if __name__ == "__main__":
    main()
