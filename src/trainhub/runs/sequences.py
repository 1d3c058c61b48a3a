"""Next-item (generative) config runs: an interaction log in, a run folder out.

``dataset`` names the log's files (``train``; CSV, TSV or Parquet) and its ``user_id``,
``item_id`` and ``timestamp`` columns; the log becomes chronological per-user sequences, split
leave-one-out (last item test, second-last validation) or by time, truncated to the most recent
``max_seq_len`` items. The model (``HSTUModel``, ``SASRecModel``, ...) gets ``vocab_size`` and
``max_seq_len`` from the data, and trains with :class:`trainhub.trainers.SeqTrainer`. The run folder
holds ``items.json`` (token -> raw item id) in place of an encoder.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainhub.engine import seed_everything
from trainhub.runs.config import ConfigError, RunConfig
from trainhub.runs.specs import check_model_params

if TYPE_CHECKING:
    from trainhub.runs.train import _Job

__all__ = ["sequence_job", "ITEMS"]

log = logging.getLogger(__name__)

ITEMS = "items.json"


def _sequences(cfg: RunConfig):
    from trainhub.data import interaction_sequences

    ds = cfg.dataset
    if ds.val is not None or ds.test is not None:
        raise ConfigError("dataset.val / dataset.test: a next-item run splits one log itself "
                          "(dataset.sequence_split: leave_one_out or time); give the whole log as dataset.train")
    read = dict(ds.csv_options)
    if ds.csv_sep is not None:
        read.setdefault("sep", ds.csv_sep)
    if ds.name is not None:
        from trainhub.runs.datasets import load_dataset

        frames = load_dataset(ds.name, **ds.params)
        if ds.timestamp is None or "train" not in frames:
            raise ConfigError(f"dataset.name: {ds.name} is not an interaction log (user_id, item_id, timestamp); "
                              "next-item runs read one, e.g. synthetic_interactions or your own file in dataset.train")
        source: Any = frames["train"]
    else:
        files = ds.train if isinstance(ds.train, list) else [ds.train]
        if len(files) != 1:
            raise ConfigError("dataset.train: a next-item run reads one log file (concatenate the parts first)")
        source = str(files[0])
    try:
        return interaction_sequences(
            source, ds.user_id or "user_id", ds.item_id or "item_id", ds.timestamp or "timestamp",
            split=ds.sequence_split, max_seq_len=ds.max_seq_len, layout=ds.layout,
            min_interactions=ds.min_interactions, val_start=ds.val_start, test_start=ds.test_start,
            time_unit=ds.time_unit, read_kwargs=read or None)
    except (KeyError, ValueError, TypeError) as err:
        raise ConfigError(str(err.args[0]) if err.args else str(err)) from None


def _model(cfg: RunConfig, vocab_size: int, max_seq_len: int):
    from trainhub.models import get_model_entry

    entry = get_model_entry(cfg.model.name)
    params = dict(cfg.model.params)
    for key, value in (("vocab_size", vocab_size), ("max_seq_len", max_seq_len)):
        if key in params and params[key] != value:
            raise ConfigError(f"model.params.{key}: the data gives {value}, the config says {params[key]}; leave it "
                              "out (it comes from the data: items + 1 for PAD, dataset.max_seq_len)")
        params[key] = value
    try:
        check_model_params(entry.cls, params)
        return entry.cls(**params), params
    except (ValueError, TypeError, KeyError) as err:
        raise ConfigError(f"model {cfg.model.name}: {err.args[0] if err.args else err}") from None


def sequence_job(cfg: RunConfig, stage: Path, logger: Any, resume: bool) -> "_Job":
    """Sequences, model and :class:`~trainhub.trainers.SeqTrainer` of a next-item run."""
    from trainhub.runs.train import _Job, trainer_options
    from trainhub.tasks.seq import DEFAULT_KS
    from trainhub.trainers import SeqTrainer

    data = _sequences(cfg)
    seed_everything(cfg.seed)  # the same weights whatever the data loading consumed
    model, params = _model(cfg, data.vocab_size, data.max_seq_len)
    t = cfg.trainer
    ks = t.topk if "topk" in t.model_fields_set else DEFAULT_KS
    trainer = SeqTrainer(model, loss_type=t.loss_type or "cross_entropy", loss_params=t.loss_params,
                         ks=ks, exclude_history=True if t.exclude_history is None else t.exclude_history,
                         **trainer_options(cfg, stage, logger, resume))
    eval_bs = t.eval_batch_size or 4 * t.batch_size
    loaders = dict(zip(("train", "val", "test"), data.dataloaders(t.batch_size, eval_bs, seed=cfg.seed)))
    rows = {"users": data.sequences.num_users, "items": data.vocab.num_items,
            **{p: len(getattr(data, p)) for p in ("train", "val", "test")}}
    manifest = {"sequence": {"max_seq_len": data.max_seq_len, "split": data.split, "layout": data.layout,
                             "user_id": cfg.dataset.user_id or "user_id", "item_id": cfg.dataset.item_id or "item_id",
                             "timestamp": cfg.dataset.timestamp or "timestamp", "time_unit": cfg.dataset.time_unit,
                             "items": ITEMS},
                "loss_type": trainer.loss_type}
    return _Job(trainer, loaders, rows, params, lambda folder: data.vocab.save(Path(folder) / ITEMS), manifest,
                {"vocab_size": data.vocab_size, "max_seq_len": data.max_seq_len})
