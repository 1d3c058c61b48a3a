"""``trainhub train`` under torchrun (2 CPU processes, gloo): rank 0 alone writes the run folder,
which is complete and loadable, and its metrics are whole-set metrics (a single process scoring the
saved weights reproduces them). Subprocesses have timeouts: a hang fails the test."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from sklearn.metrics import roc_auc_score

from tests.engine.ddp_cases import REPO, free_port
from trainhub.runs import load_dataset, load_run

CONFIGS = {
    "ctr": ["examples/configs/deepfm_ctr.yaml", "dataset.params.rows=3000", "trainer.n_epoch=2",
            "trainer.batch_size=128", "model.params.mlp_params.dims=[16]"],
    "match": ["examples/configs/youtubednn_retrieval.yaml", "dataset.params.num_users=300", "trainer.n_epoch=2",
              "trainer.batch_size=64"],
}


def _torchrun(args, tmp_path, timeout=240):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)]), "OMP_NUM_THREADS": "1",
           "TRAINHUB_DIST_TIMEOUT": "60", "MLFLOW_DISABLE_TELEMETRY": "true"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
           "--rdzv_backend=c10d", f"--rdzv_endpoint=127.0.0.1:{free_port()}", "--monitor_interval=0.2",
           "-m", "trainhub.cli", "train", *args]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("kind", ["ctr", "match"])
def test_cli_under_torchrun_writes_one_complete_run_folder(kind, tmp_path):
    out = tmp_path / "run"
    config, *overrides = CONFIGS[kind]
    proc = _torchrun([config, *overrides, f"output_dir={out}", "trainer.progress=false"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout[proc.stdout.index("{"):])  # printed once, by rank 0
    assert proc.stdout.count('"run_dir"') == 1 and summary["epochs_run"] == 2
    assert proc.stderr.count("epoch 1 (step") <= 1  # per-epoch lines from rank 0 only
    names = {p.name for p in out.iterdir()}
    assert {"run.json", "model.safetensors", "config.yaml", "encoder.json", "preprocess.json", "last.ckpt",
            "integrity.json", "logs"} <= names
    assert (out / "logs" / "metrics.csv").is_file()
    assert not list(tmp_path.glob(".run.*.tmp")) and not (tmp_path / ".run.partial").exists()
    run = load_run(out)
    if kind == "ctr":
        frames = load_dataset("synthetic_ctr", rows=3000, seed=0)
        auc = roc_auc_score(frames["test"]["label"], run.predict(frames["test"]))
        assert auc == pytest.approx(run.metrics["test"]["auc"], abs=1e-6)
    else:
        assert (out / "embeddings" / "index").is_dir()
        assert 0.0 <= run.metrics["test"]["recall_at_50"] <= 1.0
