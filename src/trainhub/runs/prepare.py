"""From raw rows to model inputs, the same way at training and at prediction time.

:class:`Preprocessor` holds the column roles, the fitted :class:`~trainhub.data.CategoricalEncoder`
(unseen values become the OOV id) and the dense-column scaling; it is saved in the run folder as
``preprocess.json`` + ``encoder.json`` (plain JSON, nothing executable) and turns any new frame
into the ``{column: array}`` dict the model reads.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from trainhub.data.encoders import CategoricalEncoder
from trainhub.features import DenseFeature, SequenceFeature, SparseFeature
from trainhub.files import read_json, write_text_atomic

if TYPE_CHECKING:
    import pandas as pd

    from trainhub.runs.config import DatasetConfig

log = logging.getLogger(__name__)

__all__ = ["Preprocessor", "read_table", "load_frames", "check_labels", "source_of"]

CSV_SUFFIXES = (".csv", ".tsv", ".txt", ".csv.gz", ".tsv.gz")


def read_table(paths: str | Sequence[str], sep: str | None = None) -> "pd.DataFrame":
    """Rows of CSV/TSV/Parquet files (a file, a list, a directory or a glob), concatenated.

    Every file must have the first file's columns, with compatible types (numbers with numbers,
    text with text): a file that lacks a column, names it differently or holds text where the
    others hold numbers is an error naming the file and the column, never silently imputed rows.
    ``df.attrs["sources"]`` keeps ``(file, first_row, end_row)`` so later errors can name a file.
    """
    import pandas as pd

    from trainhub.data.files import resolve_files

    files = resolve_files(paths, suffixes=(".parquet", ".pq") + CSV_SUFFIXES)
    frames = []
    for file in files:
        lower = file.lower()
        if lower.endswith((".parquet", ".pq")):
            from trainhub.data.files import import_pyarrow

            import_pyarrow()
            try:
                frames.append(pd.read_parquet(file, page_checksum_verification=True))
            except OSError as err:  # a damaged page (its CRC differs) or file
                raise ValueError(f"cannot read {file}: {err}") from None
        elif lower.endswith(CSV_SUFFIXES):
            try:
                # index_col=False: rows that end in a separator must not shift every column by one
                frames.append(pd.read_csv(file, sep=sep or ("\t" if ".tsv" in lower else ","), index_col=False))
            except pd.errors.EmptyDataError:
                raise ValueError(f"{file} is empty (no header, no rows)") from None
            except (pd.errors.ParserError, UnicodeDecodeError) as err:
                raise ValueError(f"{file} is not a readable CSV file: {str(err).strip()}") from None
        else:
            raise ValueError(f"cannot read {file!r}: use .csv, .tsv or .parquet files")
    _check_same_columns(files, frames)
    sources, start = [], 0
    for file, frame in zip(files, frames):
        sources.append((file, start, start + len(frame)))
        start += len(frame)
    out = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    out.attrs["sources"] = sources
    return out


def _kind(dtype: Any) -> str:
    return "number" if dtype.kind in "biuf" else "bool" if dtype.kind == "b" else "text"


def _check_same_columns(files: Sequence[str], frames: Sequence["pd.DataFrame"]) -> None:
    first, reference = files[0], frames[0]
    for file, frame in zip(files[1:], frames[1:]):
        missing = [c for c in reference.columns if c not in frame.columns]
        extra = [c for c in frame.columns if c not in reference.columns]
        if missing or extra:
            what = (f"lacks column {missing[0]!r} that {first} has" if missing
                    else f"has column {extra[0]!r} that {first} lacks")
            raise ValueError(f"{file} {what}; every file of a dataset needs the same columns "
                             f"({', '.join(map(str, reference.columns))})")
        for col in reference.columns:
            a, b = reference[col], frame[col]
            if len(a) == 0 or len(b) == 0 or a.isna().all() or b.isna().all():
                continue  # an empty or all-missing column takes any type
            if _kind(a.dtype) != _kind(b.dtype):
                raise ValueError(f"column {col!r} holds {_kind(b.dtype)} values in {file} but {_kind(a.dtype)} "
                                 f"values in {first}; every file of a dataset needs the same column types")


def source_of(df: "pd.DataFrame", row: int) -> str:
    """``"<file> row <n>"`` (1-based data row, header not counted) for a row of a frame that
    :func:`read_table` built, else ``"row <n>"`` (0-based position)."""
    for file, start, end in df.attrs.get("sources", ()):
        if start <= row < end:
            return f"{file} data row {row - start + 1}"
    files = [file for file, _, _ in df.attrs.get("split_of", ())]
    if files:
        return f"row {row} of the shuffled split of {', '.join(files)}"
    return f"row {row}"


def check_labels(kind: str, cfg: Any, labels: Sequence[str], task_types: Sequence[str] | None,
                 y: Mapping[str, np.ndarray | None], frames: Mapping[str, Any] | None = None) -> None:
    """Label values fit the task before training: finite everywhere, 0/1 for binary
    classification (CTR, classification tasks of a multi-task run, point-wise matching)."""
    if not labels:
        return
    if kind == "ctr":
        binary = [True] * len(labels)
    elif kind == "mtl":
        binary = [t == "classification" for t in (task_types or [])]
    else:
        binary = [(cfg.trainer.mode or 0) == 0] * len(labels)
    for part, values in y.items():
        if values is None or len(values) == 0:
            continue
        values = values.reshape(len(values), -1)
        for j, label in enumerate(labels):
            column = values[:, j]
            bad = ~np.isfinite(column)
            kind_msg = "is not a finite number"
            if not bad.any() and j < len(binary) and binary[j]:
                bad = (column != 0) & (column != 1)
                kind_msg = ("is not 0 or 1, and this is a binary classification label (derive a 0/1 label, "
                            "e.g. rating >= 4, or use a regression task)")
            if not bad.any() and part == "train" and j < len(binary) and binary[j] and len(np.unique(column)) == 1:
                log.warning("label column %r holds only %g in the training rows: the model can learn nothing but "
                            "that constant", label, column[0])
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                frame = (frames or {}).get(part)
                where = source_of(frame, row) if frame is not None else f"row {row}"
                raise ValueError(f"label column {label!r}: the value {column[row]:g} in the {part} rows ({where}) "
                                 f"{kind_msg}; {int(bad.sum())} rows of {len(column)} are affected")


def load_frames(dataset: "DatasetConfig", seed: int) -> dict[str, "pd.DataFrame"]:
    """``{"train", "val", "test"}`` frames of a dataset section (``val``/``test`` may be None)."""
    from trainhub.data.synthetic import split_frame

    if dataset.name is not None:
        from trainhub.runs.datasets import load_dataset

        frames = dict(load_dataset(dataset.name, **dataset.params))
    else:
        frames = {"train": read_table(dataset.train, dataset.csv_sep)}
        for part in ("val", "test"):
            paths = getattr(dataset, part)
            if paths is not None:
                frames[part] = read_table(paths, dataset.csv_sep)
        for part, frame in frames.items():
            if len(frame) == 0:
                files = ", ".join(f for f, _, _ in frame.attrs.get("sources", ())) or str(getattr(dataset, part))
                raise ValueError(f"dataset.{part}: {files} holds no data rows (a header only?); give files with rows "
                                 f"or leave dataset.{part} out")
    if "val" not in frames and "test" not in frames:
        frames = split_frame(frames["train"], tuple(dataset.split), dataset.split_seed)
    for part in ("val", "test"):
        frames.setdefault(part, None)
        if frames[part] is not None and len(frames[part]) == 0:
            frames[part] = None
    return frames


class _Scaler:
    """Per-column fill value and affine map of the dense columns (JSON-serialisable)."""

    def __init__(self, method: str, stats: Mapping[str, Mapping[str, float]] | None = None):
        self.method = method
        self.stats = {k: dict(v) for k, v in (stats or {}).items()}

    def fit(self, df: "pd.DataFrame", columns: Sequence[str]) -> "_Scaler":
        for col in columns:
            values = df[col].astype("float64")
            fill = float(values.mean()) if values.notna().any() else 0.0
            values = values.fillna(fill)
            if self.method == "minmax":
                low, high = float(values.min()), float(values.max())
                shift, scale = low, (high - low) or 1.0
            elif self.method == "standard":
                shift, scale = float(values.mean()), float(values.std(ddof=0)) or 1.0
            else:
                shift, scale = 0.0, 1.0
            self.stats[col] = {"fill": fill, "shift": shift, "scale": scale}
        return self

    def transform(self, values: "pd.Series", column: str) -> np.ndarray:
        s = self.stats[column]
        out = (values.astype("float64").fillna(s["fill"]).to_numpy() - s["shift"]) / s["scale"]
        if self.method == "minmax":
            out = np.clip(out, 0.0, 1.0)  # unseen extremes stay in the range the model saw
        return out.astype(np.float32)


def _check_finite(df: "pd.DataFrame", col: str, where: str) -> None:
    """A dense column holds numbers (missing ones are filled by the scaling) and no infinities;
    the error names the column, the file and the first bad row."""
    import pandas as pd

    values = pd.to_numeric(df[col], errors="coerce")
    bad = values.isna() & df[col].notna()
    what = "a value that is not a number"
    if not bad.any():
        bad = np.isinf(values.to_numpy(dtype="float64"))
        what = "an infinite value"
    if bad.any():
        row = int(np.flatnonzero(np.asarray(bad))[0])
        value = df[col].iloc[row]
        shown = repr(value) if isinstance(value, str) else str(value)
        raise TypeError(f"dense column {col!r} in {where} holds {what} ({shown} at "
                        f"{source_of(df, row)}; {int(bad.sum())} rows in all): fix or drop those rows "
                        "(missing values are filled by the dense scaling)")


class Preprocessor:
    """Column roles + encoder + dense scaling.

    Args:
        sparse: ``{column: {"embed_dim", "vocab", "hash_buckets"}}`` (a ``vocab`` other than the
            column itself reads that column's ids and embedding table).
        dense: numeric columns.
        sequence: ``{column: {"vocab", "max_len", "pooling", "embed_dim"}}``.
        labels: label columns (none for retrieval data without labels).
        embed_dim / min_freq / dense_scaling / sequence_sep: defaults, as in the run config.
    """

    def __init__(self, sparse: Mapping[str, Mapping[str, Any]], dense: Sequence[str],
                 sequence: Mapping[str, Mapping[str, Any]], labels: Sequence[str], *, embed_dim: int = 16,
                 min_freq: int = 1, dense_scaling: str = "minmax", sequence_sep: str = ",",
                 scaler_stats: Mapping[str, Any] | None = None, encoder: CategoricalEncoder | None = None):
        self.sparse = {c: dict(v or {}) for c, v in sparse.items()}
        self.dense = list(dense)
        self.sequence = {c: dict(v or {}) for c, v in sequence.items()}
        self.labels = list(labels)
        self.embed_dim, self.min_freq = int(embed_dim), int(min_freq)
        self.dense_scaling, self.sequence_sep = dense_scaling, sequence_sep
        self.scaler = _Scaler(dense_scaling, scaler_stats)
        roles = list(self.sparse) + self.dense + list(self.sequence) + self.labels
        repeated = sorted({c for c in roles if roles.count(c) > 1})
        if repeated:
            raise ValueError(f"dataset: column {repeated[0]!r} has more than one role (sparse, dense, sequence, label)")
        for col, spec in {**self.sparse, **self.sequence}.items():
            source = spec.get("vocab")
            if source is not None and source != col and source not in self.sparse:
                raise ValueError(f"dataset: column {col!r} shares the vocabulary of {source!r}, "
                                 f"which is not a sparse column ({', '.join(self.sparse)})")
        self.encoder = encoder or self._new_encoder()

    @classmethod
    def from_config(cls, dataset: "DatasetConfig") -> "Preprocessor":
        return cls({c: s.model_dump(exclude_none=True) for c, s in dataset.sparse_specs.items()}, dataset.dense,
                   {c: s.model_dump(exclude_none=True) for c, s in dataset.sequence_specs.items()}, dataset.labels,
                   embed_dim=dataset.embed_dim, min_freq=dataset.min_freq, dense_scaling=dataset.dense_scaling,
                   sequence_sep=dataset.sequence_sep)

    def _source(self, col: str) -> str:
        spec = self.sparse.get(col) or self.sequence.get(col) or {}
        return spec.get("vocab") or col

    def _new_encoder(self) -> CategoricalEncoder:
        own = [c for c in self.sparse if self._source(c) == c]
        hashed = {c: int(s["hash_buckets"]) for c, s in self.sparse.items() if s.get("hash_buckets")}
        max_len = {c: int(s["max_len"]) for c, s in self.sequence.items() if s.get("max_len")}
        return CategoricalEncoder(own, self.min_freq, hash_buckets=hashed or None,
                                  sequences={c: self._source(c) for c in self.sequence}, max_len=max_len or None,
                                  sep=self.sequence_sep)

    @property
    def input_columns(self) -> list[str]:
        return list(self.sparse) + self.dense + list(self.sequence)

    def check_columns(self, df: "pd.DataFrame", where: str, labels: bool = True,
                      columns: Sequence[str] | None = None) -> None:
        roles = {**{c: "sparse" for c in self.sparse}, **{c: "dense" for c in self.dense},
                 **{c: "sequence" for c in self.sequence}, **({c: "label" for c in self.labels} if labels else {})}
        for col, role in roles.items():
            if columns is not None and col not in columns:
                continue
            if col not in df.columns:
                raise KeyError(f"column {col!r} (dataset.{role}) is not in {where}; it has "
                               f"{', '.join(map(str, list(df.columns)[:30]))}")

    # -- fitting and transforming ---------------------------------------------------------------
    def fit(self, df: "pd.DataFrame", where: str = "the training data") -> "Preprocessor":
        self.check_columns(df, where)
        for col in self.dense:
            _check_finite(df, col, where)
        self.encoder.fit(df)
        self.scaler.fit(df, self.dense)
        return self

    def transform(self, df: "pd.DataFrame", where: str = "the data",
                  columns: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """``{column: array}``: sparse ids ``[N]``, sequences ``[N, L]``, dense float32 ``[N]``.
        ``columns`` restricts it to some input columns (e.g. an item table for the item tower)."""
        self.check_columns(df, where, labels=False, columns=columns)
        keep = set(self.input_columns if columns is None else columns)
        x: dict[str, np.ndarray] = {}
        for col in self.sparse:
            if col in keep:
                x[col] = self.encoder.encode_column(df[col], self._source(col))
        for col in self.dense:
            if col not in keep:
                continue
            _check_finite(df, col, where)
            x[col] = self.scaler.transform(df[col], col)
        for col in self.sequence:
            if col in keep:
                x[col] = self.encoder.encode_sequence(df[col], col)
        return x

    def targets(self, df: "pd.DataFrame", where: str = "the data") -> np.ndarray | None:
        """Labels as float32 ``[N]`` (one label) or ``[N, T]``; None without label columns."""
        if not self.labels:
            return None
        missing = [c for c in self.labels if c not in df.columns]
        if missing:
            raise KeyError(f"label column {missing[0]!r} (dataset.label) is not in {where}")
        values = df[self.labels]
        if values.isna().any().any():
            col = values.columns[values.isna().any()].tolist()[0]
            raise ValueError(f"label column {col!r} in {where} has missing values")
        try:
            y = values.to_numpy(dtype=np.float32)
        except (TypeError, ValueError):
            raise TypeError(f"label columns {self.labels} in {where} must be numeric (0/1 or numbers)") from None
        return y[:, 0] if len(self.labels) == 1 else y

    # -- features -------------------------------------------------------------------------------
    def features(self) -> dict[str, Any]:
        """``{name: feature}`` in column order: sparse, sequence, dense."""
        sizes = self.encoder.vocab_sizes
        out: dict[str, Any] = {}
        for col, spec in self.sparse.items():
            source = self._source(col)
            dim = spec.get("embed_dim") or self.sparse[source].get("embed_dim") or self.embed_dim
            out[col] = SparseFeature(col, vocab_size=sizes[source], embed_dim=int(dim),
                                     shared_with=source if source != col else None)
        for col, spec in self.sequence.items():
            source = self._source(col)
            shared = source if source != col else None
            dim = spec.get("embed_dim") or (self.sparse.get(source, {}).get("embed_dim") if shared else None)
            out[col] = SequenceFeature(col, vocab_size=sizes[col], embed_dim=int(dim or self.embed_dim),
                                       pooling=spec.get("pooling", "mean"), shared_with=shared)
        for col in self.dense:
            out[col] = DenseFeature(col)
        return out

    def groups(self, extra: Mapping[str, Sequence[str]] | None = None) -> dict[str, list[str]]:
        """Built-in groups ``sparse``, ``dense``, ``sequence``, ``all`` plus the config's own."""
        groups = {"sparse": list(self.sparse), "dense": list(self.dense), "sequence": list(self.sequence),
                  "all": self.input_columns}
        for name, columns in (extra or {}).items():
            unknown = [c for c in columns if c not in self.input_columns]
            if unknown:
                raise ValueError(f"dataset.groups.{name}: {unknown[0]!r} is not a sparse, dense or sequence column")
            groups[name] = list(columns)
        return groups

    # -- files ----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"sparse": self.sparse, "dense": self.dense, "sequence": self.sequence, "labels": self.labels,
                "embed_dim": self.embed_dim, "min_freq": self.min_freq, "dense_scaling": self.dense_scaling,
                "sequence_sep": self.sequence_sep, "scaler": self.scaler.stats}

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        self.encoder.save(folder / "encoder.json")
        write_text_atomic(folder / "preprocess.json", json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, folder: str | Path) -> "Preprocessor":
        folder = Path(folder)
        for name in ("preprocess.json", "encoder.json"):
            if not (folder / name).is_file():
                raise FileNotFoundError(f"{folder} has no {name}; is it a trainhub run folder?")
        keys = ("sparse", "dense", "sequence", "labels", "embed_dim", "min_freq", "dense_scaling", "sequence_sep",
                "scaler")
        d = read_json(folder / "preprocess.json", keys=keys)
        encoder = CategoricalEncoder.load(folder / "encoder.json")
        pre = cls(d["sparse"], d["dense"], d["sequence"], d["labels"], embed_dim=d["embed_dim"],
                  min_freq=d["min_freq"], dense_scaling=d["dense_scaling"], sequence_sep=d["sequence_sep"],
                  scaler_stats=d["scaler"], encoder=encoder)
        for col in list(pre.sparse) + list(pre.sequence):
            if pre._source(col) not in encoder.columns:
                raise ValueError(f"{folder / 'encoder.json'} has no vocabulary for column {pre._source(col)!r}, "
                                 f"which {folder / 'preprocess.json'} names; the two files are from different runs "
                                 "or were edited: restore them from the run's copy or train again")
        for col in pre.dense:
            if col not in pre.scaler.stats:
                raise ValueError(f"{folder / 'preprocess.json'} has no scaling for dense column {col!r}; it is "
                                 "damaged or was edited")
        return pre
