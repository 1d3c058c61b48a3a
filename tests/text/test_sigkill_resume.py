"""The text Trainer, killed with SIGKILL in the middle of an epoch and resumed with
``training.resume``, ends with the weights and history of a run that was never killed (dropout,
temperature task sampling and length-grouped batches included)."""

from __future__ import annotations

import signal

import torch
import yaml

from tests.engine import kill_worker
from tests.trainers.test_sigkill_resume import kill_in_subprocess
from trainhub.engine import load_weights


def test_sigkill_mid_epoch_then_resume_equals_an_uninterrupted_run(make_config, tmp_path):
    cfg = make_config(n_train=24, num_epochs=2, task_sampling="temperature",
                      group_by_length=True, early_stopping_patience=5)
    cfg["model"]["dropout"] = 0.1
    config = tmp_path / "text.yaml"
    config.write_text(yaml.safe_dump(cfg))
    batches = 6  # 24 rows per task, batch 8: 3 + 3 per epoch
    signals = kill_in_subprocess(tmp_path, ["text"], kill_after=batches + 2)
    assert signals["text"] == signal.SIGKILL
    cut = tmp_path / "text"
    assert torch.load(cut / "last.ckpt", weights_only=True)["state"]["epoch"] == 1

    resumed = kill_worker.run("text", cut, resume=True, config=config)
    straight = kill_worker.run("text", tmp_path / "straight", config=config)
    assert resumed.fit_result.state.global_step == straight.fit_result.state.global_step == 2 * batches
    a, b = resumed.model.state_dict(), straight.model.state_dict()
    for name in b:
        assert torch.equal(a[name], b[name]), name
    timeless = [[{k: v for k, v in h.items() if not k.endswith("_per_s")} for h in r.fit_result.history]
                for r in (resumed, straight)]
    assert timeless[0] == timeless[1]  # every loss and metric; only the measured speed differs
    best = [load_weights(d / "best_model" / "model.safetensors") for d in (cut, tmp_path / "straight")]
    assert all(torch.equal(best[0][k], best[1][k]) for k in best[1])
