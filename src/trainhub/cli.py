"""The ``trainhub`` command.

Usage:
    trainhub train CONFIG.yaml [key=value ...]      # e.g. training.num_epochs=1 tasks.0.max_examples=100
    trainhub predict MODEL_DIR --task NAME TEXT [TEXT ...]
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Optional, Sequence

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trainhub", description="Train and use trainhub models.")
    parser.add_argument("--log-level", default="INFO", help="Python logging level (default INFO)")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train a multi-task text model from a YAML config")
    train.add_argument("config", help="experiment YAML file")
    train.add_argument("overrides", nargs="*", help="key=value overrides, dotted (training.num_epochs=1)")
    train.add_argument("--no-test", action="store_true", help="skip the test-set evaluation")
    predict = sub.add_parser("predict", help="predict with a saved model folder (e.g. results/best_model)")
    predict.add_argument("model_dir")
    predict.add_argument("--task", required=True, help="task name from the config")
    predict.add_argument("texts", nargs="+")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``trainhub`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from trainhub.text.cli import format_results, run_experiment, run_predict
    from trainhub.text.config import ConfigError

    try:
        if args.command == "train":
            results = run_experiment(args.config, args.overrides, evaluate_test=not args.no_test)
        else:
            results = run_predict(args.model_dir, args.task, args.texts)
    except (ConfigError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(format_results(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
