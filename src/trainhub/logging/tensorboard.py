"""TensorBoard event files via ``torch.utils.tensorboard`` (extra: ``tensorboard``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["TensorBoardLogger"]


class TensorBoardLogger:
    """Scalars to ``log_dir``; open with ``tensorboard --logdir <log_dir>``."""

    def __init__(self, log_dir: str | Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as err:  # torch raises ImportError when the tensorboard package is absent
            raise ImportError(
                "TensorBoard logging needs the 'tensorboard' package: pip install 'trainhub[tensorboard]'"
            ) from err
        self.log_dir = str(log_dir)
        self.writer = SummaryWriter(log_dir=self.log_dir)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        for name, value in metrics.items():
            self.writer.add_scalar(name, float(value), step)

    def log_params(self, params: dict[str, Any]) -> None:
        table = "\n".join(f"| {k} | {v} |" for k, v in params.items())
        self.writer.add_text("params", "| param | value |\n|---|---|\n" + table, 0)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
