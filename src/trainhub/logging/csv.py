"""Metrics appended to a CSV file in long form (``step,name,value``), readable with pandas."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from trainhub.engine.checkpoint import write_text_atomic

__all__ = ["CSVLogger"]


class CSVLogger:
    """Append metrics to ``save_dir/metrics.csv``; params go to ``save_dir/params.json``."""

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

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()
