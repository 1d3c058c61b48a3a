"""Callbacks: events reach the objects that define them, in order, and fit() fires them all."""

from __future__ import annotations

import torch
from torch import nn

from trainhub.engine import FitConfig, StepOutput, fit
from trainhub.engine.callbacks import fire


class Recorder:
    def __init__(self):
        self.events = []

    def on_fit_start(self, state):
        self.events.append("fit_start")

    def on_epoch_start(self, state):
        self.events.append("epoch_start")

    def on_train_batch_end(self, state, out):
        self.events.append("batch")

    def on_validation_end(self, state, metrics):
        metrics["extra"] = 1.0  # a callback may add metrics before anyone reads them
        self.events.append("validation")

    def on_epoch_end(self, state, logs):
        self.events.append(("epoch_end", logs["val/extra"]))

    def on_fit_end(self, state):
        self.events.append("fit_end")


class OnlyEnd:
    def __init__(self):
        self.calls = 0

    def on_fit_end(self, state):
        self.calls += 1


def test_fire_calls_the_event_on_objects_that_define_it():
    rec, end = Recorder(), OnlyEnd()
    fire([rec, end, object()], "on_fit_end", None)
    assert rec.events == ["fit_end"] and end.calls == 1


class MeanTask:
    def training_step(self, model, batch):
        return StepOutput(((model(batch) - 1.0) ** 2).mean(), batch_size=len(batch))

    def validation_step(self, model, batch):
        pass

    def compute_metrics(self):
        return {"score": 0.0}


def test_fit_fires_every_event_in_order():
    model = nn.Linear(1, 1)
    data = [torch.ones(2, 1), torch.ones(2, 1)]
    rec = Recorder()
    fit(model, MeanTask(), torch.optim.SGD(model.parameters(), lr=0.1), data, data,
        config=FitConfig(max_epochs=1, progress=False), callbacks=[rec])
    assert rec.events == ["fit_start", "epoch_start", "batch", "batch", "validation", ("epoch_end", 1.0), "fit_end"]
