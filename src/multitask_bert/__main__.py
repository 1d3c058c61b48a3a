"""``python -m multitask_bert --config CONFIG.yaml [key=value ...]``: train, then evaluate the best model."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m multitask_bert", description="Train a multi-task model.")
    parser.add_argument("--config", required=True, help="experiment YAML file")
    parser.add_argument("overrides", nargs="*", help="key=value overrides (training.num_epochs=1)")
    args = parser.parse_args(argv)
    from trainhub.cli import main as trainhub_main

    return trainhub_main(["train", args.config, *args.overrides])


if __name__ == "__main__":
    logging.captureWarnings(True)
    sys.exit(main())
