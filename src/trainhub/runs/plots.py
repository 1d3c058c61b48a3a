"""Training curves as a PNG (extra: ``plot``, i.e. matplotlib, imported only here).

Left panel: the running training loss (every few optimizer steps), the epoch-mean training loss
and the validation loss when the task reports one. Right panel: the validation metrics (AUC,
Recall@K...). Test metrics of the kept (best) weights are stars at their step. Both panels share the
optimizer-step axis, as the logs do.
"""

from __future__ import annotations

import logging
from pathlib import Path

from trainhub.files import atomic_write

__all__ = ["MetricRecorder", "plot_curves", "import_matplotlib"]

log = logging.getLogger(__name__)

_LOSS_NAMES = ("loss", "logloss", "mse")


def import_matplotlib():
    try:
        import matplotlib
    except ImportError as err:
        raise ImportError("plots need matplotlib: pip install 'trainhub[plot]'") from err
    return matplotlib


class MetricRecorder:
    """A logger that keeps every ``(step, name, value)`` in memory (for the plot and run.json)."""

    def __init__(self) -> None:
        self.records: list[tuple[int, str, float]] = []

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.records.extend((int(step), k, float(v)) for k, v in metrics.items())

    def state_dict(self) -> dict[str, list]:
        """The records so far: a resumed run's curves start where the killed run's checkpoint was."""
        return {"records": [list(r) for r in self.records]}

    def load_state_dict(self, state: dict[str, list]) -> None:
        self.records = [(int(s), str(n), float(v)) for s, n, v in state.get("records", [])]

    def series(self, name: str) -> tuple[list[int], list[float]]:
        points = [(s, v) for s, n, v in self.records if n == name]
        return [p[0] for p in points], [p[1] for p in points]

    @property
    def names(self) -> list[str]:
        return list(dict.fromkeys(n for _, n, _ in self.records))


def _is_loss(name: str) -> bool:
    leaf = name.split("/", 1)[-1]
    return leaf in _LOSS_NAMES or leaf.endswith("_loss")


def plot_curves(recorder: MetricRecorder, path: str | Path, title: str = "") -> Path | None:
    """Write the curves to ``path`` (PNG); returns None (and logs why) when there is nothing to
    plot or matplotlib is missing, so a run never fails over its picture."""
    try:
        import_matplotlib()
    except ImportError as err:
        log.warning("%s; no curves.png written", err)
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = recorder.names
    loss_names = [n for n in names if n.startswith(("train/", "val/")) and _is_loss(n) and n != "train/step_loss"]
    metric_names = [n for n in names if n.startswith("val/") and not _is_loss(n)]
    if not names:
        return None
    fig = Figure(figsize=(11, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax_loss, ax_metric = fig.subplots(1, 2)
    colors: dict[str, str] = {}  # a test star takes the colour of its validation curve
    steps, values = recorder.series("train/step_loss")
    if steps:
        ax_loss.plot(steps, values, color="0.7", linewidth=1, label="train loss (running)")
    for name in loss_names:
        xs, ys = recorder.series(name)
        colors[name] = ax_loss.plot(xs, ys, marker="o", label=name)[0].get_color()
    ax_loss.set_xlabel("optimizer step")
    ax_loss.set_ylabel("loss")
    ax_loss.set_title("loss")
    for name in metric_names:
        xs, ys = recorder.series(name)
        colors[name] = ax_metric.plot(xs, ys, marker="o", label=name)[0].get_color()
    for name in (n for n in names if n.startswith("test/")):  # the kept weights on the test rows
        xs, ys = recorder.series(name)
        ax = ax_loss if _is_loss(name) else ax_metric
        color = colors.get("val/" + name.removeprefix("test/"), "black")
        ax.plot(xs, ys, linestyle="none", marker="*", markersize=13, color=color, markeredgecolor="black",
                label=name)
    ax_metric.set_xlabel("optimizer step")
    ax_metric.set_title("validation metrics" if metric_names else "no validation data")
    for ax in (ax_loss, ax_metric):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
