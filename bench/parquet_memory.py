"""Peak memory of one DeepFM epoch streamed from Parquet, for a row count that need not fit in RAM.

Writes ``--rows`` synthetic Criteo-like rows (26 id columns with vocabulary 1000, 13 float
columns, a 0/1 label) to Parquet chunk by chunk (never holding all rows), then trains DeepFM
for one epoch with CTRTrainer from a ParquetIterableDataset and prints one JSON line:

    python bench/parquet_memory.py --rows 1000000
    {"rows": 1000000, "train_rows_per_s": ..., "peak_rss_mb": ..., ...}

The goal (issue 9): peak RSS independent of the row count, and at 2M rows at most half of
Torch-RecHub's in-memory run (3,519 MB from a DataFrame). Existing data in ``--data-dir`` with
the right row count is reused (``--rewrite`` forces writing it again).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import time
from pathlib import Path

import numpy as np
import torch

NUM_SPARSE, NUM_DENSE, VOCAB = 26, 13, 1000


def peak_rss_mb() -> int:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)  # Linux reports KiB


def synthetic_chunk(rows: int, seed: int, weights: np.ndarray):
    """One chunk of Criteo-like rows as a pyarrow Table (ids int32, floats float32)."""
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    cols = {f"C{i}": rng.integers(0, VOCAB, rows, dtype=np.int32) for i in range(1, NUM_SPARSE + 1)}
    cols.update({f"I{i}": rng.random(rows, dtype=np.float32) for i in range(1, NUM_DENSE + 1)})
    logit = weights[cols["C1"]] + weights[cols["C2"]] - weights[cols["C3"]] + cols["I1"] - 0.5
    cols["label"] = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    return pa.table(cols)


def write_data(folder: Path, rows: int, chunk_rows: int, rows_per_file: int, row_group_rows: int) -> float:
    import pyarrow.parquet as pq

    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    weights = np.random.default_rng(0).normal(0, 0.5, VOCAB)
    t0 = time.perf_counter()
    written, part = 0, 0
    while written < rows:
        n_file = min(rows_per_file, rows - written)
        with pq.ParquetWriter(folder / f"part-{part:05d}.parquet", synthetic_chunk(1, 0, weights).schema) as writer:
            done = 0
            while done < n_file:
                n = min(chunk_rows, n_file - done)
                writer.write_table(synthetic_chunk(n, 1 + written + done, weights), row_group_size=row_group_rows)
                done += n
        written += n_file
        part += 1
    return time.perf_counter() - t0


def stored_rows(folder: Path) -> int:
    import pyarrow.parquet as pq

    files = sorted(folder.glob("*.parquet"))
    return sum(pq.ParquetFile(f).metadata.num_rows for f in files) if files else -1


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--data-dir", default="/tmp/trainhub_bench_parquet")
    parser.add_argument("--out", default="/tmp/trainhub_bench_parquet_model")
    parser.add_argument("--chunk-rows", type=int, default=100_000)
    parser.add_argument("--rows-per-file", type=int, default=1_000_000)
    parser.add_argument("--row-group-rows", type=int, default=65_536)
    parser.add_argument("--shuffle-buffer", type=int, default=65_536)
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--rewrite", action="store_true")
    parser.add_argument("--read-only", action="store_true",
                        help="stream the epoch's batches without a model: the reader's own memory and speed")
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)

    from trainhub.data import ParquetIterableDataset, ParquetLoader
    from trainhub.features import DenseFeature, SparseFeature
    from trainhub.models.ranking import DeepFM
    from trainhub.trainers import CTRTrainer

    data = Path(args.data_dir) / f"rows_{args.rows}"
    write_s = None
    if args.rewrite or stored_rows(data) != args.rows:
        write_s = write_data(data, args.rows, args.chunk_rows, args.rows_per_file, args.row_group_rows)
    rss_after_write = peak_rss_mb()

    sparse = [SparseFeature(f"C{i}", vocab_size=VOCAB, embed_dim=16) for i in range(1, NUM_SPARSE + 1)]
    dense = [DenseFeature(f"I{i}") for i in range(1, NUM_DENSE + 1)]
    train = ParquetIterableDataset(data, batch_size=args.batch_size, label_columns="label", features=sparse + dense,
                                   shuffle=True, shuffle_buffer=args.shuffle_buffer, seed=0)
    loader = ParquetLoader(train, num_workers=args.num_workers) if args.num_workers else train
    report = {"lib": "trainhub", "source": "parquet", "rows": args.rows, "batch_size": args.batch_size,
              "num_workers": args.num_workers, "shuffle_buffer": args.shuffle_buffer,
              "write_s": None if write_s is None else round(write_s, 1)}
    if args.read_only:
        t0 = time.perf_counter()
        seen = sum(len(y) for _, y in loader)
        read_s = time.perf_counter() - t0
        print(json.dumps({**report, "mode": "read_only", "rows_read": seen, "read_s": round(read_s, 1),
                          "read_rows_per_s": round(seen / read_s), "rss_after_write_mb": rss_after_write,
                          "peak_rss_mb": peak_rss_mb()}))
        return
    model = DeepFM(deep_features=dense + sparse, fm_features=sparse,
                   mlp_params={"dims": [256, 128], "dropout": 0.2, "activation": "relu"})
    trainer = CTRTrainer(model, n_epoch=1, model_path=args.out, progress=False, save_last=False)
    t0 = time.perf_counter()
    trainer.fit(loader)
    fit_s = time.perf_counter() - t0
    print(json.dumps({
        **report, "mode": "train", "fit_s": round(fit_s, 1),
        "train_rows_per_s": round(train.num_rows / fit_s),
        "train_loss": round(float(trainer.fit_result.history[-1]["train/loss"]), 4),
        "rss_after_write_mb": rss_after_write, "peak_rss_mb": peak_rss_mb(),
    }))


if __name__ == "__main__":
    main()
