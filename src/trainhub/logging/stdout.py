"""Metrics printed as one line per call, written through tqdm so progress bars stay intact."""

from __future__ import annotations

from typing import Any

__all__ = ["StdoutLogger"]


def _fmt(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


class StdoutLogger:
    """Print ``step N: key=value ...``. Per-step training losses are left to the progress bar
    unless ``log_steps=True``."""

    def __init__(self, log_steps: bool = False):
        self.log_steps = log_steps

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        from tqdm.auto import tqdm

        if not self.log_steps and all(k.startswith("train/step") for k in metrics):
            return
        metrics = dict(metrics)
        epoch = metrics.pop("epoch", None)
        where = f"epoch {int(epoch)} (step {step})" if epoch is not None else f"step {step}"
        tqdm.write(f"{where}: " + ", ".join(f"{k}={_fmt(v)}" for k, v in metrics.items()))

    def log_params(self, params: dict[str, Any]) -> None:
        from tqdm.auto import tqdm

        tqdm.write("params: " + ", ".join(f"{k}={_fmt(v)}" for k, v in params.items()))

    def close(self) -> None:
        pass
