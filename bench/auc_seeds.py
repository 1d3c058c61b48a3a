"""Validation AUC of the DeepFM case over several seeds, trainhub against Torch-RecHub 0.9.0.

    python bench/auc_seeds.py [--seeds 6] [--jobs 2]

Runs ``speed_case.py --case deepfm_3ep`` (three epochs, AUC after each) for seeds ``0..N-1`` with
both libraries, each run in its own process with one torch thread (``--jobs`` at a time), and
prints the per-seed AUC after epochs 1 and 3 and the mean difference. One seed cannot resolve a
difference of 0.002: the libraries' shuffles, dropout masks and initial draws differ, which moves
the epoch-3 AUC by a few thousandths either way. Writes ``bench/results/auc_seeds.json``.
Torch-RecHub comes from ``TORCH_RECHUB_PYTHON`` or ``bench/.rechub-venv`` (``make bench`` makes it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bench.run import peer_python  # noqa: E402


def one_run(python: str, lib: str, seed: int) -> dict:
    env = dict(os.environ, BENCH_THREADS="1", PYTHONPATH=str(HERE.parent))
    cmd = [python, str(HERE / "speed_case.py"), "--lib", lib, "--case", "deepfm_3ep", "--seed", str(seed)]
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{lib} seed {seed} failed (exit {proc.returncode}): {' '.join(cmd)}")
    return json.loads(proc.stdout.strip().splitlines()[-1])["quality"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    peer = peer_python()
    if peer is None:
        print("no Torch-RecHub: run `make bench` first (it makes bench/.rechub-venv) or set TORCH_RECHUB_PYTHON",
              file=sys.stderr)
        return 2
    runs = [(lib, python, seed) for seed in range(args.seeds)
            for lib, python in (("trainhub", sys.executable), ("torch_rechub", peer))]
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda r: one_run(r[1], r[0], r[2]), runs))
    by = {(lib, seed): q for (lib, _, seed), q in zip(runs, results)}
    lines = ["| seed | trainhub epoch 1 | Torch-RecHub epoch 1 | trainhub epoch 3 | Torch-RecHub epoch 3 |",
             "|---|---|---|---|---|"]
    diffs = {1: [], 3: []}
    for seed in range(args.seeds):
        ours, theirs = by[("trainhub", seed)], by[("torch_rechub", seed)]
        for e in diffs:
            diffs[e].append(ours[f"auc_epoch{e}"] - theirs[f"auc_epoch{e}"])
        lines.append(f"| {seed} | {ours['auc_epoch1']:.4f} | {theirs['auc_epoch1']:.4f} | "
                     f"{ours['auc_epoch3']:.4f} | {theirs['auc_epoch3']:.4f} |")
    mean = {e: sum(d) / len(d) for e, d in diffs.items()}
    lines.append(f"\nmean trainhub - Torch-RecHub: epoch 1 {mean[1]:+.4f}, epoch 3 {mean[3]:+.4f} "
                 f"({args.seeds} seeds, one torch thread per run)")
    text = "\n".join(lines)
    print(text)
    out = HERE / "results" / "auc_seeds.json"
    out.write_text(json.dumps({"runs": {f"{lib}/{seed}": q for (lib, seed), q in by.items()},
                               "mean_difference": mean, "markdown": text}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
