"""The text Trainer under torchrun (2 CPU processes, gloo) against one process."""

from __future__ import annotations

import pytest
import yaml

from tests.engine import ddp_cases as cases


def test_text_trainer_global_metrics_equal_one_process(make_config, tmp_path):
    from trainhub.engine import load_weights
    from trainhub.text import Trainer, load_experiment_config

    raw = make_config(num_epochs=2, metric_for_best_model="eval_overall_f1", early_stopping_patience=2)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    out = tmp_path / "ddp"
    proc, _ = cases.launch("text", out, str(path), timeout=150)
    assert proc.returncode == 0, proc.stderr[-4000:]
    r0, r1 = cases.load_results(out)
    assert r0["evaluate"] == r1["evaluate"] and r0["history"] == r1["history"]
    assert r0["num_train_batches"] == r1["num_train_batches"] == {"Sentiment": 3, "SwahiliNER": 3}
    assert r1["written"] == [] and r0["written"]  # configs, best model, last.ckpt: rank 0 only

    single = Trainer.from_config(load_experiment_config(path))
    try:
        load_weights(out / "final" / "model.safetensors", single.model)
        expected = single.evaluate()
    finally:
        single.close()
    assert r0["evaluate"] == pytest.approx(expected, abs=1e-6)
    best = r0["history"][r0["best_epoch"]]
    assert best["val/eval_overall_f1"] == pytest.approx(expected["eval_overall_f1"], abs=1e-6)
