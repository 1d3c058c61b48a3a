"""Runs under ``torchrun`` (see ``ddp_cases.launch``); each rank saves what it saw to ``rank<r>.pt``.

Scenarios: ``rec`` (CTR / Match / MTL trainers, one-step equality, resume, stopping, row-wise
parameters), ``text`` (the text Trainer; the config path follows), ``fail`` (rank 1 raises).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from tests.engine import ddp_cases as cases
from trainhub.data import DictDataset, make_loader
from trainhub.engine import EarlyStopping, FitConfig, Runtime, StepOutput, fit, unwrap_model

torch.set_num_threads(1)
RANK = int(os.environ["RANK"])


def record_writes() -> list[str]:
    """Every checkpoint/weights file this rank writes (through ``atomic_write``)."""
    import trainhub.engine.checkpoint as ckpt

    written: list[str] = []
    original = ckpt.atomic_write

    def spy(path, write, **kwargs):
        written.append(str(path))
        return original(path, write, **kwargs)

    ckpt.atomic_write = spy
    return written


# -- row-wise parameters --------------------------------------------------------------------------
class RowwiseToy(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(RANK)  # different on each rank: setup_model must broadcast rank 0's
        self.table = nn.Parameter(torch.randn(4, 2))
        self.table._trainhub_rowwise = True
        self.dense = nn.Linear(2, 1)

    def forward(self, ids):
        return self.dense(self.table[ids]).sum()


def rowwise_case() -> dict:
    rt = Runtime("cpu")
    model = rt.setup_model(RowwiseToy())
    bare = unwrap_model(model)
    start = bare.table.detach().clone()
    model(torch.tensor([RANK, RANK])).backward()  # each rank touches its own row
    return {"start": start, "table_grad": bare.table.grad.clone(), "dense_grad": bare.dense.weight.grad.clone()}


# -- stopping when ranks' own shards disagree ------------------------------------------------------------
class ShardScoreTask:
    """Validation score improves on rank 0's rows (ids < 10) and worsens on rank 1's every epoch."""

    def __init__(self):
        self.ids: list[float] = []
        self.calls = 0

    def training_step(self, model, batch):
        x, y = batch
        loss = ((model(x["id"].unsqueeze(1)).squeeze(1) - y) ** 2).mean()
        return StepOutput(loss, batch_size=len(y))

    def validation_step(self, model, batch):
        self.ids.extend(batch[0]["id"].tolist())

    def compute_metrics(self):
        e, self.calls = self.calls, self.calls + 1
        score = sum(e if i < 10 else -10 * e for i in self.ids) / len(self.ids)
        self.ids = []
        return {"score": score}


class SyncedShardScoreTask(ShardScoreTask):
    def sync_metrics(self, gather):
        self.ids = [i for part in gather(self.ids) for i in part]


def stop_case(task) -> dict:
    torch.manual_seed(0)
    ids = torch.arange(20, dtype=torch.float32)
    train = make_loader(DictDataset({"id": ids}, ids * 0.5), 4, shuffle=True, seed=0)
    val = make_loader(DictDataset({"id": ids}, ids), 4)
    rt = Runtime("cpu")
    model = rt.setup_model(nn.Linear(1, 1))
    result = fit(model, task, torch.optim.SGD(model.parameters(), lr=1e-3), train, val, runtime=rt,
                 config=FitConfig(max_epochs=4, progress=False), stopper=EarlyStopping("score", "max", patience=1))
    return {"history": result.history, "epochs": result.state.epoch, "stopped": result.stopped_early}


# -- trainers ---------------------------------------------------------------------------------------------
def ctr_fit(out: Path) -> dict:
    from trainhub.trainers import CTRTrainer

    sparse, dense, train, val, test = cases.ctr_loaders()
    trainer = CTRTrainer(cases.ctr_model(sparse, dense), optimizer_params={"lr": 0.02, "weight_decay": 0.0},
                         n_epoch=3, earlystop_patience=5, model_path=str(out / "ctr"), loggers=["csv"],
                         progress=False, seed=0)
    result = trainer.fit(train, val)
    return {"history": result.history, "best_epoch": result.best_epoch,
            "evaluate": trainer.evaluate_all(trainer.model, val), "predict": trainer.predict(trainer.model, test)}


def ctr_resume(out: Path) -> dict:
    from trainhub.trainers import CTRTrainer

    sparse, dense, train, val, _ = cases.ctr_loaders()

    def run(path, n_epoch, resume):
        trainer = CTRTrainer(cases.ctr_model(sparse, dense), optimizer_params={"lr": 0.02, "weight_decay": 0.0},
                             n_epoch=n_epoch, earlystop_patience=5, model_path=str(path), progress=False, seed=0,
                             resume=resume)
        result = trainer.fit(train, val)
        return result.history, {k: v.clone() for k, v in unwrap_model(trainer.model).state_dict().items()}

    straight_history, straight = run(out / "straight", 2, False)
    first_history, _ = run(out / "resumed", 1, False)
    resumed_history, resumed = run(out / "resumed", 2, True)
    return {"straight_history": straight_history, "first_history": first_history,
            "resumed_history": resumed_history, "straight": straight, "resumed": resumed}


def match_fit(out: Path) -> dict:
    from trainhub.trainers import MatchTrainer

    train = make_loader(DictDataset(cases.match_rows(128, seed=0), torch.zeros(128)), 16, shuffle=True, seed=0)
    val = make_loader(DictDataset(cases.match_rows(64, seed=1), torch.zeros(64)), 16)
    trainer = MatchTrainer(cases.match_model(), **cases.match_trainer_kwargs(out / "match"))
    result = trainer.fit(train, val)
    users = make_loader(DictDataset(cases.match_rows(37, seed=2)), 8)  # 37 rows: blocks of 19 and 18
    return {"history": result.history, "evaluate": trainer.evaluate_all(trainer.model, val),
            "user_embedding": trainer.inference_embedding(trainer.model, "user", users, model_path=out / "match")}


def match_unequal_rows() -> dict:
    """Forward only: rank 0 holds BATCH rows, rank 1 BATCH - 3 (a short last batch)."""
    import torch.nn.functional as F

    from trainhub.trainers import MatchTrainer

    x = cases.match_rows(2 * cases.BATCH - 3, seed=4)
    start = 0 if RANK == 0 else cases.BATCH
    end = cases.BATCH if RANK == 0 else 2 * cases.BATCH - 3
    trainer = MatchTrainer(cases.match_model(), mode=2, in_batch_neg=True, progress=False, model_path="unused")
    with torch.no_grad():
        cands = trainer.task.negatives(trainer.model, {k: v[start:end] for k, v in x.items()}, sample=True)
        logits = cands.logits()
        per_row = F.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long), reduction="none")
    return {"rows": (start, end), "per_row_loss": per_row}


def mtl_fit(out: Path) -> dict:
    from trainhub.trainers import MTLTrainer

    x, y = cases.mtl_data()
    train = make_loader(DictDataset({k: v[:224] for k, v in x.items()}, y[:224]), 16, shuffle=True, seed=0)
    val = make_loader(DictDataset({k: v[224:] for k, v in x.items()}, y[224:]), 32)
    trainer = MTLTrainer(cases.mtl_model(batch_norm=True), ["classification", "classification"],
                         adaptive_params={"method": "metabalance"}, n_epoch=2, model_path=str(out / "mtl"),
                         progress=False, optimizer_params={"lr": 0.01, "weight_decay": 0.0})
    log = trainer.fit(train, val)
    return {"log": log, "evaluate": trainer.evaluate(trainer.model, val),
            "predict": trainer.predict(trainer.model, val)}


def rowwise_weighting() -> dict:
    rows = slice(RANK * cases.BATCH, (RANK + 1) * cases.BATCH)
    return {m: cases.rowwise_weighting_step(m, Runtime("cpu").setup_model(cases.RowwiseMTL()), rows)
            for m in ("gradnorm", "metabalance")}


def rec(out: Path) -> dict:
    written = record_writes()
    res = {"rowwise": rowwise_case(), "rowwise_weighting": rowwise_weighting()}
    res["stop_synced"] = stop_case(SyncedShardScoreTask())
    res["stop_local"] = stop_case(ShardScoreTask())
    res["one_step"] = {kind: cases.one_step(kind, out / f"step_{kind}", cases.BATCH)
                       for kind in ["match", *cases.MTL_METHODS]}
    res["match_unequal"] = match_unequal_rows()
    res["ctr"] = ctr_fit(out)
    res["ctr_resume"] = ctr_resume(out)
    res["match"] = match_fit(out)
    res["mtl"] = mtl_fit(out)
    res["written"] = list(written)
    return res


def text(out: Path, config_path: str) -> dict:
    from trainhub.text import Trainer, load_experiment_config

    written = record_writes()
    trainer = Trainer.from_config(load_experiment_config(config_path))
    try:
        result = trainer.train()
        metrics = trainer.evaluate()
        trainer.save_model(out / "final")
    finally:
        trainer.close()
    return {"history": result.history, "best_epoch": result.best_epoch, "evaluate": metrics,
            "written": list(written), "num_train_batches": {k: len(v) for k, v in trainer.train_dataloaders.items()}}


def fail(out: Path) -> dict:
    class Boom(SyncedShardScoreTask):
        steps = 0

        def training_step(self, model, batch):
            self.steps += 1
            if RANK == 1 and self.steps == 3:
                raise RuntimeError("boom on rank 1")
            return super().training_step(model, batch)

    stop_case(Boom())
    return {}


def main() -> None:
    scenario, out = sys.argv[1], Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    if scenario == "rec":
        result = rec(out)
    elif scenario == "text":
        result = text(out, sys.argv[3])
    else:
        result = fail(out)
    torch.save(result, out / f"rank{RANK}.pt")
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
