"""Train HSTU with one library's ``SeqTrainer`` on Torch-RecHub's sliding-window samples for a fixed
number of steps, validating every few steps: the step-level speed curve of ``bench/generative.py``.

    python bench/generative_steps.py --lib torch_rechub|trainhub --data DIR --steps N --eval-every K
        --model-json '{...}' [--batch-size 128] [--lr 1e-3] [--seed 2022] [--out FILE]
    python bench/generative_steps.py --lib ... --data DIR --model-json '{...}' --checkpoint model.pth
        --steps 0 --eval-every 1          (validation metrics of saved weights only)

``DIR`` holds ``train_data.pkl``, ``val_data.pkl`` and ``vocab.pkl`` as upstream's
``preprocess_ml_hstu.py`` writes them. Both libraries see the same batches (one seeded permutation of
the training samples, cut into ``steps`` batches): ``HSTUModel`` and ``SeqTrainer`` come from the
library named, and each chunk of ``K`` steps is one call of its ``SeqTrainer.train_one_epoch`` on a
loader over that chunk (upstream's training step, unchanged). Validation NDCG@10 / HR@10 are
computed here, the same way for both libraries and outside the timed part: the last position's
scores ranked against every item, PAD and the sample's history items excluded, ties counted against
the target (as ``trainhub.tasks.seq.full_ranks``).

This file imports neither library at module level and nothing from trainhub when ``--lib
torch_rechub``: it runs in Torch-RecHub's own venv. Prints one JSON object (also to ``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset


def load_split(folder: Path, name: str) -> dict[str, np.ndarray]:
    with open(folder / f"{name}_data.pkl", "rb") as f:
        return pickle.load(f)


def tensors(split: dict[str, np.ndarray], rows: np.ndarray | None = None) -> TensorDataset:
    pick = (lambda a: a[rows]) if rows is not None else (lambda a: a)
    return TensorDataset(torch.as_tensor(pick(split["seq_tokens"])).long(),
                         torch.as_tensor(pick(split["seq_positions"])).long(),
                         torch.as_tensor(pick(split["seq_time_diffs"])).long(),
                         torch.as_tensor(pick(split["targets"])).long())


@torch.no_grad()
def rank_metrics(model: torch.nn.Module, split: dict[str, np.ndarray], k: int = 10, batch_size: int = 256
                 ) -> dict[str, float]:
    """Exact full-ranking HR@k / NDCG@k of the last position (PAD and history excluded)."""
    model.eval()
    hits = ndcg = 0.0
    data = tensors(split)
    for tokens, _pos, diffs, target in DataLoader(data, batch_size=batch_size):
        scores = model(tokens, diffs)[:, -1].float()  # [B, V]
        target_score = scores.gather(1, target.unsqueeze(1))
        ahead = scores >= target_score
        ahead[:, 0] = False
        ahead.scatter_(1, tokens, False)  # history (PAD lands on column 0, already out)
        ahead.scatter_(1, target.unsqueeze(1), False)
        rank = ahead.sum(1).double()
        hit = rank < k
        hits += float(hit.sum())
        ndcg += float((hit / torch.log2(rank + 2)).sum())
    model.train()
    n = len(data)
    return {f"hr@{k}": hits / n, f"ndcg@{k}": ndcg / n}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lib", choices=("torch_rechub", "trainhub"), required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--eval-every", type=int, required=True)
    parser.add_argument("--model-json", required=True, help="HSTUModel keyword arguments (vocab_size is added)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=2022)
    parser.add_argument("--work", type=Path, default=Path("/tmp"))
    parser.add_argument("--out", type=Path)
    parser.add_argument("--checkpoint", type=Path,
                        help="only validate these weights (a run's model.pth) and print the metrics")
    args = parser.parse_args(argv)

    if args.lib == "torch_rechub":
        from torch_rechub.models.generative.hstu import HSTUModel
        from torch_rechub.trainers.seq_trainer import SeqTrainer
        extra = {}
    else:
        from trainhub.models.generative import HSTUModel
        from trainhub.trainers.seq_trainer import SeqTrainer
        extra = {"progress": False, "seed": args.seed}

    train, val = load_split(args.data, "train"), load_split(args.data, "val")
    with open(args.data / "vocab.pkl", "rb") as f:
        vocab = pickle.load(f)
    item_to_idx = vocab["item_to_idx"] if "item_to_idx" in vocab else vocab
    vocab_size = max(item_to_idx.values()) + 1

    torch.manual_seed(args.seed)  # the run script's seeding: weights drawn after it
    model = HSTUModel(vocab_size=vocab_size, **json.loads(args.model_json))
    if args.checkpoint:
        model.load_state_dict(torch.load(args.checkpoint, map_location="cpu", weights_only=True))
        print(json.dumps({"lib": args.lib, "checkpoint": str(args.checkpoint), **rank_metrics(model, val)}))
        return 0
    args.work.mkdir(parents=True, exist_ok=True)
    trainer = SeqTrainer(model, optimizer_fn=torch.optim.AdamW,
                         optimizer_params={"lr": args.lr, "weight_decay": 0.0, "betas": (0.9, 0.98)},
                         n_epoch=1, earlystop_patience=10, device="cpu", model_path=str(args.work), **extra)
    order = np.random.RandomState(args.seed).permutation(len(train["targets"]))
    order = order[: args.steps * args.batch_size]

    curve = [{"step": 0, "train_wall_s": 0.0, "train_cpu_s": 0.0, **rank_metrics(trainer.model, val)}]
    wall = cpu = 0.0
    samples = positions = 0
    for first in range(0, args.steps, args.eval_every):
        rows = order[first * args.batch_size:min(first + args.eval_every, args.steps) * args.batch_size]
        loader = DataLoader(tensors(train, rows), batch_size=args.batch_size, shuffle=False)
        samples += len(rows)
        positions += int((train["seq_tokens"][rows] != 0).sum())  # every real position takes a loss
        w0, c0 = time.perf_counter(), time.process_time()
        trainer.train_one_epoch(loader)
        wall += time.perf_counter() - w0
        cpu += time.process_time() - c0
        step = min(first + args.eval_every, args.steps)
        curve.append({"step": step, "train_wall_s": round(wall, 2), "train_cpu_s": round(cpu, 2),
                      **rank_metrics(trainer.model, val)})
        print(json.dumps(curve[-1]), file=sys.stderr, flush=True)
    result = {
        "lib": args.lib,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "samples": samples,
        "loss_positions": positions,
        "train_wall_s": round(wall, 2),
        "train_cpu_s": round(cpu, 2),
        "samples_per_s": round(samples / wall, 1),
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        "torch": torch.__version__,
        "curve": curve,
    }
    text = json.dumps(result)
    if args.out:
        args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
