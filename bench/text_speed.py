"""Text trainer speed: the trainer's own overhead, and length-grouped batching.

1. ``overhead``: one epoch of ``multitask_bert.training.trainer.Trainer.train()`` against a bare
   PyTorch loop over the same model (same initial weights), the same batches (the trainer's own
   task loaders, same seed and epoch) and the same work per batch: forward with labels, loss,
   backward, gradient clipping at 1.0, AdamW step, linear-warmup scheduler step. Runs alternate
   (trainer, bare, trainer, bare, ...) after one warm-up of each; the median of each is reported.
2. ``bucketing``: full training (validation on dev every epoch, best epoch kept) with random
   batches and with ``training.group_by_length: true``; real (non-padding) tokens/s from the
   epoch logs and the best dev F1 of each.

Data: AfriSenti Swahili sentiment + MasakhaNER 2.0 Swahili NER from ../shared/data/text (the
demo's data; read in place, never copied here). Model: the installed all-MiniLM-L6-v2 encoder.

    python bench/text_speed.py                     # both parts (~10 min on 2 free cores)
    python bench/text_speed.py --mode overhead --scale 0.2 --repeats 1     # smoke check
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

ROOT = Path(__file__).resolve().parents[1]
# ../shared/data/text beside the checkout (a git worktree may sit one folder deeper)
DATA = next((p / "shared" / "data" / "text" for p in ROOT.parents if (p / "shared" / "data" / "text").is_dir()),
            ROOT.parent / "shared" / "data" / "text")


def build_config(args: argparse.Namespace, out: str, *, group_by_length: bool = False, epochs: int = 1,
                 validate: bool = False) -> dict:
    senti, ner = DATA / "afrisenti_swa", DATA / "masakhaner2_swa"
    return {
        "project_name": "text_speed",
        "model": {"base_model": args.model, "dropout": 0.1, "pooling": "mean"},
        "tokenizer": {"max_length": args.max_length},
        "training": {
            "output_dir": out, "learning_rate": args.lr, "batch_size": args.batch_size, "num_epochs": epochs,
            "warmup_ratio": 0.1, "weight_decay": 0.01, "seed": args.seed, "device": "cpu", "progress": False,
            "metric_for_best_model": "eval_overall_f1", "eval_strategy": "epoch" if validate else "no",
            "save_strategy": "best" if validate else "no", "group_by_length": group_by_length,
        },
        "tasks": [
            {"name": "Sentiment", "type": "single_label_classification", "data_path": str(senti / "train.tsv"),
             "eval_data_path": str(senti / "dev.tsv"), "max_examples": max(8, round(args.senti * args.scale)),
             "heads": [{"name": "sentiment_head"}]},
            {"name": "SwahiliNER", "type": "ner", "data_path": str(ner / "train.txt"),
             "eval_data_path": str(ner / "dev.txt"), "max_examples": max(8, round(args.ner * args.scale)),
             "heads": [{"name": "ner_head"}]},
        ],
    }


def tiny_encoder_dir(folder: Path) -> str:
    """MiniLM's tokenizer with a small random BERT (2 layers, width 128): cheap steps, so any
    per-step cost of the trainer shows up clearly."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from trainhub.text.model import resolve_base_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_base_model("all-MiniLM-L6-v2"))
    tokenizer.save_pretrained(str(folder))
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=128, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=256, max_position_embeddings=512)
    BertModel(config).save_pretrained(str(folder))
    return str(folder)


def bare_epoch(trainer, model, seed: int) -> tuple[float, int]:
    """What the trainer does per batch, written out by hand. Returns (seconds, real tokens)."""
    import torch

    from trainhub.engine import seed_everything
    from trainhub.engine.malloc import retain_freed_memory
    from trainhub.text.sampling import MultiTaskLoader
    from trainhub.text.trainer import linear_warmup_schedule

    retain_freed_memory()  # the process setting the trainer's loop applies on the CPU, so both compare alike
    tr = trainer.training
    seed_everything(seed)
    loader = MultiTaskLoader(trainer.train_dataloaders, tr.task_sampling, tr.sampling_temperature, tr.seed)
    loader.set_epoch(0)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "LayerNorm" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "LayerNorm" not in n)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": tr.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=tr.learning_rate)
    scheduler = linear_warmup_schedule(optimizer, tr.warmup_for(len(loader)), len(loader))
    model.train()
    tokens = 0
    start = time.perf_counter()
    for name, batch in loader:
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], task_id=name,
                    labels=batch["labels"])
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        tokens += int(batch["attention_mask"].sum())
    return time.perf_counter() - start, tokens


def overhead(args: argparse.Namespace) -> dict:
    from trainhub.text import Trainer

    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer.from_config(build_config(args, out))
        try:
            model = trainer.model
            initial = copy.deepcopy(model.state_dict())
            times: dict[str, list[float]] = {"trainer": [], "bare": []}
            cpu: dict[str, list[float]] = {"trainer": [], "bare": []}
            tokens = {}
            for repeat in range(args.repeats + 1):  # the first round warms up and is not counted
                for kind in ("trainer", "bare"):
                    model.load_state_dict(initial)
                    start, cpu_start = time.perf_counter(), time.process_time()
                    if kind == "trainer":
                        history = trainer.train().history
                        tokens[kind] = history[0]["train_tokens_per_s"]  # the trainer's own count
                    else:
                        _, real = bare_epoch(trainer, model, args.seed)
                    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
                    if kind == "bare":
                        tokens[kind] = real / seconds
                    if repeat:
                        times[kind].append(seconds)
                        cpu[kind].append(cpu_seconds)
                    print(f"[text] {kind:7s} {'warm-up' if not repeat else f'run {repeat}'}: {seconds:.1f}s wall, "
                          f"{cpu_seconds:.1f}s CPU", file=sys.stderr, flush=True)
            batches = sum(len(dl) for dl in trainer.train_dataloaders.values())
        finally:
            trainer.close()
    median = {k: statistics.median(v) for k, v in times.items()}
    median_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    # CPU seconds of this process are far less sensitive than wall time to other jobs on the machine
    return {"batches": batches, "seconds": times, "median_s": median, "cpu_seconds": cpu,
            "median_cpu_s": median_cpu, "overhead": median["trainer"] / median["bare"] - 1.0,
            "overhead_cpu": median_cpu["trainer"] / median_cpu["bare"] - 1.0, "tokens_per_s_last_run": tokens}


def bucketing(args: argparse.Namespace) -> dict:
    from trainhub.text import Trainer

    results = {}
    for grouped in (False, True):
        with tempfile.TemporaryDirectory() as out:
            trainer = Trainer.from_config(build_config(args, out, group_by_length=grouped, epochs=args.epochs,
                                                       validate=True))
            try:
                start = time.perf_counter()
                result = trainer.train()
                seconds = time.perf_counter() - start
            finally:
                trainer.close()
        history = result.history
        best = result.best_metrics or {}
        row = {
            "tokens_per_s_by_epoch": [h["train_tokens_per_s"] for h in history],
            "tokens_per_s": statistics.mean(h["train_tokens_per_s"] for h in history),
            "padding_by_epoch": [h["train_padding"] for h in history],
            "train_and_eval_s": seconds, "best_epoch": result.best_epoch,
            "dev_overall_f1": best.get("eval_overall_f1"),
            "dev_ner_f1": best.get("eval_SwahiliNER_ner_head_f1"),
            "dev_sentiment_f1": best.get("eval_Sentiment_sentiment_head_f1"),
        }
        results["group_by_length" if grouped else "random"] = row
        print(f"[text] {'grouped' if grouped else 'random '}: {row['tokens_per_s']:,.0f} tokens/s, "
              f"padding {statistics.mean(row['padding_by_epoch']):.2f}, dev F1 {row['dev_overall_f1']}",
              file=sys.stderr, flush=True)
    results["speedup"] = results["group_by_length"]["tokens_per_s"] / results["random"]["tokens_per_s"]
    return results


def markdown(result: dict) -> str:
    lines = []
    if "overhead" in result:
        o = result["overhead"]
        lines += [f"Text trainer overhead: one epoch ({o['batches']} batches of {result['args']['batch_size']}, "
                  f"{result['encoder']}, Swahili sentiment + NER), median of {len(o['seconds']['bare'])} "
                  "alternating runs:", "",
                  "| loop | wall s (median) | all runs | CPU s (median) | all runs |", "|---|---|---|---|---|"]
        for kind, label in (("bare", "bare PyTorch"), ("trainer", "`Trainer.train()`")):
            lines.append(f"| {label} | {o['median_s'][kind]:.1f} | {[round(s, 1) for s in o['seconds'][kind]]} "
                         f"| {o['median_cpu_s'][kind]:.1f} | {[round(s, 1) for s in o['cpu_seconds'][kind]]} |")
        lines += ["", f"Trainer overhead: {100 * o['overhead']:+.1f}% wall, "
                  f"{100 * o['overhead_cpu']:+.1f}% CPU time.", ""]
    if "bucketing" in result:
        b = result["bucketing"]
        lines += [f"Length-grouped batches ({result['args']['epochs']} epochs, best epoch on dev):", "",
                  "| batches | real tokens/s | padding share | dev overall F1 | dev NER F1 | dev sentiment F1 |",
                  "|---|---|---|---|---|---|"]
        for name in ("random", "group_by_length"):
            r = b[name]
            lines.append(f"| {name} | {r['tokens_per_s']:,.0f} | {statistics.mean(r['padding_by_epoch']):.2f} "
                         f"| {r['dev_overall_f1']:.4f} | {r['dev_ner_f1']:.4f} | {r['dev_sentiment_f1']:.4f} |")
        lines += ["", f"Speed-up in real tokens/s: {b['speedup']:.2f}x.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["overhead", "bucketing", "both"], default="both")
    parser.add_argument("--model", default="all-MiniLM-L6-v2",
                        help="encoder folder or name; 'tiny' = a 2-layer random BERT on MiniLM's tokenizer")
    parser.add_argument("--senti", type=int, default=1810, help="training tweets (all 1,810 by default)")
    parser.add_argument("--ner", type=int, default=1500, help="training sentences")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply --senti and --ner (smoke runs)")
    parser.add_argument("--overhead-scale", type=float, default=0.35,
                        help="extra factor on the data of the overhead part (one epoch, several runs)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="JSON file (default: print only)")
    args = parser.parse_args(argv)
    if not DATA.is_dir():
        print(f"skip: {DATA} is absent (the text speed bench needs ../shared/data/text)")
        return 0
    import torch

    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    tiny_dir = None
    if args.model == "tiny":
        tiny_dir = tempfile.TemporaryDirectory()
        args.model = tiny_encoder_dir(Path(tiny_dir.name))
    result: dict = {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                    "torch_threads": args.threads,
                    "encoder": "2-layer width-128 random BERT" if tiny_dir else Path(args.model).name}
    if args.mode in ("overhead", "both"):
        small = argparse.Namespace(**{**vars(args), "scale": args.scale * args.overhead_scale})
        result["overhead"] = overhead(small)
    if args.mode in ("bucketing", "both"):
        result["bucketing"] = bucketing(args)
    if tiny_dir is not None:
        tiny_dir.cleanup()
    text = markdown(result)
    result["markdown"] = text
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
