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
        self._writer_cls = SummaryWriter
        self.log_dir = str(log_dir)
        self._earlier = sorted(Path(log_dir).glob("events.out.tfevents.*"))  # files of earlier runs
        self.writer = SummaryWriter(log_dir=self.log_dir)
        self._last_step = -1

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        for name, value in metrics.items():
            self.writer.add_scalar(name, float(value), step)
        self._last_step = max(self._last_step, int(step))

    def stale_files(self) -> list[Path]:
        """Event files that were in ``log_dir`` before this logger opened (an earlier run's)."""
        return [p for p in self._earlier if p.exists()]

    def state_dict(self) -> dict[str, int]:
        return {"tensorboard_step": self._last_step}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Hide the events a killed run logged after its last checkpoint (TensorBoard's purge_step)."""
        step = int(state.get("tensorboard_step", -1))
        if self.writer is not None and step >= 0:
            self.writer.close()
            self.writer = self._writer_cls(log_dir=self.log_dir, purge_step=step + 1)
            self._last_step = step

    def log_params(self, params: dict[str, Any]) -> None:
        table = "\n".join(f"| {k} | {v} |" for k, v in params.items())
        self.writer.add_text("params", "| param | value |\n|---|---|\n" + table, 0)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
