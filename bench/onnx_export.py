"""Export every registered model (and both towers of each matching model) to ONNX with each
PyTorch exporter, run the graphs in onnxruntime, and compare them with PyTorch.

    PYTHONPATH=src .venv/bin/python bench/onnx_export.py [--exporters torchscript,dynamo] [MODEL ...]
                                                         [--out bench/results/onnx_export.json]

Each model is built from its registry example (toy sizes), exported from a 5-row batch with a
dynamic batch axis, and run on the 8-row toy batch. The difference is the largest absolute
difference over all outputs; the scale is the largest absolute PyTorch output (-inf entries, the
masked candidates of YoutubeSBC, must be -inf in both). Prints a markdown table, writes JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from trainhub.export import ExportError, ONNXExporter, run_onnx  # noqa: E402
from trainhub.models import get_model_entry, list_models  # noqa: E402

EXPORTERS = {"torchscript": False, "dynamo": True}


def reference(model, batch, mode) -> list[np.ndarray]:
    previous = getattr(model, "mode", None)
    if hasattr(model, "mode"):
        model.mode = mode
    try:
        with torch.no_grad():
            out = model(batch)
    finally:
        if hasattr(model, "mode"):
            model.mode = previous
    outs = out if isinstance(out, (tuple, list)) else (out,)
    return [o.numpy() for o in outs if o.dim() > 0]


def compare(got: list[np.ndarray], want: list[np.ndarray]) -> tuple[float, float]:
    diff, scale = 0.0, 0.0
    for g, w in zip(got, want):
        finite = np.isfinite(w)
        if not np.array_equal(np.isfinite(g), finite):
            return float("inf"), 0.0
        diff = max(diff, float(np.abs(g[finite] - w[finite]).max()))
        scale = max(scale, float(np.abs(w[finite]).max()))
    return diff, scale


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="*")
    parser.add_argument("--exporters", default="torchscript,dynamo")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "onnx_export.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    exporters = args.exporters.split(",")
    results = []
    folder = Path(__import__("tempfile").mkdtemp(prefix="onnx-sweep-"))
    for name in args.models or list_models():
        entry = get_model_entry(name)
        for mode in [None] + (["user", "item"] if entry.family == "matching" else []):
            row = {"model": name, "graph": mode or "model"}
            for exporter in exporters:
                torch.manual_seed(0)
                kwargs, batch = entry.example()
                model = entry.cls(**kwargs).eval()
                path = folder / f"{name}-{mode}-{exporter}.onnx"
                start = time.perf_counter()
                try:
                    ONNXExporter(model).export(path, mode=mode, dummy_input={k: v[:5] for k, v in batch.items()},
                                               onnx_export_kwargs={"dynamo": EXPORTERS[exporter]})
                except ExportError as err:
                    row[exporter] = {"ok": False, "error": str(err).split(": ", 1)[-1][:300]}
                    continue
                seconds = time.perf_counter() - start
                diff, scale = compare(list(run_onnx(path, batch).values()), reference(model, batch, mode))
                row[exporter] = {"ok": True, "max_abs_diff": diff, "scale": scale, "seconds": seconds}
            results.append(row)
            print(json.dumps(row), flush=True)
    print("\n| model | graph | " + " | ".join(f"{e}: max abs diff (output scale), export s" for e in exporters) + " |")
    print("|---|---|" + "---|" * len(exporters))
    for row in results:
        cells = []
        for e in exporters:
            r = row[e]
            cells.append(f"{r['max_abs_diff']:.1e} ({r['scale']:.2g}), {r['seconds']:.1f}" if r["ok"]
                         else f"fails: {r['error'][:120]}")
        print(f"| {row['model']} | {row['graph']} | " + " | ".join(cells) + " |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"torch": torch.__version__, "results": results}, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
