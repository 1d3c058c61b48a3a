"""What int8 dynamic quantization of an exported model costs: AUC before/after, size, latency.

    PYTHONPATH=src .venv/bin/python bench/quantize.py [--rows 200000] [--epochs 2]
                                                      [--out bench/results/quantize.json]

Protocol: a synthetic CTR set (seeded): user (5,000 ids), item (20,000 ids), category (100) and city
(50) ids and two dense values; the click logit is a dot product of hidden user and item factors
plus per-id biases and a dense term, so the ids carry most of the signal. 80% train / 20% test.
DeepFM (embeddings 16, MLP [128, 64]) trained with CTRTrainer, and MMOE (2 tasks: click and a
second label driven by category and city) with MTLTrainer; Adam lr 1e-3, batch 1024. Each model
is exported to ONNX (``trainer.export_onnx``), quantized with ``quantize_model`` (dynamic int8,
per-tensor and per-channel), and all graphs are scored on the test rows in onnxruntime. Latency:
median of 20 runs of one 4,096-row batch, one intra-op thread. Prints a markdown table, writes JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from trainhub.data import DictDataset, make_loader  # noqa: E402
from trainhub.export import quantization_report, quantize_model, run_onnx  # noqa: E402
from trainhub.features import DenseFeature, SparseFeature  # noqa: E402
from trainhub.models.multitask import MMOE  # noqa: E402
from trainhub.models.ranking import DeepFM  # noqa: E402
from trainhub.trainers import CTRTrainer, MTLTrainer  # noqa: E402

VOCAB = {"user": 5000, "item": 20000, "cate": 100, "city": 50}


def make_data(rows: int, seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Ids, dense values and two labels ``[N, 2]`` (click, and a category/city-driven second task)."""
    rng = np.random.default_rng(seed)
    x = {name: rng.integers(0, size, rows) for name, size in VOCAB.items()}
    x["price"] = rng.random(rows).astype(np.float32)
    x["age"] = rng.random(rows).astype(np.float32)
    user_f, item_f = rng.normal(0, 0.5, (VOCAB["user"], 8)), rng.normal(0, 0.5, (VOCAB["item"], 8))
    bias = {name: rng.normal(0, 0.5, size) for name, size in VOCAB.items()}
    click = ((user_f[x["user"]] * item_f[x["item"]]).sum(1) + bias["user"][x["user"]] + bias["item"][x["item"]]
             + bias["cate"][x["cate"]] + 1.5 * (x["price"] - 0.5))
    second = 2 * bias["cate"][x["cate"]] + 2 * bias["city"][x["city"]] - (x["age"] - 0.5)
    labels = np.stack([rng.random(rows) < 1 / (1 + np.exp(-logit)) for logit in (click, second)], 1)
    return x, labels.astype(np.float32)


def features() -> list:
    return [SparseFeature(name, size, embed_dim=16) for name, size in VOCAB.items()] + \
        [DenseFeature("price"), DenseFeature("age")]


def latency_ms(path: Path, inputs: dict[str, np.ndarray], repeats: int = 20) -> float:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {i.name: inputs[i.name] for i in session.get_inputs()}
    session.run(None, feed)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def evaluate(name: str, fp32: Path, test_x: dict, test_y: np.ndarray, column: int | None) -> list[dict]:
    batch = {k: v[:4096] for k, v in test_x.items()}
    rows = []
    base = {"model": name, "task": "click" if not column else f"task {column}"}
    fp32_ms = latency_ms(fp32, batch)
    for variant, options in (("int8", {}), ("int8 per-channel", {"per_channel": True})):
        quantized = fp32.with_name(f"{fp32.stem}.{variant.replace(' ', '_')}.onnx")
        quantize_model(fp32, quantized, **options)
        report = quantization_report(fp32, quantized, test_x, test_y, column=column)
        rows.append({**base, "variant": variant, **report, "latency_fp32_ms": fp32_ms,
                     "latency_quantized_ms": latency_ms(quantized, batch)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "quantize.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.manual_seed(0)
    x, y = make_data(args.rows)
    split = int(0.8 * args.rows)
    train_x = {k: torch.as_tensor(v[:split]) for k, v in x.items()}
    test_x = {k: v[split:] for k, v in x.items()}
    common = {"optimizer_params": {"lr": 1e-3, "weight_decay": 0.0}, "n_epoch": args.epochs, "progress": False,
              "seed": 0}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        deepfm = DeepFM(features(), features()[:4], {"dims": [128, 64], "dropout": 0.0})
        trainer = CTRTrainer(deepfm, model_path=str(tmp / "deepfm"), **common)
        trainer.fit(make_loader(DictDataset(train_x, torch.as_tensor(y[:split, 0])), 1024, shuffle=True, seed=0))
        trainer.export_onnx(tmp / "deepfm.onnx", dummy_input={k: v[:8] for k, v in train_x.items()})
        torch_probs = np.asarray(trainer.predict(deepfm, make_loader(DictDataset(
            {k: torch.as_tensor(v) for k, v in test_x.items()}), 8192)))
        onnx_logits = run_onnx(tmp / "deepfm.onnx", test_x)["output"]
        print(f"DeepFM PyTorch vs ONNX fp32: max |prob diff| "
              f"{np.abs(torch_probs - 1 / (1 + np.exp(-onnx_logits))).max():.2e}")
        rows += evaluate("DeepFM", tmp / "deepfm.onnx", test_x, y[split:, 0], None)

        mmoe = MMOE(features(), ["classification", "classification"], n_expert=4, expert_params={"dims": [64]},
                    tower_params_list=[{"dims": [32]}, {"dims": [32]}])
        mtl = MTLTrainer(mmoe, ["classification", "classification"], model_path=str(tmp / "mmoe"), **common)
        loader = make_loader(DictDataset(train_x, torch.as_tensor(y[:split])), 1024, shuffle=True, seed=0)
        val = make_loader(DictDataset({k: torch.as_tensor(v[:20000]) for k, v in test_x.items()},
                                      torch.as_tensor(y[split:split + 20000])), 8192)
        mtl.fit(loader, val)
        mtl.export_onnx(tmp / "mmoe.onnx", dummy_input={k: v[:8] for k, v in train_x.items()})
        for column in (0, 1):
            rows += evaluate("MMOE", tmp / "mmoe.onnx", test_x, y[split:, column], column)

    print("\n| model | task | variant | AUC fp32 | AUC int8 | drop | max abs logit diff | size fp32 -> int8 (KB) "
          "| latency fp32 -> int8 (ms / 4096 rows) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['task']} | {r['variant']} | {r['auc_fp32']:.4f} | {r['auc_quantized']:.4f} "
              f"| {r['auc_drop']:+.4f} | {r['max_abs_diff']:.3f} | {r['size_fp32'] / 1024:.0f} -> "
              f"{r['size_quantized'] / 1024:.0f} | {r['latency_fp32_ms']:.2f} -> {r['latency_quantized_ms']:.2f} |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rows": args.rows, "epochs": args.epochs, "results": rows}, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
