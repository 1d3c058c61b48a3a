"""Step time and peak memory of HSTU training at a 10k- and a 1M-item vocabulary.

    python bench/seq_scale.py [--model hstu] [--steps 20] [--warmup 3] [--out bench/results/seq_scale.json]

The issue-21 "Scale" check: with sampled softmax on the row-sparse item table (what ``SeqTrainer``
uses by default: ``sparse_embeddings=True``, row-wise Adam for the item table and output bias), a
training step at a 1,000,000-item vocabulary should stay within 2x of the 10,000-item step, while
full softmax grows with the vocabulary. Model: d_model 64, 2 layers (HSTU: 2 heads, dqk = dv = 32),
batch 128 x length 50 (every slot a real item, ids uniform over the vocabulary: the most rows a
batch can touch), ``loss_params={"num_negatives": 128}`` (plus the default 128 in-batch negatives).

Each case runs in its own process (so its peak RSS is its own) through the engine's training loop
(``trainhub.engine.loop.train_epoch`` with the trainer's task, optimizer and settings: SeqTrainer's
default Adam, lr 1e-3, weight decay 1e-5); a step is the time between two ends of batch:
zero_grad, forward, loss, backward, optimizer step. Reported: the median over ``--steps`` steps
after ``--warmup`` steps, the time of the epoch-end flush (the row-wise optimizer catching up every
row before weights are read), and peak RSS.

Full softmax holds ``rows x V`` logits (and as much again for their gradient): at 1M items and
6,400 rows that is 25.6 GB per tensor, beyond this machine, so the 1M full-softmax case runs with
a smaller batch (``--full-batch-1m``, default 2) and fewer steps, next to a 10k case of the same
batch; ``full_1m_b128_estimate_ms`` adds to it the cost per scored row measured at 10k (batch 128
less batch 2) times 100 for the rows batch 128 adds (an estimate: the logits grow linearly in V).
Timings on a shared machine are noisy: ``--repeats`` interleaves the cases, ``--threads 1`` avoids
the stalls of two threads on busy cores, and ``step_cpu_ms`` (the process's CPU time per step) is
the cost with other processes' time left out.
``sampled_dense`` cases are the same sampled softmax with ``sparse_embeddings=False`` (a dense item
table and dense Adam): the step before the row-sparse table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _batches(vocab: int, batch: int, length: int, count: int, seed: int):
    import torch

    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        tokens = torch.randint(1, vocab, (batch, length), generator=g)
        gaps = torch.randint(30, 100_000, (batch, length), generator=g)
        diffs = gaps.flip(1).cumsum(1).flip(1) - gaps[:, -1:]
        out.append((tokens, torch.arange(length).expand(batch, length), diffs,
                    torch.randint(1, vocab, (batch,), generator=g)))
    return out


def run_case(case: dict) -> dict:
    """One configuration, in this process: build, train ``warmup + steps`` batches, time them."""
    import dataclasses

    import torch

    from trainhub.engine.loop import train_epoch
    from trainhub.models.generative import HSTUModel, SASRecModel
    from trainhub.trainers import SeqTrainer

    if case.get("threads"):
        torch.set_num_threads(case["threads"])
    torch.manual_seed(0)
    vocab, batch, length, d_model = case["vocab"], case["batch"], case["length"], case["d_model"]
    if case["model"] == "hstu":
        model = HSTUModel(vocab_size=vocab, d_model=d_model, n_heads=2, n_layers=case["layers"], dqk=d_model // 2,
                          dv=d_model // 2, max_seq_len=length)
    else:
        model = SASRecModel(vocab_size=vocab, d_model=d_model, n_heads=2, n_layers=case["layers"], max_seq_len=length)
    loss_type = "sampled_softmax" if case["loss"] == "sampled" else "cross_entropy"
    loss_params = {"num_negatives": case["negatives"]} if case["loss"] == "sampled" else None
    with tempfile.TemporaryDirectory(prefix="seq_scale_") as out:
        trainer = SeqTrainer(model, model_path=out, progress=False, seed=0, loss_type=loss_type,
                             loss_params=loss_params, sparse_embeddings=case["sparse"])
        rss_built = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        data = _batches(vocab, batch, length, case["warmup"] + case["steps"], seed=1)
        ends: list[tuple[float, float]] = []

        class Timer:
            def on_train_batch_end(self, state, out):
                ends.append((time.perf_counter(), time.process_time()))

        config = dataclasses.replace(trainer.config, max_epochs=1, progress=False)
        started = (time.perf_counter(), time.process_time())
        train_epoch(trainer.model, trainer.task, trainer.optimizer, data, runtime=trainer.runtime, config=config,
                    callbacks=[Timer()])
        finished = time.perf_counter()
    marks = [started] + ends
    wall = [(b[0] - a[0]) * 1000 for a, b in zip(marks, marks[1:])][case["warmup"]:]
    cpu = [(b[1] - a[1]) * 1000 for a, b in zip(marks, marks[1:])][case["warmup"]:]
    return {
        **case,
        "table_sparse_grad": bool(model.token_embedding.sparse_grad),
        "optimizer": type(trainer.optimizer).__name__,
        "step_ms": [round(t, 1) for t in wall],
        "step_cpu_ms": [round(t, 1) for t in cpu],
        "epoch_end_flush_ms": round((finished - ends[-1][0]) * 1000, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "rss_after_build_mb": round(rss_built),
        "threads": torch.get_num_threads(),
    }


def args_length() -> int:
    return 50  # sequence length of every case (all slots real items: rows = batch x 50)


def _aggregate(group: list[dict]) -> dict:
    """One case's runs: step times pooled over the repeats, the highest peak RSS."""
    ok = [r for r in group if "step_ms" in r]
    if not ok:
        return group[-1]
    wall = [t for r in ok for t in r["step_ms"]]
    cpu = [t for r in ok for t in r["step_cpu_ms"]]
    keep = {k: v for k, v in ok[0].items() if k not in ("step_ms", "step_cpu_ms", "peak_rss_mb", "epoch_end_flush_ms",
                                                          "rss_after_build_mb")}
    return {
        **keep,
        "runs": len(ok),
        "steps_timed": len(wall),
        "step_ms_median": round(statistics.median(wall), 1),
        "step_ms_min": round(min(wall), 1),
        "step_ms_max": round(max(wall), 1),
        "step_cpu_ms_median": round(statistics.median(cpu), 1),
        "epoch_end_flush_ms": round(statistics.median(r["epoch_end_flush_ms"] for r in ok), 1),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in ok),
        "rss_after_build_mb": max(r["rss_after_build_mb"] for r in ok),
    }


def cases(args) -> list[dict]:
    base = dict(model=args.model, d_model=64, layers=2, length=args_length(), negatives=128, warmup=args.warmup,
                threads=args.threads)
    out = []
    for vocab in (10_000, 1_000_000):
        out.append(dict(base, name=f"sampled_sparse_{vocab}", loss="sampled", sparse=True, vocab=vocab, batch=128,
                        steps=args.steps))
    for vocab in (10_000, 1_000_000):
        out.append(dict(base, name=f"sampled_dense_{vocab}", loss="sampled", sparse=False, vocab=vocab, batch=128,
                        steps=args.steps))
    out.append(dict(base, name="full_10000", loss="full", sparse=True, vocab=10_000, batch=128, steps=args.steps))
    small = args.full_batch_1m
    out.append(dict(base, name=f"full_10000_b{small}", loss="full", sparse=True, vocab=10_000, batch=small,
                    steps=args.steps))
    out.append(dict(base, name=f"full_1000000_b{small}", loss="full", sparse=True, vocab=1_000_000, batch=small,
                    steps=args.full_steps, warmup=min(args.warmup, 2)))
    return [c for c in out if not args.only or any(key in c["name"] for key in args.only)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=("hstu", "sasrec"), default="hstu")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--full-steps", type=int, default=5, help="timed steps of the 1M full-softmax case")
    parser.add_argument("--full-batch-1m", type=int, default=2, help="batch of the 1M full-softmax case")
    parser.add_argument("--repeats", type=int, default=1, help="runs of every case (interleaved), steps pooled")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--only", nargs="*", help="run the cases whose names contain one of these")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a case as JSON: run it in this process
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_case(json.loads(args.one))))
        return
    load_before = [round(x, 2) for x in os.getloadavg()]
    runs: dict[str, list[dict]] = {}
    for _ in range(args.repeats):  # the cases interleaved, so a busy spell on the machine hits all of them
        for case in cases(args):
            done = subprocess.run([sys.executable, __file__, "--one", json.dumps(case)], capture_output=True,
                                  text=True, cwd=ROOT)
            if done.returncode != 0:
                run = {**case, "error": done.stderr.strip().splitlines()[-1:]}
            else:
                run = json.loads(done.stdout.strip().splitlines()[-1])
            runs.setdefault(case["name"], []).append(run)
            print(f"{case['name']}: {statistics.median(run['step_ms']) if 'step_ms' in run else run['error']}",
                  file=sys.stderr)
    results = {name: _aggregate(group) for name, group in runs.items()}
    summary = {}

    def ms(name, key="step_ms_median"):
        return results.get(name, {}).get(key)

    small = args.full_batch_1m
    pairs = {"sampled_sparse": ("sampled_sparse_10000", "sampled_sparse_1000000"),
             "sampled_dense": ("sampled_dense_10000", "sampled_dense_1000000"),
             f"full_b{small}": (f"full_10000_b{small}", f"full_1000000_b{small}")}
    for label, (a, b) in pairs.items():
        ratios = {key: round(ms(b, key) / ms(a, key), 2) for key in ("step_ms_median", "step_ms_min",
                                                                     "step_cpu_ms_median") if ms(a, key) and ms(b, key)}
        if ratios:
            summary[f"{label}_ratio_1m_over_10k"] = ratios
    if ms(f"full_1000000_b{small}") and ms("full_10000") and ms(f"full_10000_b{small}"):
        # the 10k cases' cost per scored row, times 100 (the logits are linear in V), for the rows
        # 128 sequences add to the measured small batch
        rows, few = 128 * args_length(), small * args_length()
        per_row_1m = (ms("full_10000") - ms(f"full_10000_b{small}")) / (rows - few) * 100
        summary["full_1m_b128_estimate_ms"] = round(ms(f"full_1000000_b{small}") + per_row_1m * (rows - few))
    report = {"summary": summary, "cases": results,
              "machine": {"python": platform.python_version(), "platform": platform.platform(),
                          "cpus": os.cpu_count(), "load_average_before": load_before,
                          "load_average_after": [round(x, 2) for x in os.getloadavg()]}}
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
