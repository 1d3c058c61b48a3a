"""Train one MiniLM encoder on Swahili sentiment (AfriSenti) and Swahili NER (MasakhaNER 2.0) together.

Runs from the small copies in examples/data/text (a few minutes on 2 CPU cores) and prints the
eval_ metrics of the best checkpoint on dev and test, then reloads it and predicts.

    python examples/demo_text.py [key=value ...]     # e.g. training.num_epochs=1
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

from trainhub.text import Trainer, load_predictor  # noqa: E402

CONFIG = Path(__file__).resolve().parent / "text" / "demo.yaml"


def show(title: str, metrics: dict) -> None:
    print(f"\n{title}")
    for key, value in metrics.items():
        print(f"  {key:45s} {value:.4f}")


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
    print(f"\nreloaded {best}")
    texts = ["Rais Samia Suluhu Hassan alitembelea Dodoma jana .", "Huduma ya Tanesco ni mbaya sana leo"]
    for text, ner, sent in zip(texts, predictor.predict(texts, task="SwahiliNER"),
                               predictor.predict(texts, task="Sentiment")):
        entities = [(e["text"], e["entity"]) for e in ner["ner_head"]]
        print(f"  {text!r}\n    entities={entities} sentiment={sent['sentiment_head']['label']}")
    print(f"\ndone in {time.time() - start:.0f} s; MLflow store: {trainer.output_dir / 'logs' / 'mlflow.db'}")


if __name__ == "__main__":
    main(sys.argv[1:])
