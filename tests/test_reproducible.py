"""The README quickstart, run twice as separate processes (different hash seeds, different torch
start-up seeds), gives identical metrics and weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

QUICKSTART = r'''
import hashlib, json, sys
import pandas as pd
import torch
import trainhub
from trainhub.data import CategoricalEncoder, DataGenerator, df_to_dict
from trainhub.features import DenseFeature, SparseFeature
from trainhub.models.ranking import DeepFM
from trainhub.trainers import CTRTrainer

torch.set_num_threads(1)
train_df = pd.read_csv(sys.argv[1])
dense_cols = [c for c in train_df.columns if c.startswith("I")]
sparse_cols = [c for c in train_df.columns if c.startswith("C")]
train_df[dense_cols] = train_df[dense_cols].fillna(0) / (train_df[dense_cols].fillna(0).abs().max() + 1)
encoder = CategoricalEncoder(sparse_cols).fit(train_df)
train_df = encoder.transform(train_df)
sparse = [SparseFeature(c, vocab_size=encoder.vocab_sizes[c], embed_dim=8) for c in sparse_cols]
dense = [DenseFeature(c) for c in dense_cols]
y = train_df.pop("label").to_numpy()
train_dl, val_dl, test_dl = DataGenerator(df_to_dict(train_df), y).generate_dataloader(
    split_ratio=[0.7, 0.1], batch_size=16)

trainhub.seed_everything(0)
model = DeepFM(deep_features=dense + sparse, fm_features=sparse, mlp_params={"dims": [16], "dropout": 0.2})
trainer = CTRTrainer(model, n_epoch=2, earlystop_patience=2, model_path=sys.argv[2], seed=0, progress=False)
trainer.fit(train_dl, val_dl)
weights = hashlib.sha256(b"".join(v.numpy().tobytes() for v in trainer.model.state_dict().values())).hexdigest()
print(json.dumps({"test": trainer.evaluate_all(trainer.model, test_dl), "history": trainer.fit_result.history,
                  "weights": weights}))
'''


def test_same_script_twice_gives_identical_metrics(tmp_path):
    runs = []
    for i, hash_seed in enumerate(("1", "2")):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed, PYTHONPATH=str(REPO / "src"))
        runs.append(subprocess.Popen(
            [sys.executable, "-c", QUICKSTART, str(REPO / "examples" / "data" / "criteo_sample.csv"),
             str(tmp_path / f"run{i}")], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = []
    for proc in runs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
        assert "seeds training, but" not in err  # seeded before the model: no warning
        outputs.append(json.loads(out.strip().splitlines()[-1]))
    assert outputs[0] == outputs[1]
    assert 0.0 <= outputs[0]["test"]["auc"] <= 1.0 and len(outputs[0]["history"]) == 2
