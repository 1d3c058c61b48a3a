"""Builders shared by the multi-process worker (``ddp_worker.py``, run under torchrun) and the
single-process tests that check its results, so both sides build identical data and models."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from tests.conftest import make_ctr_data
from trainhub.data import DataGenerator, DictDataset, make_loader
from trainhub.features import DenseFeature, SparseFeature

REPO = Path(__file__).resolve().parents[2]
BATCH = 8  # per-rank batch of the one-step comparisons


# -- launching ------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(scenario: str, outdir: Path, *extra: str, nproc: int = 2, timeout: float = 120.0,
           env: dict | None = None) -> tuple[subprocess.CompletedProcess, float]:
    """Run ``tests.engine.ddp_worker <scenario> <outdir>`` under torchrun (2 CPU processes, gloo,
    a free port). A hang fails the caller through ``subprocess.TimeoutExpired``."""
    full_env = dict(os.environ)
    full_env.update({
        "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)]),
        "OMP_NUM_THREADS": "1", "TRAINHUB_DIST_TIMEOUT": "60", "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false", "MLFLOW_DISABLE_TELEMETRY": "true",
    })
    full_env.update(env or {})
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", f"--nproc_per_node={nproc}",
           "--rdzv_backend=c10d", f"--rdzv_endpoint=127.0.0.1:{free_port()}", "--monitor_interval=0.2",
           "-m", "tests.engine.ddp_worker", scenario, str(outdir), *extra]
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, env=full_env, capture_output=True, text=True, timeout=timeout)
    return proc, time.monotonic() - start


def load_results(outdir: Path, nproc: int = 2) -> list[dict]:
    return [torch.load(outdir / f"rank{r}.pt", weights_only=False) for r in range(nproc)]


# -- CTR --------------------------------------------------------------------------------------------
def ctr_loaders(batch_size: int = 32):
    sparse, dense, x, y = make_ctr_data(480, seed=0)
    train, val, test = DataGenerator(x, y).generate_dataloader(split_ratio=[0.6, 0.2], batch_size=batch_size)
    return sparse, dense, train, val, test


def ctr_model(sparse, dense):
    from trainhub.models.ranking import DeepFM

    torch.manual_seed(0)  # BatchNorm on: running statistics differ per rank unless synced
    return DeepFM(deep_features=sparse + dense, fm_features=sparse, mlp_params={"dims": [16], "dropout": 0.0})


# -- matching ---------------------------------------------------------------------------------------
def match_rows(n: int, seed: int):
    from trainhub.models import toy

    x, _ = toy.match_dataset(2 * n, seed=seed)
    return {k: v[::2] for k, v in x.items()}  # liked items only: list-wise with in-batch negatives


def match_model():
    from trainhub.models import toy
    from trainhub.models.matching import DSSM

    torch.manual_seed(0)
    features = toy.sparse_features()
    user = [f for f in features if f.name in ("user_id", "city")] + toy.dense_features()[:1]
    item = [f for f in features if f.name in ("item_id", "cate_id")]
    params = {"dims": [16, 8], "batch_norm": False}
    return DSSM(user, item, params, dict(params), temperature=0.2)


def match_trainer_kwargs(path) -> dict:
    return dict(mode=2, in_batch_neg=True, optimizer_params={"lr": 0.01, "weight_decay": 0.0},
                model_path=str(path), progress=False, n_epoch=3, earlystop_patience=5)


# -- multi-task -------------------------------------------------------------------------------------
def mtl_data(n: int = 320, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = {"user": rng.integers(0, 10, n), "item": rng.integers(0, 12, n), "price": rng.random(n).astype(np.float32)}
    uw, iw = rng.normal(0, 1.5, 10), rng.normal(0, 1.5, 12)
    s0 = uw[x["user"]] + iw[x["item"]] + 2 * (x["price"] - 0.5)
    s1 = uw[x["user"]] - iw[x["item"]]
    y = np.stack([(rng.random(n) < 1 / (1 + np.exp(-s))).astype(np.float32) for s in (s0, s1)], 1)
    return x, y


def mtl_model(batch_norm: bool = False):
    from trainhub.models.multitask import SharedBottom

    torch.manual_seed(0)
    features = [SparseFeature("user", 10, embed_dim=4), SparseFeature("item", 12, embed_dim=4),
                DenseFeature("price")]
    tower = {"dims": [8], "batch_norm": batch_norm}
    return SharedBottom(features, ["classification", "classification"], {"dims": [16], "batch_norm": batch_norm},
                        [tower, dict(tower)])


MTL_METHODS = {"equal": None, "uwl": {"method": "uwl"}, "gradnorm": {"method": "gradnorm", "alpha": 0.5, "lr": 0.1},
               "metabalance": {"method": "metabalance"}}


def one_step_rows(kind: str):
    """The combined batch (``2 * BATCH`` rows) of a one-step comparison."""
    if kind == "match":
        x = match_rows(2 * BATCH, seed=3)
        return x, torch.zeros(2 * BATCH)
    x, y = mtl_data(2 * BATCH, seed=5)
    return x, y


def one_step_trainer(kind: str, path):
    """A trainer with plain SGD, so one step is a linear function of the gradient."""
    from trainhub.trainers import MatchTrainer, MTLTrainer

    if kind == "match":
        return MatchTrainer(match_model(), **{**match_trainer_kwargs(path), "optimizer_fn": torch.optim.SGD,
                                              "optimizer_params": {"lr": 0.5}})
    return MTLTrainer(mtl_model(), ["classification", "classification"], optimizer_fn=torch.optim.SGD,
                      optimizer_params={"lr": 0.5, "weight_decay": 0.0}, adaptive_params=MTL_METHODS[kind],
                      regularization_params={"dense_l2": 1e-3}, model_path=str(path), progress=False)


def one_step(kind: str, path, rows_per_batch: int) -> dict:
    """Train one step on the combined batch (one process: ``rows_per_batch = 2 * BATCH``; two
    processes: ``BATCH`` each, sharded by the trainer). Returns every trained tensor."""
    x, y = one_step_rows(kind)
    trainer = one_step_trainer(kind, path)
    trainer.train_one_epoch(make_loader(DictDataset(x, y), rows_per_batch))
    from trainhub.engine import unwrap_model

    state = {k: v.detach().clone() for k, v in unwrap_model(trainer.model).state_dict().items()}
    weighting = getattr(trainer, "weighting", None)
    if weighting is not None:
        state.update({f"weighting.{k}": v.detach().clone() for k, v in weighting.state_dict().items()
                      if isinstance(v, torch.Tensor)})
    return state


# -- row-wise tables under GradNorm / MetaBalance ------------------------------------------------------
class RowwiseMTL(torch.nn.Module):
    """A shared sparse-gradient table (marked row-wise, as the speed path's fused tables) and two heads."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.table = torch.nn.Embedding(10, 4, sparse=True)
        self.table.weight._trainhub_rowwise = True
        self.heads = torch.nn.Linear(4, 2)

    def forward(self, x):
        return self.heads(self.table(x["id"]))

    def shared_parameters(self):
        return [self.table.weight]

    def last_shared_parameters(self):
        return [self.table.weight]


def rowwise_weighting_step(method: str, model: torch.nn.Module, rows: slice) -> dict:
    """One backward of GradNorm / MetaBalance on ``rows`` of a fixed batch; the gradients it leaves."""
    from trainhub.engine import unwrap_model
    from trainhub.tasks import MTLTask, build_weighting

    g = torch.Generator().manual_seed(1)
    x = {"id": torch.randint(0, 10, (2 * BATCH,), generator=g)}
    y = torch.randint(0, 2, (2 * BATCH, 2), generator=g).float()
    weighting = build_weighting({"gradnorm": {"method": "gradnorm", "alpha": 0.5, "lr": 0.1},
                                 "metabalance": {"method": "metabalance"}}[method])
    task = MTLTask(["classification", "classification"], weighting=weighting).bind(model)
    out = task.training_step(model, ({"id": x["id"][rows]}, y[rows]))
    task.backward(out)
    bare = unwrap_model(model)
    result = {"table_grad": bare.table.weight.grad.to_dense(), "heads_grad": bare.heads.weight.grad.clone()}
    if method == "gradnorm":
        result["loss_weights"] = weighting.loss_weights.detach().clone()
    else:
        result["norm_avg"] = weighting.norm_avg.clone()
    return result
