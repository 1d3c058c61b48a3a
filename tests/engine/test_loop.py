"""The loop on a tiny regression task: learning, best-weight restore, resume, accumulation, schedulers."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from trainhub.engine import Checkpointer, EarlyStopping, FitConfig, StepOutput, fit, train_epoch


class RegressionTask:
    def __init__(self, scripted=None):
        self.scripted = list(scripted) if scripted else None
        self.sse, self.n = 0.0, 0

    def training_step(self, model, batch):
        x, y = batch
        loss = F.mse_loss(model(x).squeeze(1), y)
        return StepOutput(loss, batch_size=len(y))

    def validation_step(self, model, batch):
        x, y = batch
        self.sse += float(((model(x).squeeze(1) - y) ** 2).sum())
        self.n += len(y)

    def compute_metrics(self):
        mse = self.sse / self.n
        self.sse, self.n = 0.0, 0
        metrics = {"mse": mse}
        if self.scripted:
            metrics["score"] = self.scripted.pop(0)
        return metrics


def data(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 0.5]) + 0.3
    return [(x[i:i + 16], y[i:i + 16]) for i in range(0, n, 16)]


def make(seed=0):
    torch.manual_seed(seed)
    model = nn.Linear(3, 1)
    return model, torch.optim.SGD(model.parameters(), lr=0.05)


def test_fit_lowers_the_loss():
    model, opt = make()
    result = fit(model, RegressionTask(), opt, data(), data(seed=1), config=FitConfig(max_epochs=20, progress=False))
    losses = [h["train/loss"] for h in result.history]
    assert losses[-1] < 0.1 * losses[0]
    assert result.history[-1]["val/mse"] < 0.05


def test_best_weights_are_restored_even_without_stopping():
    model, opt = make()
    snapshots = []

    class Snap:
        def on_epoch_end(self, state, logs):
            snapshots.append(copy.deepcopy(model.state_dict()))

    task = RegressionTask(scripted=[0.5, 0.9, 0.6, 0.7])
    stopper = EarlyStopping("score", "max", patience=10)
    result = fit(model, task, opt, data(), data(seed=1), config=FitConfig(max_epochs=4, progress=False),
                 stopper=stopper, callbacks=[Snap()])
    assert not result.stopped_early and result.best_epoch == 1
    assert torch.equal(model.weight, snapshots[1]["weight"])
    assert not torch.equal(model.weight, snapshots[3]["weight"])


def test_min_mode_stops_on_rising_loss(tmp_path):
    model, opt = make()
    task = RegressionTask(scripted=[3.0, 1.0, 2.0, 2.5, 0.1])
    stopper = EarlyStopping("score", "min", patience=2)
    ck = Checkpointer(tmp_path)
    result = fit(model, task, opt, data(), data(seed=1), config=FitConfig(max_epochs=5, progress=False),
                 stopper=stopper, checkpointer=ck)
    assert result.stopped_early and result.state.epoch == 4 and result.best_epoch == 1
    assert ck.has_best() and ck.last_path.is_file()


def test_resume_matches_an_uninterrupted_run(tmp_path):
    model_a, opt_a = make()
    fit(model_a, RegressionTask(), opt_a, data(), config=FitConfig(max_epochs=4, progress=False))

    model_b, opt_b = make()
    ck = Checkpointer(tmp_path)
    fit(model_b, RegressionTask(), opt_b, data(), config=FitConfig(max_epochs=2, progress=False), checkpointer=ck)
    model_c, opt_c = make(seed=123)  # different init: everything must come from the checkpoint
    result = fit(model_c, RegressionTask(), opt_c, data(), checkpointer=ck,
                 config=FitConfig(max_epochs=4, resume=True, progress=False))
    assert result.state.epoch == 4 and len(result.history) == 4
    assert torch.allclose(model_a.weight, model_c.weight, atol=1e-6)


def test_resume_with_no_epochs_left_says_so(tmp_path, caplog):
    model, opt = make()
    ck = Checkpointer(tmp_path)
    fit(model, RegressionTask(), opt, data(), config=FitConfig(max_epochs=3, progress=False), checkpointer=ck)
    with caplog.at_level("WARNING"):
        result = fit(model, RegressionTask(), opt, data(), checkpointer=ck,
                     config=FitConfig(max_epochs=2, resume=True, progress=False))
    assert result.state.epoch == 3
    assert "already trained 3 epochs and this run asks for 2" in caplog.text


def test_gradient_accumulation_equals_a_bigger_batch():
    model_a, opt_a = make()
    full = [torch.cat([b[0] for b in data()]), torch.cat([b[1] for b in data()])]
    train_epoch(model_a, RegressionTask(), opt_a, [tuple(full)], config=FitConfig(progress=False))
    model_b, opt_b = make()
    train_epoch(model_b, RegressionTask(), opt_b, data(), config=FitConfig(grad_accum_steps=4, progress=False))
    assert torch.allclose(model_a.weight, model_b.weight, atol=1e-6)


@pytest.mark.parametrize("make_scheduler, interval", [
    (lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=1, gamma=0.5), "epoch"),
    (lambda o: torch.optim.lr_scheduler.ExponentialLR(o, gamma=0.5), "epoch"),
    (lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=3), "epoch"),
    (lambda o: torch.optim.lr_scheduler.ReduceLROnPlateau(o, mode="min", patience=0, factor=0.5), "epoch"),
    (lambda o: torch.optim.lr_scheduler.LinearLR(o, start_factor=1.0, end_factor=0.1, total_iters=12), "step"),
])
def test_any_scheduler_works(make_scheduler, interval):
    model, opt = make()
    scheduler = make_scheduler(opt)
    task = RegressionTask(scripted=[1.0, 1.0, 1.0])
    result = fit(model, task, opt, data(), data(seed=1), scheduler=scheduler,
                 stopper=EarlyStopping("score", "min", patience=5),
                 config=FitConfig(max_epochs=3, scheduler_interval=interval, progress=False))
    assert opt.param_groups[0]["lr"] < 0.05
    assert len(result.history) == 3


def test_nan_loss_is_reported():
    model, opt = make()
    bad = [(torch.full((4, 3), float("nan")), torch.zeros(4))]
    with pytest.raises(FloatingPointError, match="epoch 0, batch 0"):
        train_epoch(model, RegressionTask(), opt, bad, config=FitConfig(progress=False))


def test_step_based_validation_stops_mid_epoch():
    model, opt = make()
    evals = []

    class Count:
        def on_validation_end(self, state, metrics):
            evals.append(state.global_step)

    task = RegressionTask(scripted=[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    result = fit(model, task, opt, data(), data(seed=1), stopper=EarlyStopping("score", "min", patience=2),
                 callbacks=[Count()], config=FitConfig(max_epochs=5, eval_every_n_steps=2, progress=False))
    # 4 steps per epoch, validation every 2 steps: best at step 2, stop after step 6 (2 evaluations later)
    assert evals == [2, 4, 6]
    assert result.stopped_early and result.state.epoch == 2 and result.state.global_step == 6


def test_val_prefixed_monitor_is_accepted():
    s = EarlyStopping("val/mse", "min", patience=1)
    assert s.update({"mse": 1.0}, 0)


def test_bf16_autocast_trains_on_cpu():
    model, opt = make()
    config = FitConfig(max_epochs=10, precision="bf16", progress=False)
    result = fit(model, RegressionTask(), opt, data(), config=config)
    losses = [h["train/loss"] for h in result.history]
    assert losses[-1] < 0.2 * losses[0]
    assert model.weight.dtype == torch.float32  # autocast leaves the stored weights in float32


def test_float16_needs_cuda():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    model, opt = make()
    with pytest.raises(ValueError, match="needs a CUDA device"):
        train_epoch(model, RegressionTask(), opt, data(), config=FitConfig(precision="16", progress=False))
    with pytest.raises(ValueError, match="precision must be"):
        FitConfig(precision="fp8")


def test_plateau_scheduler_must_follow_the_stopping_direction():
    model, opt = make()
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min")
    with pytest.raises(ValueError, match="pass scheduler mode='max'"):
        fit(model, RegressionTask(scripted=[1.0]), opt, data(), data(seed=1), scheduler=scheduler,
            stopper=EarlyStopping("score", "max"), config=FitConfig(max_epochs=1, progress=False))


def test_resuming_a_run_that_stopped_early_trains_no_further(tmp_path):
    model, opt = make()
    ck = Checkpointer(tmp_path)
    first = fit(model, RegressionTask(scripted=[3.0, 4.0, 5.0]), opt, data(), data(seed=1), checkpointer=ck,
                stopper=EarlyStopping("score", "min", patience=2), config=FitConfig(max_epochs=6, progress=False))
    assert first.stopped_early and first.state.epoch == 3
    model2, opt2 = make(seed=9)
    again = fit(model2, RegressionTask(scripted=[0.0]), opt2, data(), data(seed=1), checkpointer=ck,
                stopper=EarlyStopping("score", "min", patience=2),
                config=FitConfig(max_epochs=6, resume=True, progress=False))
    assert again.stopped_early and again.state.epoch == 3 and again.best_epoch == 0
    assert torch.equal(model2.weight, model.weight)  # best weights restored, nothing trained


def test_gradient_scaler_lives_for_the_whole_run_and_resumes(tmp_path, monkeypatch):
    # float16 scaling needs CUDA; a CPU GradScaler stands in to follow its state through last.ckpt.
    from trainhub.engine import loop

    made = []

    class CPUScaled(loop._Precision):
        def __init__(self, precision, device):
            super().__init__("32", device)
            self.scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=2)
            made.append(self.scaler)

    monkeypatch.setattr(loop, "_Precision", CPUScaled)
    model, opt = make()
    ck = Checkpointer(tmp_path)
    fit(model, RegressionTask(), opt, data(), config=FitConfig(max_epochs=2, progress=False), checkpointer=ck)
    assert len(made) == 1  # one scaler for both epochs: its scale grew across them (8 steps, x2 per 2)
    saved = torch.load(tmp_path / "last.ckpt", weights_only=True)["scaler"]
    assert saved["scale"] == 1024.0 * 2 ** 4 and saved["_growth_tracker"] == 0
    model, opt = make(seed=5)
    fit(model, RegressionTask(), opt, data(), checkpointer=ck, config=FitConfig(max_epochs=2, resume=True,
                                                                                  progress=False))
    assert made[-1].get_scale() == 1024.0 * 2 ** 4  # restored, not the initial 1024


def test_rng_state_covers_every_stream():
    import random

    import numpy as np

    from trainhub.engine.resume import rng_state, set_rng_state

    state = rng_state()
    draws = (random.random(), float(np.random.rand()), float(torch.rand(())))
    set_rng_state(state)
    assert (random.random(), float(np.random.rand()), float(torch.rand(()))) == draws


def test_last_step_gradients_stay_readable_after_an_epoch():
    """Gradients are cleared when a step starts, so after training p.grad holds the last batch's."""
    model, opt = make()
    batches = data()
    train_epoch(model, RegressionTask(), opt, batches, config=FitConfig(progress=False))
    x, y = batches[-1]
    reference = copy.deepcopy(model)
    with torch.no_grad():  # undo the last SGD step to get the weights that batch saw
        for p, q in zip(reference.parameters(), model.parameters()):
            p.copy_(q + 0.05 * q.grad)
    F.mse_loss(reference(x).squeeze(1), y).backward()
    for p, q in zip(model.parameters(), reference.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-6)


def test_monitor_may_name_a_metric_a_callback_adds():
    from trainhub.engine.loop import check_monitor

    class Named(RegressionTask):
        def metric_names(self):
            return ["mse"]

    class AddsRecall:
        def metric_names(self):
            return ["recall_at_5"]

        def on_validation_end(self, state, metrics):
            metrics["recall_at_5"] = 0.5

    check_monitor(Named(), EarlyStopping("recall_at_5", "max"), [AddsRecall()])
    with pytest.raises(ValueError, match=r"validation produces \['mse', 'recall_at_5'\]"):
        check_monitor(Named(), EarlyStopping("recall_at_50", "max"), [AddsRecall()])

    class AddsUnnamed:
        def on_validation_end(self, state, metrics):
            metrics["anything"] = 1.0

    check_monitor(Named(), EarlyStopping("anything", "max"), [AddsUnnamed()])  # unknowable: not checked
