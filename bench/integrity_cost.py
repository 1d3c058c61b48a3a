"""What recording and verifying checksums costs a one-epoch DeepFM fit (the ``deepfm`` speed case).

    python bench/integrity_cost.py [--scale 1.0] [--repeats 3]

Every weight and checkpoint file a run writes gets its SHA-256 recorded (``integrity.json``), and
every load verifies it. This runs the ``deepfm`` case of ``bench/speed_case.py`` (fit, then a
reload of ``last.ckpt`` and ``model.pth`` as a resume and a user make) with a timer around the hashing, and
reports the hashing time as a share of the fit. Results: ``bench/results/integrity.json`` and the
table between the ``integrity`` markers of ``docs/failures.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))


def run_once(scale: float, seed: int) -> dict:
    import speed_case

    import trainhub.integrity as integrity
    from trainhub.engine.checkpoint import load_state, load_weights

    spent = {"seconds": 0.0, "bytes": 0, "calls": 0}
    digest = integrity.file_digest

    def timed_digest(path):
        start = time.perf_counter()
        out = digest(path)
        spent["seconds"] += time.perf_counter() - start
        spent["bytes"] += out["bytes"]
        spent["calls"] += 1
        return out

    integrity.file_digest = timed_digest
    try:
        lib = speed_case.load_lib("trainhub")
        with tempfile.TemporaryDirectory(prefix="trainhub_integrity_") as out:
            stdout, sys.stdout = sys.stdout, sys.stderr
            try:
                result = speed_case.CASES["deepfm"](lib, scale, seed, out)
                for name in ("last.ckpt", "model.pth"):  # the reads a resume and a reload make
                    load_state(Path(out) / name)
                if (Path(out) / "best.safetensors").is_file():
                    load_weights(Path(out) / "best.safetensors")
            finally:
                sys.stdout = stdout
    finally:
        integrity.file_digest = digest
    return {"fit_s": result["fit_s"], "hash_s": spent["seconds"], "hashed_mb": spent["bytes"] / 2**20,
            "files_hashed": spent["calls"], "share": spent["seconds"] / result["fit_s"]}


def markdown(summary: dict) -> str:
    return "\n".join([
        f"Measured by `bench/integrity_cost.py` ({summary['date']}, {summary['machine']}, load average "
        f"{summary['load_average_start']:.2f} at start, median of {summary['repeats']} runs, scale {summary['scale']}; "
        "the hashing time is what matters, the share grows on an idle machine whose fit is shorter):",
        "",
        "| case | fit s | files hashed (write + read) | MB hashed | hashing s | share of the fit |",
        "|---|---|---|---|---|---|",
        f"| deepfm, 1 epoch | {summary['fit_s']:.2f} | {summary['files_hashed']} | {summary['hashed_mb']:.0f} | "
        f"{summary['hash_s']:.3f} | {100 * summary['share']:.2f}% |",
    ])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=float(os.environ.get("BENCH_SCALE", "1.0")))
    parser.add_argument("--repeats", type=int, default=int(os.environ.get("BENCH_REPEATS", "3")))
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    load_start = os.getloadavg()[0]
    runs = [run_once(args.scale, seed) for seed in range(args.repeats)]
    summary = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    summary.update({"repeats": args.repeats, "scale": args.scale, "runs": runs, "load_average_start": load_start,
                    "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                    "machine": f"{os.cpu_count()} cores, {platform.machine()}, torch {torch.__version__}"})
    print(json.dumps({k: v for k, v in summary.items() if k != "runs"}, indent=1))
    if args.scale == 1.0:
        (ROOT / "bench" / "results" / "integrity.json").write_text(json.dumps(summary, indent=1) + "\n")
        doc = ROOT / "docs" / "failures.md"
        text = doc.read_text(encoding="utf-8")
        start, end = "<!-- integrity:start -->", "<!-- integrity:end -->"
        if start in text and end in text:
            head, rest = text.split(start, 1)
            doc.write_text(head + start + "\n" + markdown(summary) + "\n" + end + rest.split(end, 1)[1],
                           encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
