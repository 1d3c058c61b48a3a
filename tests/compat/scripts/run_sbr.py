"""A session-based script (NARM / STAMP) in the shape of Torch-RecHub's ``examples/matching/run_sbr.py``.

Samples are ragged Python lists fed through ``TorchDataset`` and a padding ``collate_fn``; the
model scores every item (list-wise, target = next item id) and ``topk_metrics``' strings are
parsed as the upstream script does.

    python tests/compat/scripts/run_sbr.py --model_name stamp
"""

from __future__ import annotations

from collections import defaultdict
from itertools import accumulate

import numpy as np
import pandas as pd
import torch
import torch.nn.utils.rnn as rnn_utils
from torch.utils.data import DataLoader

from trainhub.data import TorchDataset
from trainhub.features import SequenceFeature
from trainhub.metrics.compat import topk_metrics
from trainhub.models.matching import NARM, STAMP
from trainhub.trainers import MatchTrainer

try:
    from synthetic import sessions
except ImportError:
    from tests.compat.scripts.synthetic import sessions

HISTORY = "hist_item_id"


def model_input(df, max_seq_len):
    """Every prefix of a session predicts the item after it."""
    df = df.copy()
    df["x"] = df["iid"].apply(lambda s: list(accumulate(s[1:-1], lambda acc, e: acc + [e], initial=[s[0]])))
    df["y"] = df["iid"].apply(lambda s: s[1:])
    rows = df[["x", "y"]].explode(["x", "y"])
    rows["x"] = rows["x"].apply(lambda h: h[:max_seq_len])
    return {HISTORY: rows["x"].values.tolist()}, rows["y"].values.tolist()


def collate_fn(batch):
    x = rnn_utils.pad_sequence([torch.LongTensor(b[0][HISTORY]) for b in batch], batch_first=True)
    return {HISTORY: x}, torch.LongTensor([b[1] for b in batch])


def evaluate(model, test_dl, device, top_k):
    res = defaultdict(list)
    model.eval()
    for x, y_true in test_dl:
        _, y_pred = torch.topk(model({k: v.to(device) for k, v in x.items()}).detach(), top_k)
        truth = dict(zip(range(len(y_true)), y_true.cpu().numpy()[:, None]))
        preds = dict(zip(range(len(y_pred)), y_pred.cpu().numpy()))
        for _, lines in topk_metrics(truth, preds, topKs=[top_k]).items():
            name, value = lines[0].split(":")
            res[name.strip()].append(float(value))
    return {k: float(np.mean(v)) for k, v in res.items()}


def main(model_name="narm", epoch=1, batch_size=32, device="cpu", save_dir="./saved", top_k=3, seed=2022,
         max_seq_len=19):
    torch.manual_seed(seed)
    train, test = sessions(seed=seed)
    x_train, y_train = model_input(train, max_seq_len)
    x_test, y_test = model_input(test, max_seq_len)
    num_items = int(pd.concat([train, test])["iid"].explode().max()) + 1
    history = SequenceFeature(HISTORY, vocab_size=num_items, embed_dim=16, pooling="concat")
    train_dl = DataLoader(TorchDataset(x_train, y_train), collate_fn=collate_fn, batch_size=batch_size)
    test_dl = DataLoader(TorchDataset(x_test, y_test), collate_fn=collate_fn, batch_size=batch_size)
    model = NARM(history, 16, 0.25, 0.5) if model_name == "narm" else STAMP(history, 0.05, 0.002)
    trainer = MatchTrainer(model, mode=2, optimizer_params={"lr": 1e-2, "weight_decay": 0}, n_epoch=epoch,
                           device=device, model_path=save_dir)
    trainer.fit(train_dl)
    metrics = evaluate(model, test_dl, device, top_k)
    print(f"test metrics: {metrics}")
    return metrics, num_items


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--model_name", default="narm", choices=["narm", "stamp"])
    parser.add_argument("--epoch", type=int, default=1)
    parser.add_argument("--save_dir", default="./saved")
    args = parser.parse_args()
    main(args.model_name, args.epoch, save_dir=args.save_dir)
