"""Demo: generative next-item recommendation with HSTU, from `examples/configs/hstu_next_item.yaml`.

Run with ``make demo`` or ``python examples/demo_next_item.py [key=value ...]``. The log is
``synthetic_interactions`` (generated from a seed by code in the repository; nothing to download):
users walk through clusters of items, so the next item follows from the recent ones. The demo
trains HSTU, prints its test HR@10 / NDCG@10 (leave-one-out, ranked against every item, history
excluded) next to a most-popular baseline under the same protocol, then reloads the run folder and
recommends after a history, as a user would without this script.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import numpy as np

from trainhub.runs import load_dataset, load_run, train_run

CONFIG = Path(__file__).resolve().parent / "configs" / "hstu_next_item.yaml"


def most_popular(log, k: int = 10) -> tuple[float, float]:
    """HR@k and NDCG@k of recommending the k most frequent training items a user has not seen
    (leave-one-out: each user's last item is the target, the rest is history)."""
    log = log.sort_values(["user_id", "timestamp"], kind="stable")
    last = log.groupby("user_id").tail(1)
    history = log.drop(last.index)
    train = history.drop(history.groupby("user_id").tail(1).index)  # the validation item is not training data
    ranked = train["item_id"].value_counts().index.to_numpy()
    seen = history.groupby("user_id")["item_id"].agg(set)
    hits, gains = 0, 0.0
    for user, target in zip(last["user_id"], last["item_id"]):
        top = [i for i in ranked if i not in seen.get(user, set())][:k]
        if target in top:
            hits += 1
            gains += 1.0 / np.log2(top.index(target) + 2)
    return hits / len(last), gains / len(last)


def main(overrides: list[str]) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    start = time.time()
    # 12 epochs keep the demo short (the config trains up to 30, early-stopped)
    result = train_run(CONFIG, ["num_threads=1", "trainer.progress=false", "trainer.n_epoch=12", *overrides])
    seconds = time.time() - start
    run = load_run(result.run_dir)  # a fresh model, rebuilt from the folder alone
    rows = run.manifest["rows"]
    import yaml

    params = yaml.safe_load((run.folder / "config.yaml").read_text())["dataset"].get("params", {})
    log = load_dataset("synthetic_interactions", **params)["train"]
    pop_hr, pop_ndcg = most_popular(log)
    test = result.metrics["test"]

    print(f"\n== {run.manifest['model']['name']} on synthetic_interactions: {rows['users']:,} users, "
          f"{rows['items']:,} items; {result.epochs_run} epochs in {seconds:.0f} s (best: epoch "
          f"{result.best_epoch + 1}) ==")
    print("test (each user's last item, ranked against every item, history excluded):")
    print(f"  HSTU:          HR@10 {test['hr@10']:.4f}   NDCG@10 {test['ndcg@10']:.4f}   MRR@10 {test['mrr@10']:.4f}")
    print(f"  most popular:  HR@10 {pop_hr:.4f}   NDCG@10 {pop_ndcg:.4f}")
    user = log["user_id"].iloc[0]
    history = log[log.user_id == user].sort_values("timestamp")["item_id"].tolist()[-6:]
    (recs,) = run.recommend([history], k=5)
    print(f"\nload_run(folder).recommend([{history}], k=5):")
    print("  " + ", ".join(f"{item} ({score:.2f})" for item, score in recs))
    folder = result.run_dir.resolve()
    print(f"\nrun folder: {folder}  (run.json, model.safetensors, items.json, curves.png, ...)")
    print(f"same from the shell: trainhub predict {folder} log.csv --top-k 10\n")
    if test["hr@10"] <= pop_hr:
        raise SystemExit("HSTU did not beat the most-popular baseline")


if __name__ == "__main__":
    main(sys.argv[1:])
