"""``make bench``: run the benchmarks and write bench/results/*.json and a markdown table.

Peers are run when a Python with them is available: set ``TORCH_RECHUB_PYTHON`` to an
interpreter that has ``torch-rechub==0.9.0`` installed (e.g. a separate venv made with
``python3 -m venv /tmp/rechub && /tmp/rechub/bin/pip install torch==2.13.0 torch-rechub==0.9.0``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def run_ctr_speed(python: str, lib: str, rows: int) -> dict | None:
    cmd = [python, str(HERE / "ctr_speed.py"), "--lib", lib, "--rows", str(rows)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"[bench] {lib} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def median_run(python: str, lib: str, rows: int, repeats: int) -> dict | None:
    """Median (by fit time) of several runs: one run is at the mercy of whatever else the machine does."""
    runs = [r for r in (run_ctr_speed(python, lib, rows) for _ in range(repeats)) if r]
    if not runs:
        return None
    runs.sort(key=lambda r: r["fit_s"])
    best = dict(runs[len(runs) // 2])
    best["fit_s_all"] = [r["fit_s"] for r in runs]
    return best


def main() -> None:
    rows = int(os.environ.get("BENCH_ROWS", "200000"))
    repeats = int(os.environ.get("BENCH_REPEATS", "3"))
    RESULTS.mkdir(exist_ok=True)
    runners = [(sys.executable, "trainhub")]
    peer = os.environ.get("TORCH_RECHUB_PYTHON") or ("/tmp/rechub-venv/bin/python"
                                                     if Path("/tmp/rechub-venv/bin/python").exists() else None)
    if peer:
        runners.append((peer, "torch_rechub"))
    else:
        print("[bench] Torch-RecHub not found: set TORCH_RECHUB_PYTHON to compare against it")
    results = [r for r in (median_run(py, lib, rows, repeats) for py, lib in runners) if r]
    (RESULTS / "ctr_speed.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        f"DeepFM, one epoch on {rows:,} synthetic Criteo-like rows (26 sparse + 13 dense), batch 1024, 2 CPU threads; "
        f"median of {repeats} runs (all fit times listed).",
        "",
        "| library | fit seconds (median) | all runs | train rows/s | validation AUC | peak RSS (MB) |",
        "|---|---|---|---|---|---|",
    ]
    lines += [f"| {r['lib']} | {r['fit_s']} | {r['fit_s_all']} | {r['train_rows_per_s']:,} | {r['val_auc']} "
              f"| {r['peak_rss_mb']} |" for r in results]
    table = "\n".join(lines) + "\n"
    (RESULTS / "ctr_speed.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
