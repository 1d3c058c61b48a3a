"""curves.png: loss and validation panels on the optimizer-step axis; a missing matplotlib costs the
picture, never the run."""

from __future__ import annotations

import logging

from trainhub.runs import plots
from trainhub.runs.plots import MetricRecorder, plot_curves


def _recorder() -> MetricRecorder:
    rec = MetricRecorder()
    for step in range(10, 100, 10):
        rec.log_metrics({"train/step_loss": 1.0 / step}, step)
    for epoch, step in enumerate((30, 60, 90), start=1):
        rec.log_metrics({"train/loss": 0.5 / epoch, "val/recall_at_10": 0.1 * epoch, "epoch": epoch}, step)
    rec.log_metrics({"test/recall_at_10": 0.25}, 90)
    return rec


def test_curves_are_a_png_with_both_panels(tmp_path):
    rec = _recorder()
    assert rec.series("val/recall_at_10") == ([30, 60, 90], [0.1, 0.2, 0.30000000000000004])
    path = plot_curves(rec, tmp_path / "curves.png", title="t")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_missing_matplotlib_skips_the_plot_with_a_warning(tmp_path, monkeypatch, caplog):
    def missing():
        raise ImportError("plots need matplotlib: pip install 'trainhub[plot]'")

    monkeypatch.setattr(plots, "import_matplotlib", missing)
    with caplog.at_level(logging.WARNING):
        assert plot_curves(_recorder(), tmp_path / "curves.png") is None
    assert "trainhub[plot]" in caplog.text and not (tmp_path / "curves.png").exists()
