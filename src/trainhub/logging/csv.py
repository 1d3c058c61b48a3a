"""Metrics appended to a CSV file in long form (``step,name,value``), readable with pandas."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

from trainhub.files import write_text_atomic

__all__ = ["CSVLogger"]


class CSVLogger:
    """Append metrics to ``save_dir/metrics.csv``; params go to ``save_dir/params.json``.

    ``state_dict()`` is the file's length; a resumed run's ``load_state_dict`` cuts the file back
    to it, dropping the rows a killed run wrote after its last checkpoint.
    """

    def __init__(self, save_dir: str | Path):
        self.save_dir = Path(save_dir)
        self.save_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.save_dir / "metrics.csv"
        self._params: dict[str, Any] = {}
        new = not self.path.exists()
        self._fh = open(self.path, "a", newline="", encoding="utf-8")
        self._writer = csv.writer(self._fh)
        if new:
            self._writer.writerow(["step", "name", "value"])

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        for name, value in metrics.items():
            self._writer.writerow([step, name, float(value)])
        self._fh.flush()

    def log_params(self, params: dict[str, Any]) -> None:
        # Several callers may log params (a run, then its trainer): the file keeps them all.
        self._params.update(params)
        write_text_atomic(self.save_dir / "params.json", json.dumps(self._params, indent=2, default=str))

    def state_dict(self) -> dict[str, int]:
        self._fh.flush()
        return {"csv_bytes": self.path.stat().st_size}

    def load_state_dict(self, state: dict[str, int]) -> None:
        size = int(state.get("csv_bytes", -1))
        if 0 <= size < self.path.stat().st_size:
            self._fh.flush()
            os.truncate(self.path, size)  # append mode: the next row lands at the new end

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()
