"""A run folder that reloads: ``load_run(folder)`` rebuilds the model and scores new rows.

Files (all written atomically; none executes code when read):

* ``run.json``: the model's registry name and constructor parameters (features by name), every
  feature spec, the trainer kind, metrics, row counts, parameter count;
* ``model.safetensors``: the best weights;
* ``preprocess.json`` + ``encoder.json``: column roles, dense scaling and vocabularies (unseen
  values map to the OOV id);
* ``config.yaml``: the validated config that produced the run;
* ``curves.png``: loss and validation curves;
* matching runs: ``embeddings/`` with user and item embeddings and an item index;
* the trainer's own files: ``model.pth``, ``best.safetensors``, ``last.ckpt``, ``logs/``.

Example:
    >>> run = load_run("runs/deepfm")
    >>> probs = run.predict("new_rows.parquet")        # [N] click probabilities
    >>> run.recommend(users_df, k=10)                  # matching runs: top items per row
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
import torch
from torch import nn

from trainhub.engine.checkpoint import load_weights, save_weights
from trainhub.files import read_json, write_text_atomic
from trainhub.integrity import record_file, verify_file
from trainhub.runs.prepare import Preprocessor, read_table
from trainhub.runs.specs import feature_from_dict, params_from_json

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Run", "load_run", "MANIFEST", "WEIGHTS", "write_manifest", "export_embeddings"]

MANIFEST = "run.json"
WEIGHTS = "model.safetensors"
FORMAT = "trainhub-run"
FORMAT_VERSION = 1


def write_manifest(folder: str | Path, manifest: Mapping[str, Any]) -> Path:
    return write_text_atomic(Path(folder) / MANIFEST, json.dumps(manifest, indent=2, default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} in run.json")


def _as_frame(data: Any, what: str = "data") -> tuple["pd.DataFrame", str]:
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        return data, what
    if isinstance(data, (str, Path, list, tuple)):
        return read_table(data), str(data)
    if isinstance(data, Mapping):
        return pd.DataFrame(dict(data)), what
    raise TypeError(f"{what}: expected a DataFrame, a dict of columns or CSV/Parquet paths, got {type(data).__name__}")


def _batches(x: Mapping[str, np.ndarray], batch_size: int):
    from trainhub.data.dataset import DictDataset, make_loader

    return make_loader(DictDataset(dict(x)), batch_size)


@torch.no_grad()
def tower_outputs(model: nn.Module, tower: str, x: Mapping[str, np.ndarray], batch_size: int = 4096,
                  device: str | torch.device = "cpu") -> torch.Tensor:
    """``model`` in ``tower`` mode (``"user"``/``"item"``) over the rows of ``x`` (CPU tensor)."""
    previous, was_training = model.mode, model.training
    model.mode = tower
    model.eval()
    try:
        parts = [model({k: v.to(device) for k, v in batch.items()}).cpu() for batch in _batches(x, batch_size)]
    finally:
        model.mode = previous
        model.train(was_training)
    return torch.cat(parts)


class Run:
    """A trained run, loaded from its folder. Use :func:`load_run` to get one.

    Attributes:
        folder: the run folder.
        manifest: the content of ``run.json``.
        model: the rebuilt model with the saved weights, in eval mode.
        preprocessor: turns raw frames into model inputs.
        features: ``{name: feature spec}``.
    """

    def __init__(self, folder: Path, manifest: dict, model: nn.Module, preprocessor: Preprocessor | None,
                 features: dict[str, Any], device: torch.device):
        self.folder, self.manifest, self.model = folder, manifest, model
        self.preprocessor, self.features, self.device = preprocessor, features, device
        self.vocab: Any = None  # next-item runs: the ItemVocab (token <-> raw item id)

    @property
    def kind(self) -> str:
        """``"ctr"``, ``"match"``, ``"mtl"`` or ``"seq"`` (next-item)."""
        return self.manifest["trainer"]

    @property
    def metrics(self) -> dict[str, dict[str, float]]:
        return self.manifest.get("metrics", {})

    def __repr__(self) -> str:
        return f"Run({str(self.folder)!r}, model={self.manifest['model']['name']}, trainer={self.kind})"

    # -- scoring --------------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, data: Any, batch_size: int = 4096) -> np.ndarray:
        """Score rows (a DataFrame, a dict of columns, or CSV/Parquet paths).

        Returns click probabilities ``[N]`` (CTR), ``[N, n_task]`` (multi-task: probabilities for
        classification tasks, values for regression), or user-item scores ``[N]`` (matching:
        the inner product of the two towers, the best interest for multi-interest users).
        """
        df, where = _as_frame(data)
        if self.kind == "match":
            users = self._embed(df, "user", where, batch_size)
            items = self._embed(df, "item", where, batch_size)
            if users.dim() == 3:  # [N, K, D]: score with the best interest
                return torch.einsum("nkd,nd->nk", users, items).max(dim=1).values.numpy()
            return (users * items).sum(dim=-1).numpy()
        x = self.preprocessor.transform(df, where)
        if self.kind == "ctr":
            from trainhub.tasks import CTRTask

            step = CTRTask(loss_mode=self.manifest.get("loss_mode", True)).predict_step
        else:
            from trainhub.tasks import MTLTask

            step = MTLTask(self.manifest["task_types"]).predict_step
        self.model.eval()
        outs = [step(self.model, {k: v.to(self.device) for k, v in b.items()}).cpu() for b in _batches(x, batch_size)]
        return torch.cat(outs).numpy() if outs else np.zeros((0,), dtype=np.float32)

    def _match_section(self) -> dict:
        if self.kind != "match":
            raise ValueError(f"{self.folder} holds a {self.kind} run; embeddings and recommendations need a "
                             "matching run")
        return self.manifest["match"]

    def _embed(self, df: "pd.DataFrame", tower: str, where: str, batch_size: int) -> torch.Tensor:
        match = self._match_section()
        columns = match["item_columns"] if tower == "item" else match["user_columns"]
        x = self.preprocessor.transform(df, where, columns=columns)
        return tower_outputs(self.model, tower, x, batch_size, self.device)

    def user_embeddings(self, data: Any, batch_size: int = 4096) -> torch.Tensor:
        """``[N, D]`` (multi-interest ``[N, K, D]``) user-tower outputs of the rows."""
        df, where = _as_frame(data)
        return self._embed(df, "user", where, batch_size)

    def item_embeddings(self, data: Any, batch_size: int = 4096) -> torch.Tensor:
        """``[N, D]`` item-tower outputs of the rows."""
        df, where = _as_frame(data)
        return self._embed(df, "item", where, batch_size)

    def recommend(self, data: Any, k: int = 10, batch_size: int = 4096, *, times: Any = None,
                  exclude_history: bool = True) -> list[list[tuple[Any, float]]]:
        """Top ``k`` items ``(item value, score)`` per row, best first.

        Matching runs score each row's user tower against the exported item index. Next-item
        runs (``trainer == "seq"``) take histories: a list of raw item-id lists (oldest first,
        ``times`` their timestamps in seconds), and never recommend an item of the history
        (``exclude_history``); items the run never saw are dropped from a history. For an
        interaction log, see :meth:`recommend_log`.
        """
        if self.kind == "seq":
            return self._next_items(data, k, times, exclude_history, batch_size)
        from trainhub.retrieval import TorchIndex

        self._match_section()
        folder = self.folder / "embeddings"
        if not (folder / "index").is_dir():
            raise FileNotFoundError(f"{folder / 'index'} is missing; run `trainhub export {self.folder}` first")
        index = TorchIndex.load(folder / "index")
        verify_file(folder / "items.json")  # a flipped byte would return other items' ids
        values = read_json(folder / "items.json", keys=("values",))["values"]
        scores, ids = index.search(self.user_embeddings(data, batch_size), k=k)
        return [[(values[i], float(s)) for i, s in zip(row_ids, row_scores) if i >= 0]
                for row_ids, row_scores in zip(ids.tolist(), scores.tolist())]


    @torch.no_grad()
    def _next_items(self, histories: Any, k: int, times: Any, exclude_history: bool,
                    batch_size: int) -> list[list[tuple[Any, float]]]:
        from trainhub.data.interactions import encode_histories
        from trainhub.tasks.seq import NextItemTask

        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        if isinstance(histories, (str, Path)) or not isinstance(histories, (list, tuple)):
            raise TypeError("a next-item run recommends after histories: a list of item-id lists (use "
                            "recommend_log for an interaction log)")
        section = self.manifest["sequence"]
        tokens, diffs = encode_histories(self.vocab, histories, int(section["max_seq_len"]), times)
        task = NextItemTask(self.manifest.get("loss_type", "cross_entropy"))
        self.model.eval()
        out: list[list[tuple[Any, float]]] = []
        for start in range(0, len(tokens), batch_size):
            part = slice(start, start + batch_size)
            ids, scores = task.top_k(self.model, tokens[part].to(self.device), diffs[part].to(self.device), k,
                                     exclude_history)
            for row_ids, row_scores in zip(ids.cpu().tolist(), scores.cpu().tolist()):
                kept = [(t, v) for t, v in zip(row_ids, row_scores) if t != 0]
                values = self.vocab.decode([t for t, _ in kept]).tolist() if kept else []
                out.append([(value, float(v)) for value, (_, v) in zip(values, kept)])
        return out

    def recommend_log(self, log: Any, k: int = 10, exclude_history: bool = True) -> "pd.DataFrame":
        """Next-item runs: the top ``k`` next items for every user of an interaction log (a
        DataFrame or CSV/Parquet path with the run's user, item and timestamp columns), as a
        frame of ``<user column>``, ``recommended`` (raw item ids, best first) and ``scores``."""
        import pandas as pd

        from trainhub.data.interactions import read_interactions

        if self.kind != "seq":
            raise ValueError(f"{self.folder} holds a {self.kind} run; recommend_log needs a next-item run")
        section = self.manifest["sequence"]
        rows = read_interactions(log, section["user_id"], section["item_id"], section["timestamp"],
                                 time_unit=section.get("time_unit", "s"))
        rows = rows.sort_values(["user", "time"], kind="stable")
        grouped = rows.groupby("user", sort=False)
        users = list(grouped.groups)
        histories = [grouped.get_group(u)["item"].tolist() for u in users]
        times = [grouped.get_group(u)["time"].tolist() for u in users]
        recs = self.recommend(histories, k, times=times, exclude_history=exclude_history)
        return pd.DataFrame({section["user_id"]: users, "recommended": [[v for v, _ in r] for r in recs],
                             "scores": [[round(s, 6) for _, s in r] for r in recs]})


def export_embeddings(run: Run, items: "pd.DataFrame", users: "pd.DataFrame | None" = None,
                      out: str | Path | None = None, batch_size: int = 4096) -> Path:
    """Write ``embeddings/`` for a matching run: one row per distinct item (and user) of the given
    frames, their raw id values, and an exact inner-product item index.

    Files: ``items.safetensors`` / ``users.safetensors`` (tensor ``embeddings``), ``items.json`` /
    ``users.json`` (``{"column": ..., "values": [...]}`` aligned with the rows), ``index/``
    (:class:`trainhub.retrieval.TorchIndex`, ids = row positions in ``items.json``).
    """
    from trainhub.retrieval import TorchIndex

    match = run._match_section()
    folder = Path(out) if out is not None else run.folder / "embeddings"
    item_col, user_col = match["item_id"], match.get("user_id")
    if item_col not in items.columns:
        raise KeyError(f"the item rows have no {item_col!r} column (dataset.item_id)")
    items = items.drop_duplicates(subset=item_col, keep="last").reset_index(drop=True)
    item_emb = run._embed(items, "item", "the item rows", batch_size)
    save_weights(folder / "items.safetensors", {"embeddings": item_emb})
    _write_recorded(folder / "items.json", json.dumps({"column": item_col, "values": items[item_col].tolist()},
                                                      default=_json_default))
    index = TorchIndex(dim=item_emb.shape[-1], metric="ip")
    index.add(item_emb)
    index.save(folder / "index")
    if users is not None and user_col is not None:
        if user_col not in users.columns:
            raise KeyError(f"the user rows have no {user_col!r} column (dataset.user_id)")
        users = users.drop_duplicates(subset=user_col, keep="last").reset_index(drop=True)
        user_emb = run._embed(users, "user", "the user rows", batch_size)
        save_weights(folder / "users.safetensors", {"embeddings": user_emb})
        _write_recorded(folder / "users.json", json.dumps({"column": user_col, "values": users[user_col].tolist()},
                                                          default=_json_default))
    return folder


def _write_recorded(path: Path, text: str) -> Path:
    """A JSON file whose checksum is recorded in ``integrity.json`` (row -> item id maps: a damaged
    one would silently recommend other items)."""
    from trainhub.files import atomic_write

    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"),
                        before_replace=lambda tmp: record_file(tmp, path.name))


def build_model_from_manifest(manifest: Mapping[str, Any]) -> tuple[nn.Module, dict[str, Any]]:
    """The model named in ``run.json`` with its parameters (random weights) and the feature specs."""
    from trainhub.models import create_model

    features = {spec["name"]: feature_from_dict(spec) for spec in manifest["features"]}
    params = params_from_json(manifest["model"]["params"], features)
    return create_model(manifest["model"]["name"], **params), features


def load_run(folder: str | Path, device: str | torch.device = "cpu") -> Run:
    """Rebuild a run's model from its folder and load the best weights (safetensors).

    Raises:
        FileNotFoundError: the folder, ``run.json`` or the weights are missing (named).
        ValueError: ``run.json`` is not a trainhub run manifest, or is from a newer format.
    """
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not a trainhub run folder (no {MANIFEST}); "
                                "train one with `trainhub train CONFIG.yaml`")
    manifest = read_json(path)
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{path} is not a trainhub run manifest (format {manifest.get('format')!r})")
    if int(manifest.get("format_version", 0)) > FORMAT_VERSION:
        raise ValueError(f"{path} has format version {manifest['format_version']}; this trainhub reads "
                         f"up to {FORMAT_VERSION}: upgrade trainhub")
    device = torch.device(device)
    model, features = build_model_from_manifest(manifest)
    load_weights(folder / manifest.get("weights", WEIGHTS), model)
    model.to(device).eval()
    if manifest.get("trainer") == "seq":  # next-item runs: an item vocabulary instead of an encoder
        from trainhub.data.interactions import ItemVocab

        run = Run(folder, manifest, model, None, features, device)
        run.vocab = ItemVocab(read_json(folder / manifest["sequence"]["items"], keys=("items",))["items"])
        return run
    return Run(folder, manifest, model, Preprocessor.load(folder), features, device)
