"""Train one MiniLM encoder on Swahili sentiment (AfriSenti) and Swahili NER (MasakhaNER 2.0) together.

Runs from the small copies in examples/data/text (400 training sentences per task, 3 epochs: a few
minutes on 2 CPU cores; on a busy machine OMP_NUM_THREADS=1 is often faster) and prints the eval_
metrics of the best checkpoint on dev and test. Then it reloads the saved model, as a user would,
and shows it on held-out test sentences: some it gets exactly right and one it gets wrong, next to
the gold entities, so what the numbers mean is visible.

    python examples/demo_text.py [key=value ...]     # e.g. training.num_epochs=1
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

from trainhub.text import Trainer, load_predictor  # noqa: E402
from trainhub.text.readers import read_conll, read_rows  # noqa: E402

HERE = Path(__file__).resolve().parent
CONFIG = HERE / "text" / "demo.yaml"
NER_TEST = HERE / "data" / "text" / "masakhaner2_swa" / "test.txt"
SENTIMENT_TEST = HERE / "data" / "text" / "afrisenti_swa" / "test.tsv"


def show(title: str, metrics: dict) -> None:
    print(f"\n{title}")
    for key, value in metrics.items():
        print(f"  {key:45s} {value:.4f}")


def gold_entities(words: list[str], tags: list[str]) -> list[tuple[str, str]]:
    spans: list[tuple[str, str]] = []
    for word, tag in zip(words, tags):
        if tag.startswith("B-") or (tag.startswith("I-") and (not spans or spans[-1][1] != tag[2:])):
            spans.append((word, tag[2:]))
        elif tag.startswith("I-"):
            spans[-1] = (f"{spans[-1][0]} {word}", spans[-1][1])
    return spans


def showcase_ner(predictor, limit: int = 3) -> None:
    sentences = [s for s in read_conll(NER_TEST) if any(t != "O" for t in s["tags"])]
    texts = [" ".join(s["words"]) for s in sentences]
    predicted = [[(e["text"], e["entity"]) for e in p["ner_head"]] for p in predictor.predict(texts, task="SwahiliNER")]
    gold = [gold_entities(s["words"], s["tags"]) for s in sentences]
    right = [i for i, (p, g) in enumerate(zip(predicted, gold)) if sorted(p) == sorted(g)]
    wrong = [i for i in range(len(texts)) if i not in right]
    print(f"\nNER on held-out test sentences: every entity right in {len(right)} of {len(texts)} sentences "
          f"that have entities. The first {min(limit, len(right))} of those, then the first miss:")
    for i in right[:limit] + wrong[:1]:
        text = texts[i] if len(texts[i]) <= 110 else texts[i][:107] + "..."
        print(f"  {text}\n    gold:      {gold[i]}\n    predicted: {predicted[i]}")


def showcase_sentiment(predictor, limit: int = 4) -> None:
    rows = read_rows(SENTIMENT_TEST)
    texts = [r.get("tweet") or r.get("text") for r in rows]
    labels = [r["label"] for r in rows]
    predicted = [p["sentiment_head"]["label"] for p in predictor.predict(texts, task="Sentiment")]
    majority, count = Counter(labels).most_common(1)[0]
    accuracy = sum(p == y for p, y in zip(predicted, labels)) / len(labels)
    print(f"\nsentiment on the {len(labels)} test tweets: accuracy {accuracy:.2f}; always answering "
          f"{majority!r} scores {count / len(labels):.2f}; predicted labels {dict(Counter(predicted))}")
    for text, y, p in list(zip(texts, labels, predicted))[:limit]:
        text = text if len(text) <= 90 else text[:87] + "..."
        print(f"  gold {y:8s} predicted {p:8s} {text}")


def main(overrides: list[str]) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    start = time.time()
    trainer = Trainer.from_config(CONFIG, overrides)
    try:
        trainer.train()
        show("best checkpoint, dev:", trainer.evaluate())
        show("best checkpoint, test:", trainer.evaluate(test=True))
    finally:
        trainer.close()
    best = trainer.output_dir / "best_model"
    predictor = load_predictor(best)
    print(f"\nreloaded {best} (trainhub predict {best} --task SwahiliNER \"...\" does the same)")
    showcase_ner(predictor)
    showcase_sentiment(predictor)
    print(f"\ndone in {time.time() - start:.0f} s; MLflow store: {trainer.output_dir / 'logs' / 'mlflow.db'}")
    epochs = trainer.config.training.num_epochs
    print(f"400 sentences per task and {epochs} epochs show that the pipeline trains and scores correctly, not the "
          "best quality;\nbench/text_full.py trains on the complete datasets (docs/text.md).")


if __name__ == "__main__":
    main(sys.argv[1:])
