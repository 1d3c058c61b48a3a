"""Every recommendation trainer, killed with SIGKILL in the middle of an epoch and resumed, ends
with the same weights, history, best checkpoint and metrics.csv as a run that was never killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.engine import kill_worker
from trainhub.engine import load_weights

REPO = Path(__file__).resolve().parents[2]
KILL_AFTER = 7  # epoch 1 (of 3, 4 batches each), batch 2: one epoch-end checkpoint exists


def kill_in_subprocess(root: Path, scenarios: list[str], kill_after: int = KILL_AFTER) -> dict[str, int]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "src"), str(REPO)]))
    out = subprocess.run([sys.executable, "-m", "tests.engine.kill_worker", str(kill_after), str(root), *scenarios],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def killed(tmp_path_factory):
    root = tmp_path_factory.mktemp("killed")
    return root, kill_in_subprocess(root, ["ctr", "match", "mtl"])


def assert_same_run(resumed, straight, resumed_dir: Path, straight_dir: Path) -> None:
    a, b = resumed.model.state_dict(), straight.model.state_dict()
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert resumed.fit_result.history == straight.fit_result.history
    assert resumed.fit_result.best_epoch == straight.fit_result.best_epoch
    best_a, best_b = load_weights(resumed_dir / "best.safetensors"), load_weights(straight_dir / "best.safetensors")
    assert all(torch.equal(best_a[k], best_b[k]) for k in best_b)


@pytest.mark.parametrize("scenario", ["ctr", "match", "mtl"])
def test_sigkill_mid_epoch_then_resume_equals_an_uninterrupted_run(killed, tmp_path, scenario):
    root, signals = killed
    cut = root / scenario
    assert signals[scenario] == signal.SIGKILL
    state = torch.load(cut / "last.ckpt", weights_only=True)
    assert state["state"]["epoch"] == 1  # the kill came before epoch 1's checkpoint
    for key in ("optimizer", "rng", "rng_per_rank", "loader_per_rank", "stopper"):
        assert key in state, key
    resumed = kill_worker.run(scenario, cut, resume=True)
    straight = kill_worker.run(scenario, tmp_path / "straight")
    assert resumed.fit_result.state.epoch == kill_worker.N_EPOCH
    assert_same_run(resumed, straight, cut, tmp_path / "straight")
    model_file = resumed.model_filename
    saved, expected = (torch.load(d / model_file, weights_only=True) for d in (cut, tmp_path / "straight"))
    assert all(torch.equal(saved[k], expected[k]) for k in expected)
    if scenario == "ctr":  # the killed epoch's step rows were cut from metrics.csv on resume
        rows = (cut / "logs" / "metrics.csv").read_text()
        assert rows == (tmp_path / "straight" / "logs" / "metrics.csv").read_text()
        assert rows.count("train/step_loss") == kill_worker.N_EPOCH * 2
    if scenario == "mtl":  # the loss weighting's own parameters came back too
        assert "task" in state and resumed.weighting.state_dict().keys() == straight.weighting.state_dict().keys()


def test_row_wise_optimizer_state_is_in_last_ckpt(killed):
    root, _ = killed
    state = torch.load(root / "ctr" / "last.ckpt", weights_only=True)
    rowwise = state["optimizer"]["rowwise"]["state"]
    assert rowwise and all("step" in s for s in rowwise.values())
