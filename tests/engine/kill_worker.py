"""Tiny training runs that can be killed with SIGKILL in the middle of an epoch, for resume tests.

``python -m tests.engine.kill_worker KILL_AFTER ROOT SCENARIO [SCENARIO ...]`` forks one child per
scenario (the imports are paid once); each child trains into ``ROOT/<scenario>`` and SIGKILLs
itself inside its ``KILL_AFTER``-th training step, so the last checkpoint is the previous epoch
end and a write of the epoch in flight never completes. The parent prints ``{scenario: signal}``
as JSON. The ``text`` scenario reads ``ROOT/text.yaml``.

The tests resume each killed run in their own process and compare it with an uninterrupted run
built by the same :func:`run` (all on one thread, so the arithmetic is the same everywhere).
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import torch

import trainhub
from trainhub.data import DictDataset, make_loader
from trainhub.data.dataset import passthrough_collate

N_EPOCH = 3


def _kill_at(task, kill_after: int | None) -> None:
    if kill_after is None:
        return
    step, calls = task.training_step, [0]

    def counting_step(model, batch):
        calls[0] += 1
        if calls[0] == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)
        return step(model, batch)

    task.training_step = counting_step


def _ctr(out: Path, resume, kill_after):
    from tests.conftest import make_ctr_data
    from trainhub.models.ranking import DeepFM
    from trainhub.trainers import CTRTrainer

    trainhub.seed_everything(0)
    sparse, dense, x, y = make_ctr_data(240, 0)
    train = DictDataset({k: v[:160] for k, v in x.items()}, y[:160])
    # A seeded generator moves on every epoch: its state must come back from last.ckpt.
    train_dl = torch.utils.data.DataLoader(train, batch_size=40, shuffle=True, collate_fn=passthrough_collate,
                                           generator=torch.Generator().manual_seed(7))
    val_dl = make_loader(DictDataset({k: v[160:] for k, v in x.items()}, y[160:]), 80)
    model = DeepFM(deep_features=sparse + dense, fm_features=sparse, mlp_params={"dims": [8], "dropout": 0.2})
    trainer = CTRTrainer(model, n_epoch=N_EPOCH, earlystop_patience=5, model_path=out, progress=False, seed=0,
                         resume=resume, max_grad_norm=1.0, loggers=["csv"])  # row-wise Adam on the tables
    trainer.config.log_every_n_steps = 2  # step rows in metrics.csv that a killed epoch leaves behind
    _kill_at(trainer.task, kill_after)
    trainer.fit(train_dl, val_dl)
    return trainer


def _match(out: Path, resume, kill_after):
    from trainhub.models import get_model_entry, toy
    from trainhub.trainers import MatchTrainer

    trainhub.seed_everything(0)
    entry = get_model_entry("DSSM")
    model = entry.cls(**entry.example()[0])
    x, y = toy.match_dataset(160, seed=1)
    xv, yv = toy.match_dataset(64, seed=2)
    trainer = MatchTrainer(model, mode=0, n_epoch=N_EPOCH, model_path=out, progress=False, resume=resume,
                           optimizer_params={"lr": 0.01, "weight_decay": 1e-5})
    _kill_at(trainer.task, kill_after)
    trainer.fit(make_loader(DictDataset(x, y), 40, shuffle=True, seed=3), make_loader(DictDataset(xv, yv), 64))
    return trainer


def _mtl(out: Path, resume, kill_after):
    from tests.trainers.test_mtl_trainer import make_mtl_data
    from trainhub.models.multitask import SharedBottom
    from trainhub.trainers import MTLTrainer

    trainhub.seed_everything(0)
    features, x, y = make_mtl_data(240, 0)
    model = SharedBottom(features, ["classification", "classification"], {"dims": [8], "dropout": 0.2},
                         [{"dims": [4]}, {"dims": [4]}])
    trainer = MTLTrainer(model, ["classification", "classification"], adaptive_params={"method": "uwl"},
                         n_epoch=N_EPOCH, model_path=out, progress=False, resume=resume)
    _kill_at(trainer.task, kill_after)
    # shuffle=True without a generator: each epoch's order is drawn from torch's global stream
    train_dl = torch.utils.data.DataLoader(DictDataset({k: v[:160] for k, v in x.items()}, y[:160]), batch_size=40,
                                           shuffle=True, collate_fn=passthrough_collate)
    val_dl = make_loader(DictDataset({k: v[160:] for k, v in x.items()}, y[160:]), 80)
    trainer.fit(train_dl, val_dl, seed=0)
    return trainer


def _text(out: Path, resume, kill_after, config: Path | None = None):
    from trainhub.text import Trainer, load_experiment_config

    config = config or out.parent / "text.yaml"
    cfg = load_experiment_config(config, [f"training.output_dir={out}", f"training.resume={str(resume).lower()}"])
    trainer = Trainer.from_config(cfg)
    _kill_at(trainer.objective, kill_after)
    try:
        trainer.train()
    finally:
        trainer.close()
    return trainer


SCENARIOS = {"ctr": _ctr, "match": _match, "mtl": _mtl, "text": _text}


def run(scenario: str, out: Path, resume: bool = False, kill_after: int | None = None, **kw):
    """Train ``scenario`` into ``out``; returns the trainer."""
    return SCENARIOS[scenario](Path(out), resume, kill_after, **kw)


def main(argv: list[str]) -> None:
    kill_after, root, scenarios = int(argv[0]), Path(argv[1]), argv[2:]
    torch.set_num_threads(1)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    signals = {}
    for name in scenarios:
        pid = os.fork()  # nothing has run on a thread pool yet: forking is safe
        if pid == 0:
            try:
                run(name, root / name, kill_after=kill_after)
            finally:
                os._exit(3)  # reached only if the run was not killed
        _, status = os.waitpid(pid, 0)
        signals[name] = os.WTERMSIG(status) if os.WIFSIGNALED(status) else -os.WEXITSTATUS(status)
    print(json.dumps(signals))


if __name__ == "__main__":
    main(sys.argv[1:])
