"""The ``trainhub`` command.

Usage:
    trainhub train CONFIG.yaml [key=value ...]      # any trainer; e.g. trainer.n_epoch=1 (text: training.num_epochs=1)
    trainhub predict RUN_DIR data.parquet [--out predictions.csv]    # a run folder of `trainhub train`
    trainhub predict MODEL_DIR --task NAME TEXT [TEXT ...]           # a saved text model
    trainhub export RUN_DIR --items items.csv [--users users.csv]    # matching runs: embeddings + index
    trainhub list-models [--family ranking|matching|multitask]
    trainhub list-datasets
    trainhub --version
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

__all__ = ["main", "build_parser"]


def _version() -> str:
    import trainhub

    return trainhub.__version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trainhub", description="Train and use trainhub models.")
    parser.add_argument("--version", action="version", version=f"trainhub {_version()}")
    parser.add_argument("--log-level", default="INFO", help="Python logging level (default INFO)")
    parser.add_argument("--debug", action="store_true", help="show the Python traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train from a YAML config (recommendation run or text experiment)")
    train.add_argument("config", help="run YAML (dataset/model/trainer) or text experiment YAML (tasks)")
    train.add_argument("overrides", nargs="*", help="key=value overrides, dotted (trainer.n_epoch=1)")
    train.add_argument("--no-test", action="store_true", help="text experiments: skip the test-set evaluation")
    predict = sub.add_parser("predict", help="score rows with a run folder, or texts with a saved text model")
    predict.add_argument("model_dir", help="a run folder (has run.json) or a text model folder (best_model)")
    predict.add_argument("inputs", nargs="+", help="data files (run folder) or texts (text model)")
    predict.add_argument("--task", help="text models: the task name from the config")
    predict.add_argument("--out", help="run folders: write predictions to this CSV instead of stdout")
    predict.add_argument("--top-k", type=int, default=None,
                         help="matching runs: recommend the top K items per row instead of scoring the row's item; "
                              "next-item runs: items per user of the log (default 10)")
    export = sub.add_parser("export", help="matching runs: write user/item embeddings and an item index")
    export.add_argument("run_dir")
    export.add_argument("--items", nargs="+", required=True, help="CSV/Parquet rows with the item columns")
    export.add_argument("--users", nargs="+", help="CSV/Parquet rows with the user columns")
    export.add_argument("--out", help="folder (default: RUN_DIR/embeddings)")
    models = sub.add_parser("list-models", help="registered model names")
    models.add_argument("--family", choices=["ranking", "matching", "multitask", "generative"])
    sub.add_parser("list-datasets", help="datasets a run config can name")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``trainhub`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    level = getattr(logging, str(args.log_level).upper(), logging.INFO)
    rank = int(os.environ.get("RANK", "0") or 0)
    if rank > 0:  # under torchrun, rank 0 reports; the others print only warnings and errors
        level = max(level, logging.WARNING)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "train":
            result = _train(args)
        elif args.command == "predict":
            result = _predict(args)
            if result is None:
                return 0
        elif args.command == "export":
            result = _export(args)
        elif args.command == "list-models":
            return _list_models(args.family)
        else:
            return _list_datasets()
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - every anticipated error becomes one line; the rest re-raise
        message = error_line(err)
        if message is None or args.debug:
            raise
        logging.getLogger("trainhub.cli").debug("failed", exc_info=True)
        print(f"error: {message}", file=sys.stderr)
        return 2
    if rank == 0:
        print(json.dumps(result, indent=2, ensure_ascii=False, default=str))
    return 0


def error_line(err: BaseException) -> str | None:
    """One line for an anticipated error (config, data, files, checkpoints, environment), naming
    what it is about; None for anything else (a bug: its traceback is shown)."""
    import errno
    import pickle

    import yaml

    from trainhub.engine.checkpoint import CheckpointError
    from trainhub.integrity import IntegrityError
    from trainhub.text.config import ConfigError

    if isinstance(err, yaml.MarkedYAMLError):
        mark = err.problem_mark
        where = f"{mark.name}, line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "YAML"
        return f"{where}: {err.problem or err}"
    if isinstance(err, OSError) and err.errno == errno.ENOSPC:
        return f"no space left on the device writing {err.filename or 'a file'}: free some space and run again"
    if isinstance(err, (FileNotFoundError, FileExistsError, PermissionError, NotADirectoryError, IsADirectoryError)):
        return str(err) if not err.filename else f"{err.strerror or err}: {err.filename}"
    if isinstance(err, KeyError):
        return str(err.args[0]) if err.args else repr(err)
    if isinstance(err, (ConfigError, CheckpointError, IntegrityError, pickle.UnpicklingError, ValueError, TypeError,
                        ImportError, yaml.YAMLError)):
        return str(err)
    if isinstance(err, RuntimeError) and ("CUDA" in str(err) or "another trainhub run" in str(err)):
        return str(err).splitlines()[0]
    return None


def _train(args: argparse.Namespace) -> Any:
    import yaml

    from trainhub.runs.config import config_kind

    path = Path(args.config)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    with open(path, encoding="utf-8") as fh:  # a YAML error then names the file
        data = yaml.safe_load(fh)
    if config_kind(data) == "text":
        from trainhub.text.cli import run_experiment

        return run_experiment(args.config, args.overrides, evaluate_test=not args.no_test)
    from trainhub.runs import train_run

    return train_run(path, args.overrides).summary()


def _predict(args: argparse.Namespace) -> Any:
    folder = Path(args.model_dir)
    if not (folder / "run.json").is_file():
        if not args.task:
            raise FileNotFoundError(f"{folder} is not a run folder (no run.json); for a saved text model pass "
                                    "--task NAME and the texts")
        from trainhub.text.cli import run_predict

        return run_predict(args.model_dir, args.task, args.inputs)
    import pandas as pd

    from trainhub.runs import load_run
    from trainhub.runs.prepare import read_table

    run = load_run(folder)
    df = read_table(args.inputs)
    out = df.copy()
    if run.kind == "seq":  # an interaction log in, the next items of each of its users out
        out = run.recommend_log(df, k=args.top_k or 10)
        out["recommended"] = [json.dumps(r, default=str) for r in out["recommended"]]
        out["scores"] = [json.dumps(r) for r in out["scores"]]
    elif args.top_k:
        recs = run.recommend(df, k=args.top_k)
        out["recommended"] = [json.dumps([v for v, _ in r], default=str) for r in recs]
        out["scores"] = [json.dumps([round(s, 6) for _, s in r]) for r in recs]
    else:
        preds = run.predict(df)
        if preds.ndim == 2:
            names = run.manifest.get("labels") or [f"task{i}" for i in range(preds.shape[1])]
            for i, name in enumerate(names):
                out[f"prediction_{name}"] = preds[:, i]
        else:
            out["score" if run.kind == "match" else "prediction"] = preds
    if args.out:
        from trainhub.files import write_text_atomic

        write_text_atomic(args.out, out.to_csv(index=False))
        return {"rows": len(out), "written": str(Path(args.out).resolve())}
    assert isinstance(out, pd.DataFrame)
    sys.stdout.write(out.to_csv(index=False))
    return None


def _export(args: argparse.Namespace) -> Any:
    from trainhub.runs import export_embeddings, load_run
    from trainhub.runs.prepare import read_table

    run = load_run(args.run_dir)
    users = read_table(args.users) if args.users else None
    folder = export_embeddings(run, read_table(args.items), users, out=args.out)
    return {"embeddings": str(folder), "files": sorted(p.name for p in folder.iterdir())}


def _list_models(family: Optional[str]) -> int:
    from trainhub.models import get_model_entry, list_models

    for name in list_models(family):
        print(f"{name:14s} {get_model_entry(name).family}")
    return 0


def _list_datasets() -> int:
    from trainhub.runs.datasets import get_dataset, list_datasets

    for name in list_datasets():
        print(f"{name:20s} {get_dataset(name).description}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
