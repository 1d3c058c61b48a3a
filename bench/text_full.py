"""Full multi-task run: AfriSenti Swahili sentiment + MasakhaNER 2.0 Swahili NER on one MiniLM encoder.

Trains on the complete train files (or a documented subset), selects the best epoch on dev, and
reports test entity-level F1 (seqeval) for NER and weighted F1 for sentiment.

    python bench/text_full.py                                   # full train/dev/test
    python bench/text_full.py --ner-train 2000 --epochs 2       # the subset run in docs/text.md

Results: bench/results/text_full.json and a markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "text"


def build_config(args: argparse.Namespace) -> dict:
    senti, ner = DATA / "afrisenti_swa", DATA / "masakhaner2_swa"
    return {
        "project_name": "text_full_bench",
        "model": {"base_model": "all-MiniLM-L6-v2", "dropout": 0.1, "pooling": "mean"},
        "tokenizer": {"max_length": args.max_length},
        "training": {
            "output_dir": str(args.output_dir), "learning_rate": args.lr, "batch_size": args.batch_size,
            "num_epochs": args.epochs, "warmup_ratio": 0.1, "weight_decay": 0.01,
            "metric_for_best_model": "eval_overall_f1", "early_stopping_patience": 2,
            "save_strategy": "best", "seed": args.seed, "device": "cpu", "progress": False,
            "logging": {"service": "mlflow", "experiment_name": "text_full_bench"},
        },
        "tasks": [
            {"name": "Sentiment", "type": "single_label_classification", "data_path": str(senti / "train.tsv"),
             "eval_data_path": str(senti / "dev.tsv"), "test_data_path": str(senti / "test.tsv"),
             "max_examples": args.senti_train, "heads": [{"name": "sentiment_head"}]},
            {"name": "SwahiliNER", "type": "ner", "data_path": str(ner / "train.txt"),
             "eval_data_path": str(ner / "dev.txt"), "test_data_path": str(ner / "test.txt"),
             "max_examples": args.ner_train, "heads": [{"name": "ner_head"}]},
        ],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--senti-train", type=int, default=None, help="sample this many training tweets")
    parser.add_argument("--ner-train", type=int, default=None, help="sample this many training sentences")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--output-dir", type=Path, default=ROOT / "runs" / "text_full")
    args = parser.parse_args(argv)
    if not DATA.is_dir():
        print(f"skip: {DATA} is absent (the full run needs ../shared/data/text)")
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from trainhub.text import Trainer

    start = time.time()
    trainer = Trainer.from_config(build_config(args))
    try:
        result = trainer.train()
        dev = trainer.evaluate()
        test = trainer.evaluate(test=True)
    finally:
        trainer.close()
    rows = {
        "NER test entity F1 (seqeval)": test["eval_SwahiliNER_ner_head_f1"],
        "NER test entity precision": test["eval_SwahiliNER_ner_head_precision"],
        "NER test entity recall": test["eval_SwahiliNER_ner_head_recall"],
        "Sentiment test weighted F1": test["eval_Sentiment_sentiment_head_f1"],
        "Sentiment test macro F1": test["eval_Sentiment_sentiment_head_macro_f1"],
        "Sentiment test accuracy": test["eval_Sentiment_sentiment_head_accuracy"],
        "NER dev entity F1": dev["eval_SwahiliNER_ner_head_f1"],
        "Sentiment dev weighted F1": dev["eval_Sentiment_sentiment_head_f1"],
    }
    out = {"args": {k: str(v) for k, v in vars(args).items()}, "epochs_run": len(result.history),
           "best_epoch": result.best_epoch, "seconds": round(time.time() - start), "test": test, "dev": dev,
           "summary": rows, "train_rows": {n: len(dl.dataset) for n, dl in trainer.train_dataloaders.items()}}
    results_dir = ROOT / "bench" / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "text_full.json").write_text(json.dumps(out, indent=2), encoding="utf-8")
    print(f"\ntrain rows {out['train_rows']}, epochs run {out['epochs_run']}, best epoch {result.best_epoch}, "
          f"{out['seconds']} s\n")
    print("| metric | value |\n|---|---|")
    for name, value in rows.items():
        print(f"| {name} | {value:.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
