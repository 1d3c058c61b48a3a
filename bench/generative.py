"""Generative next-item recommendation on MovieLens-100K: trainhub's HSTU and SASRec against
Torch-RecHub 0.9.0's HSTU (issue 21, "Measured and published"), plus speed and vocabulary scale.

    python bench/generative.py [--quick] [--only STAGE ...] [--rechub-python PY] [--rechub-source DIR]

Stages (``--only`` re-runs some and keeps the others' results from the JSON):

* ``upstream``: Torch-RecHub's own ``examples/generative/run_hstu_movielens.py``, unmodified, in its
  own venv, on data written by its own ``preprocess_ml_hstu.py`` from ML-100K in ML-1M's
  ``ratings.dat`` format (``user::item::rating::timestamp``);
* ``ported``: the same script with its imports rewritten by ``bench/rechub_examples.py``'s PORTING
  table, on trainhub;
* ``trainhub``: trainhub's HSTU and SASRec from the interaction log (``interaction_sequences``, the
  per-user layout) with ``SeqTrainer``, and a most-popular baseline;
* ``speed``: validation NDCG@10 against training time for upstream's ``SeqTrainer`` on its
  sliding-window samples (``bench/generative_steps.py`` in upstream's venv) and for trainhub's
  per-user layout; throughput of both on the sliding-window samples (from the two script runs);
* ``scale``: a training step at a synthetic 10k- and 1M-item vocabulary, full vs sampled softmax,
  with peak RSS (each case in its own process).

Protocol: leave-one-out (last item test, second-last validation), the most recent ``max_seq_len``
items as history, the target ranked against every item with PAD and the history's items excluded.
Writes ``bench/results/generative.json`` and the tables of ``docs/generative.md`` between
``<!-- generative:start -->`` and ``<!-- generative:end -->``; ``--quick`` (tiny settings, a
smoke test) writes ``bench/results/tmp/generative-quick.json`` and leaves the doc alone. Derived
MovieLens files go to ``--work`` (default ``/tmp/trainhub-generative-bench``), never into the
repository. Skips with a message when ``../shared/data/rec/ml-100k`` is absent.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "rec" / "ml-100k"
RESULTS = ROOT / "bench" / "results" / "generative.json"
QUICK_RESULTS = ROOT / "bench" / "results" / "tmp" / "generative-quick.json"
DOC = ROOT / "docs" / "generative.md"
DOC_START, DOC_END = "<!-- generative:start -->", "<!-- generative:end -->"
RECHUB_PYTHON = ROOT / "bench" / ".rechub-venv" / "bin" / "python"
RECHUB_SOURCE = ROOT.parent / ".mirror" / "datawhalechina+torch-rechub" / "repo"
RUN_SCRIPT = "examples/generative/run_hstu_movielens.py"
PREPROCESS = "examples/generative/data/ml-1m/preprocess_ml_hstu.py"
STAGES = ("upstream", "ported", "trainhub", "windows", "speed", "scale")
SEED = 2022
KS = (10, 50, 200)
# One thread per run: the 2 cores are shared with other work, and with two threads OpenMP's barriers
# under that contention made a step 1.3-4x slower (and far noisier) than with one.
THREADS = "1"


@dataclass
class Settings:
    """Everything a run depends on; the full and ``--quick`` values are below."""

    max_seq_len: int = 50
    # Model size of upstream's run_hstu_movielens.py defaults (its CLI flags of the same names).
    d_model: int = 50
    n_heads: int = 1
    n_layers: int = 2
    dropout: float = 0.2
    users: int | None = None  # the first N users only (quick)
    script_epochs: int = 1  # upstream's script (both libraries): epochs of its sliding-window samples
    trainhub_epochs: int = 30  # trainhub HSTU and SASRec: epochs of the per-user layout
    trainhub_batch_size: int = 32
    trainhub_lr: float = 3e-3
    speed_steps: int = 120  # upstream steps (batch 128) in the speed curve
    eval_every: int = 20
    scale_vocabs: tuple[int, int] = (10_000, 1_000_000)
    scale_batch: int = 128
    scale_full_batch: int = 4  # full softmax at the large vocabulary (its logits would not fit at 128)
    scale_steps: int = 6
    scale_warmup: int = 2

    def hstu_kwargs(self) -> dict[str, Any]:
        """run_hstu_movielens.py's HSTUModel arguments (its defaults; sizes from here)."""
        return dict(d_model=self.d_model, n_heads=self.n_heads, n_layers=self.n_layers, dqk=self.d_model,
                    dv=self.d_model, max_seq_len=self.max_seq_len, dropout=self.dropout, use_time_embedding=False,
                    time_bucket_fn="log", time_bucket_divisor=0.301, time_bucket_unit="seconds", score_norm="l2",
                    temperature=0.05, use_output_bias=False, scale_input_embedding=True)

    def sasrec_kwargs(self) -> dict[str, Any]:
        """SASRecModel of the same width, depth, dropout and scoring head."""
        return dict(d_model=self.d_model, n_heads=self.n_heads, n_layers=self.n_layers,
                    max_seq_len=self.max_seq_len, dropout=self.dropout, score_norm="l2", temperature=0.05,
                    use_output_bias=False, scale_input_embedding=True)


FULL = Settings()
QUICK = Settings(max_seq_len=20, d_model=16, users=40, script_epochs=1, trainhub_epochs=2, trainhub_batch_size=16,
                 speed_steps=6,
                 eval_every=3, scale_vocabs=(1_000, 20_000), scale_batch=16, scale_full_batch=4, scale_steps=2,
                 scale_warmup=1)


# -- measuring a process ---------------------------------------------------------------------------------
class LoadSampler:
    """The 1-minute load average every few seconds while a run lasts (the machine is shared)."""

    def __init__(self, every: float = 5.0):
        self.every, self.samples = every, [os.getloadavg()[0]]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.samples.append(os.getloadavg()[0])

    def __enter__(self) -> "LoadSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append(os.getloadavg()[0])

    def summary(self) -> dict[str, float]:
        return {"loadavg_1min_mean": round(statistics.fmean(self.samples), 2),
                "loadavg_1min_max": round(max(self.samples), 2)}


def child_env(trainhub: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if trainhub:
        env["PYTHONPATH"] = str(ROOT / "src")
    env.update({"OMP_NUM_THREADS": THREADS, "MKL_NUM_THREADS": THREADS, "PYTHONWARNINGS": "ignore", "MPLBACKEND": "Agg",
                "TQDM_MININTERVAL": "30"})
    return env


def measured(cmd: list[str], cwd: Path, env: dict[str, str], log: Path) -> dict[str, Any]:
    """Run ``cmd`` to completion; its wall time, CPU time (user + system), peak RSS and the load."""
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"  $ {' '.join(str(c) for c in cmd)}  (log: {log})", flush=True)
    with open(log, "w") as out, LoadSampler() as load:
        start = time.perf_counter()
        proc = subprocess.Popen([str(c) for c in cmd], cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    text = log.read_text(errors="replace")
    result = {"returncode": proc.returncode, "finished_utc": _utc_now(), "trainhub_tree": trainhub_tree(),
              "wall_s": round(wall, 1),
              "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
              "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), **load.summary()}
    if proc.returncode != 0:
        tail = "\n".join(text.strip().splitlines()[-15:])
        raise RuntimeError(f"{cmd[1] if len(cmd) > 1 else cmd[0]} failed (exit {proc.returncode}); log {log}:\n{tail}")
    return {**result, "output": text}


def _utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M")


def trainhub_tree() -> str:
    """The trainhub commit a run used, ``+uncommitted`` when ``src/`` had changes (others edit the checkout)."""
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "src"], capture_output=True,
                           text=True).stdout.strip()
    return head.stdout.strip() + ("+uncommitted" if dirty else "")


def last_json(text: str) -> dict[str, Any]:
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError("no JSON result in the output")


# -- data: ML-100K in ML-1M's files, upstream's preprocessing ---------------------------------------------
def git_file(source: Path, path: str) -> str:
    """A file of a Torch-RecHub checkout, or of a bare git mirror at HEAD."""
    if (source / path).is_file():
        return (source / path).read_text()
    return subprocess.run(["git", f"--git-dir={source}", "show", f"HEAD:{path}"], check=True, capture_output=True,
                          text=True).stdout


def source_commit(source: Path) -> str | None:
    proc = subprocess.run(["git", "-C" if (source / ".git").exists() else f"--git-dir={source}", *(
        [str(source)] if (source / ".git").exists() else []), "rev-parse", "HEAD"], capture_output=True, text=True)
    return proc.stdout.strip() or None


def write_ml1m_format(data: Path, out: Path, users: int | None) -> dict[str, int]:
    """``ratings.dat`` (``user::item::rating::timestamp``), ``movies.dat`` and ``users.dat`` from
    ML-100K's ``u.data``, ``u.item`` and ``u.user`` (upstream's preprocessing reads the first two
    and checks that all three exist)."""
    import pandas as pd

    out.mkdir(parents=True, exist_ok=True)
    ratings = pd.read_csv(data / "u.data", sep="\t", names=["user", "item", "rating", "timestamp"])
    if users:
        ratings = ratings[ratings.user.isin(sorted(ratings.user.unique())[:users])]
    with open(out / "ratings.dat", "w") as f:
        for row in ratings.itertuples(index=False):
            f.write(f"{row.user}::{row.item}::{row.rating}::{row.timestamp}\n")
    items = pd.read_csv(data / "u.item", sep="|", header=None, encoding="latin-1", usecols=[0, 1])
    with open(out / "movies.dat", "w", encoding="latin-1") as f:
        for item, title in items.itertuples(index=False):
            f.write(f"{item}::{str(title).replace('::', ':')}::Unknown\n")
    people = pd.read_csv(data / "u.user", sep="|", header=None)
    with open(out / "users.dat", "w") as f:
        for user, age, gender, occupation, zipcode in people.itertuples(index=False):
            f.write(f"{user}::{gender}::{age}::{occupation}::{zipcode}\n")
    return {"ratings": len(ratings), "users": int(ratings.user.nunique()), "items": int(ratings.item.nunique())}


# Upstream's preprocessing, run as its ``__main__`` block does with ``--no_download``; the one
# difference is ``max_seq_len``, a constant of its class (200) that its CLI cannot set.
_PREPROCESS_DRIVER = """
import importlib.util, sys
path, data_dir, out_dir, max_len = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
spec = importlib.util.spec_from_file_location("preprocess_ml_hstu", path)
mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
if not mod.ensure_movielens_data(data_dir, download=False):
    raise SystemExit(1)
pre = mod.MovieLensHSTUPreprocessor(data_dir=data_dir, output_dir=out_dir)
pre.max_seq_len = max_len
pre.preprocess()
"""


@dataclass
class Workspace:
    root: Path
    source: Path
    rechub_python: Path | None

    @property
    def raw(self) -> Path:
        return self.root / "ml-100k-as-ml-1m"

    @property
    def processed(self) -> Path:
        return self.root / "processed"

    def script(self, lib: str) -> Path:
        return self.root / lib / RUN_SCRIPT


def prepare(ws: Workspace, s: Settings) -> dict[str, Any]:
    """ML-1M-format files, upstream's preprocessing, and the run script twice (as is; ported)."""
    sys.path.insert(0, str(ROOT / "bench"))
    from rechub_examples import rewrite_imports

    counts = write_ml1m_format(DATA, ws.raw, s.users)
    (ws.root / "prep").mkdir(parents=True, exist_ok=True)
    prep_path = ws.root / "prep" / "preprocess_ml_hstu.py"
    prep_path.write_text(git_file(ws.source, PREPROCESS))
    shutil.rmtree(ws.processed, ignore_errors=True)
    python = ws.rechub_python or Path(sys.executable)
    run = measured([python, "-c", _PREPROCESS_DRIVER, prep_path, ws.raw, ws.processed, s.max_seq_len], ws.root,
                   child_env(False), ws.root / "logs" / "preprocess.log")
    script = git_file(ws.source, RUN_SCRIPT)
    for lib, text in (("torch_rechub", script), ("trainhub", rewrite_imports(script))):
        path = ws.script(lib)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    samples = re.search(r"train=(\d+), val=(\d+), test=(\d+)", run["output"])
    import pickle

    with open(ws.processed / "train_data.pkl", "rb") as f:
        tokens = pickle.load(f)["seq_tokens"]
    return {**counts, "train_samples": int(samples.group(1)) if samples else None,
            "sliding_loss_positions_per_sample": round(float((tokens != 0).sum()) / len(tokens), 2),
            "preprocess_wall_s": run["wall_s"],
            "ported_imports": [line for line in rewrite_imports(script).splitlines()
                               if line.startswith("from trainhub")]}


# -- stage: the upstream script on either library --------------------------------------------------------
def parse_script(text: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, k, value in re.findall(r"^(Hit|NDCG|MRR)@(\d+): ([0-9.]+)", text, flags=re.M):
        out[f"{'hr' if name == 'Hit' else name.lower()}@{k}"] = float(value)
    for key, pattern in (("num_parameters", r"Number of parameters: ([\d,]+)"), ("train_samples", r"Train size: (\d+)"),
                         ("test_loss", r"Test loss: ([0-9.]+)"), ("test_top1_accuracy", r"Test accuracy: ([0-9.]+)")):
        found = re.search(pattern, text)
        if found:
            out[key] = float(found.group(1).replace(",", ""))
    return out


def train_loop_seconds(text: str) -> float | None:
    """Upstream's training loop time: the elapsed time of its last complete ``train`` tqdm bar."""
    total, found = 0.0, False
    for epoch in re.split(r"^epoch: \d+$", text, flags=re.M)[1:]:  # one bar per epoch, drawn more than once
        ends = [m for m in re.finditer(r"train:\s+100%\|[^|]*\| (\d+)/(\d+) \[(?:(\d+):)?(\d+):(\d+)<", epoch)
                if m.group(1) == m.group(2)]
        if ends:
            found = True
            total += max(3600 * int(m.group(3) or 0) + 60 * int(m.group(4)) + int(m.group(5)) for m in ends)
    return total if found else None


def checkpoint_val(ws: Workspace, s: Settings, lib: str) -> dict[str, float] | None:
    """Validation HR@10 / NDCG@10 of the weights a script run saved, computed by
    ``bench/generative_steps.py`` (the speed curves' metric code) in that library's venv."""
    trainhub = lib == "trainhub"
    weights = ws.root / f"save-{lib}" / "model.pth"
    python = Path(sys.executable) if trainhub else ws.rechub_python
    if not weights.is_file() or python is None:
        return None
    cmd = [python, ROOT / "bench" / "generative_steps.py", "--lib", lib, "--data", ws.processed, "--steps", 0,
           "--eval-every", 1, "--model-json", json.dumps(s.hstu_kwargs()), "--checkpoint", weights]
    run = measured(cmd, ROOT, child_env(trainhub), ws.root / "logs" / f"val-{lib}.log")
    out = last_json(run["output"])
    return {"hr@10": out["hr@10"], "ndcg@10": out["ndcg@10"]}


def run_script(ws: Workspace, s: Settings, lib: str) -> dict[str, Any]:
    """``run_hstu_movielens.py`` with its own CLI: CPU, ``--epoch``, ``--max_seq_len`` and the model size."""
    trainhub = lib == "trainhub"
    python = Path(sys.executable) if trainhub else ws.rechub_python
    save = ws.root / f"save-{lib}"
    shutil.rmtree(save, ignore_errors=True)
    save.mkdir(parents=True)
    args = ["--dataset_path", ws.processed, "--device", "cpu", "--epoch", s.script_epochs,
            "--max_seq_len", s.max_seq_len,
            "--d_model", s.d_model, "--n_heads", s.n_heads, "--n_layers", s.n_layers, "--dqk", s.d_model,
            "--dv", s.d_model, "--dropout", s.dropout, "--seed", SEED, "--save_dir", save]
    script = ws.script(lib)
    run = measured([python, script.name, *args], script.parent, child_env(trainhub),
                   ws.root / "logs" / f"script-{lib}.log")
    output = run.pop("output")
    parsed = parse_script(output)
    run["output"] = output
    if "hr@10" not in parsed:
        raise RuntimeError(f"the {lib} run printed no ranking metrics; see {ws.root / 'logs'}")
    samples = parsed.get("train_samples") or 0
    loop = train_loop_seconds(run.pop("output")) if not trainhub else None
    parsed["val_after_training"] = checkpoint_val(ws, s, lib)
    return {**run, **parsed, "train_loop_wall_s": loop, "epochs": s.script_epochs, "batch_size": 128, "lr": 1e-3,
            "train_samples_per_s_wall": round(samples * s.script_epochs / run["wall_s"], 1),
            "train_samples_per_s_cpu": round(samples * s.script_epochs / run["cpu_s"], 1)}


# -- stage: trainhub from the interaction log ------------------------------------------------------------
def read_log(users: int | None):
    import pandas as pd

    frame = pd.read_csv(DATA / "u.data", sep="\t", names=["user_id", "item_id", "rating", "timestamp"])
    if users:
        frame = frame[frame.user_id.isin(sorted(frame.user_id.unique())[:users])]
    return frame


class EpochClock:
    """Training time per epoch, validation excluded: from the epoch's start to its last batch."""

    def __init__(self):
        self.curve: list[dict[str, float]] = []
        self.wall = self.cpu = 0.0

    def on_epoch_start(self, state: Any) -> None:
        self._w, self._c = time.perf_counter(), time.process_time()
        self._lw, self._lc = self._w, self._c

    def on_train_batch_end(self, state: Any, out: Any) -> None:
        self._lw, self._lc = time.perf_counter(), time.process_time()

    def on_validation_end(self, state: Any, metrics: dict[str, float]) -> None:
        self.wall += self._lw - self._w
        self.cpu += self._lc - self._c
        self._w = self._lw  # a second validation in the same epoch adds no training time
        self._c = self._lc
        self.curve.append({"epoch": state.epoch + 1, "train_wall_s": round(self.wall, 2),
                           "train_cpu_s": round(self.cpu, 2), "hr@10": metrics.get("hr@10"),
                           "ndcg@10": metrics.get("ndcg@10")})


def worker_trainhub(p: dict[str, Any]) -> dict[str, Any]:
    """One trainhub model from the interaction log, the per-user layout (runs in its own process)."""
    import numpy as np
    import torch

    import trainhub
    from trainhub.data import interaction_sequences
    from trainhub.models.generative import HSTUModel, SASRecModel
    from trainhub.trainers import SeqTrainer

    s = Settings(**{**p["settings"], "scale_vocabs": tuple(p["settings"]["scale_vocabs"])})
    data = interaction_sequences(read_log(s.users), max_seq_len=s.max_seq_len, layout=p.get("layout", "user"),
                                 window_stride=p.get("window_stride"))
    same = None
    upstream_val = Path(p["processed"]) / "val_data.pkl" if p.get("processed") else None
    if upstream_val and upstream_val.is_file():  # the same validation sequences as upstream's preprocessing
        import pickle

        with open(upstream_val, "rb") as f:
            theirs = pickle.load(f)
        ours = data.arrays("val")
        same = all(np.array_equal(np.asarray(ours[k], np.int64), np.asarray(theirs[k], np.int64))
                   for k in ("seq_tokens", "seq_time_diffs", "targets"))
    train_dl, val_dl, test_dl = data.dataloaders(batch_size=p["batch_size"], eval_batch_size=256, seed=SEED)
    trainhub.seed_everything(SEED)
    model = (HSTUModel(vocab_size=data.vocab_size, **s.hstu_kwargs()) if p["model"] == "hstu"
             else SASRecModel(vocab_size=data.vocab_size, **s.sasrec_kwargs()))
    clock = EpochClock()
    trainer = SeqTrainer(model, optimizer_fn=torch.optim.AdamW,
                         optimizer_params={"lr": p["lr"], "weight_decay": 0.0, "betas": (0.9, 0.98)},
                         n_epoch=p["epochs"], earlystop_patience=p["epochs"], device="cpu",
                         model_path=p["model_path"], seed=SEED, progress=False, callbacks=[clock], ks=KS)
    trainer.fit(train_dl, val_dl)
    test = trainer.evaluate_all(trainer.model, test_dl)
    best = trainer.fit_result.best_epoch
    positions = sum(int((batch[0] != 0).sum()) for batch in train_dl)  # every real position takes a loss
    wall, cpu = clock.wall, clock.cpu
    return {"model": type(model).__name__, "layout": p.get("layout", "user"), "window_stride": p.get("window_stride"),
            "epochs": p["epochs"],
            "batch_size": p["batch_size"], "lr": p["lr"], "best_epoch": None if best is None else best + 1,
            "train_samples": len(data.train), "loss_positions_per_epoch": positions,
            "num_parameters": sum(q.numel() for q in model.parameters()), "same_val_sequences_as_upstream": same,
            "train_wall_s": round(wall, 1), "train_cpu_s": round(cpu, 1),
            "train_samples_per_s_wall": round(len(data.train) * p["epochs"] / wall, 1),
            **{k: round(v, 5) for k, v in test.items() if k != "loss"}, "curve": clock.curve,
            "loadavg_end": [round(x, 2) for x in os.getloadavg()]}


def popularity(s: Settings) -> dict[str, Any]:
    """Items ranked by their training count, the same test samples and metric code as the models."""
    import torch

    from trainhub.data import interaction_sequences
    from trainhub.tasks.seq import NextItemMetrics

    data = interaction_sequences(read_log(s.users), max_seq_len=s.max_seq_len)
    seqs = data.sequences
    counts = torch.zeros(data.vocab_size)
    for u in range(seqs.num_users):
        items, _ = seqs.sequence(u)
        counts.index_add_(0, torch.as_tensor(items[:-2]), torch.ones(len(items) - 2))  # training part only
    metrics = NextItemMetrics(KS)
    _, _, test_dl = data.dataloaders(batch_size=256)
    for tokens, _pos, _diffs, target in test_dl:
        metrics.add_scores(counts.expand(len(tokens), -1), target, tokens)
    out = metrics.compute()
    return {k: round(v, 5) for k, v in out.items() if k not in ("loss", "top1_accuracy")}


def run_worker(kind: str, params: dict[str, Any], log: Path) -> dict[str, Any]:
    cmd = [sys.executable, Path(__file__).resolve(), "--worker", kind, "--params", json.dumps(params)]
    run = measured(cmd, ROOT, child_env(True), log)
    result = last_json(run.pop("output"))
    return {**result, **{k: v for k, v in run.items() if k != "returncode"}}


def trainhub_params(ws: Workspace, s: Settings, model: str, **overrides: Any) -> dict[str, Any]:
    return {"settings": dataclasses.asdict(s), "model": model, "epochs": s.trainhub_epochs,
            "batch_size": s.trainhub_batch_size, "lr": s.trainhub_lr, "processed": str(ws.processed),
            "model_path": str(ws.root / f"trainhub-{model}"), **overrides}


# -- stage: speed ----------------------------------------------------------------------------------------
def step_curve(ws: Workspace, s: Settings, lib: str) -> dict[str, Any]:
    trainhub = lib == "trainhub"
    python = Path(sys.executable) if trainhub else ws.rechub_python
    model = {k: v for k, v in s.hstu_kwargs().items()}
    cmd = [python, ROOT / "bench" / "generative_steps.py", "--lib", lib, "--data", ws.processed,
           "--steps", s.speed_steps, "--eval-every", s.eval_every, "--model-json", json.dumps(model),
           "--work", ws.root / f"steps-{lib}"]
    run = measured(cmd, ROOT, child_env(trainhub), ws.root / "logs" / f"steps-{lib}.log")
    return {**last_json(run.pop("output")), **{k: v for k, v in run.items() if k != "returncode"}}


def time_to(curve: list[dict[str, Any]], target: float, key: str) -> float | None:
    for point in curve:
        if point.get("ndcg@10") is not None and point["ndcg@10"] >= target and point.get("step", 1) != 0:
            return point[key]
    return None


# -- stage: scale ----------------------------------------------------------------------------------------
def worker_scale(p: dict[str, Any]) -> dict[str, Any]:
    """Median training-step time of HSTU on synthetic sequences at one vocabulary size and loss."""
    import resource

    import torch

    import trainhub
    from trainhub.models.generative import HSTUModel
    from trainhub.trainers import SeqTrainer

    s = Settings(**{**p["settings"], "scale_vocabs": tuple(p["settings"]["scale_vocabs"])})
    vocab, batch, length = p["vocab"], p["batch"], s.max_seq_len
    g = torch.Generator().manual_seed(SEED)
    batches = []
    for _ in range(s.scale_warmup + s.scale_steps):
        tokens = torch.randint(1, vocab, (batch, length), generator=g)  # uniform: the most rows a batch can touch
        gaps = torch.randint(30, 100_000, (batch, length), generator=g)
        diffs = gaps.flip(1).cumsum(1).flip(1) - gaps[:, -1:]
        batches.append((tokens, torch.arange(length).expand(batch, length), diffs,
                        torch.randint(1, vocab, (batch,), generator=g)))
    trainhub.seed_everything(SEED)
    model = HSTUModel(vocab_size=vocab, **s.hstu_kwargs())
    stamps: list[float] = []

    class Clock:
        def on_epoch_start(self, state: Any) -> None:
            stamps.append(time.perf_counter())

        def on_train_batch_end(self, state: Any, out: Any) -> None:
            stamps.append(time.perf_counter())

    loss_params = {"num_negatives": 128, "in_batch_negatives": 128} if p["loss"] == "sampled_softmax" else None
    trainer = SeqTrainer(model, optimizer_fn=torch.optim.AdamW,
                         optimizer_params={"lr": 1e-3, "weight_decay": 0.0, "betas": (0.9, 0.98)}, n_epoch=1,
                         device="cpu", model_path=p["model_path"], loss_type=p["loss"], loss_params=loss_params,
                         seed=SEED, progress=False, save_last=False, callbacks=[Clock()],
                         sparse_embeddings=p["sparse"])
    trainer.fit(batches, None)
    steps = [b - a for a, b in zip(stamps[:-1], stamps[1:])][s.scale_warmup:]
    return {"vocab": vocab, "loss": p["loss"], "sparse_embeddings": p["sparse"], "batch_size": batch,
            "seq_len": length, "step_ms": round(1000 * statistics.median(steps), 1),
            "step_ms_all": [round(1000 * x, 1) for x in steps],
            "optimizer": type(trainer.optimizer).__name__,
            "peak_rss_mb_self": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "loadavg_end": [round(x, 2) for x in os.getloadavg()]}


def scale_cases(s: Settings) -> list[dict[str, Any]]:
    small, large = s.scale_vocabs
    return [
        {"name": f"sampled_{small}", "vocab": small, "loss": "sampled_softmax", "sparse": True, "batch": s.scale_batch},
        {"name": f"sampled_{large}", "vocab": large, "loss": "sampled_softmax", "sparse": True, "batch": s.scale_batch},
        {"name": f"sampled_dense_{large}", "vocab": large, "loss": "sampled_softmax", "sparse": False,
         "batch": s.scale_batch},
        {"name": f"full_{small}", "vocab": small, "loss": "cross_entropy", "sparse": True, "batch": s.scale_batch},
        {"name": f"full_{small}_b{s.scale_full_batch}", "vocab": small, "loss": "cross_entropy", "sparse": True,
         "batch": s.scale_full_batch},
        {"name": f"full_{large}_b{s.scale_full_batch}", "vocab": large, "loss": "cross_entropy", "sparse": True,
         "batch": s.scale_full_batch},
    ]


# -- orchestration ---------------------------------------------------------------------------------------
def environment(ws: Workspace) -> dict[str, Any]:
    import platform

    import torch

    git = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "src"], capture_output=True,
                           text=True).stdout.strip()
    rechub = None
    if ws.rechub_python:
        proc = subprocess.run([str(ws.rechub_python), "-c", "import importlib.metadata as m; "
                               "print(m.version('torch-rechub'))"], capture_output=True, text=True)
        rechub = proc.stdout.strip() or None
    return {"date_utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M"), "cpu_count": os.cpu_count(),
            "machine": platform.machine(), "python": platform.python_version(), "torch": torch.__version__,
            "trainhub_commit": git.stdout.strip(), "trainhub_src_uncommitted_changes": bool(dirty),
            "trainhub_src_status": dirty.splitlines(),
            "torch_rechub": rechub, "torch_rechub_source_commit": source_commit(ws.source)}


def run_stages(ws: Workspace, s: Settings, stages: list[str], results: dict[str, Any]) -> None:
    need_upstream = {"upstream", "ported", "speed"} & set(stages)
    if need_upstream and not ws.rechub_python:
        print(f"no Torch-RecHub venv ({RECHUB_PYTHON} or --rechub-python): skipping upstream runs", flush=True)
    results["settings"] = dataclasses.asdict(s)
    results["environment"] = environment(ws)
    results["data"] = prepare(ws, s)
    print(f"data: {results['data']}", flush=True)

    # Libraries alternate run by run: upstream, trainhub, upstream, trainhub, ...
    if "upstream" in stages and ws.rechub_python:
        print("upstream: run_hstu_movielens.py on Torch-RecHub", flush=True)
        results["upstream"] = run_script(ws, s, "torch_rechub")
        yield_results(results)
    if "ported" in stages:
        print("ported: run_hstu_movielens.py, imports rewritten, on trainhub", flush=True)
        results["ported"] = run_script(ws, s, "trainhub")
        yield_results(results)
    for key, lib in (("upstream", "torch_rechub"), ("ported", "trainhub")):  # results kept from an earlier run
        kept = results.get(key)
        if kept and kept.get("val_after_training") is None:
            kept["val_after_training"] = checkpoint_val(ws, s, lib)
            log = ws.root / "logs" / f"script-{lib}.log"
            if lib == "torch_rechub" and kept.get("train_loop_wall_s") is None and log.is_file():
                kept["train_loop_wall_s"] = train_loop_seconds(log.read_text(errors="replace"))
    if "speed" in stages and ws.rechub_python:
        print("speed: upstream SeqTrainer on its sliding-window samples", flush=True)
        results.setdefault("speed", {})["upstream_curve"] = step_curve(ws, s, "torch_rechub")
        yield_results(results)
    if "trainhub" in stages or "speed" in stages:
        print("trainhub: HSTU, per-user layout", flush=True)
        results.setdefault("trainhub", {})["hstu"] = run_worker("trainhub", trainhub_params(ws, s, "hstu"),
                                                                 ws.root / "logs" / "trainhub-hstu.log")
        yield_results(results)
    if "speed" in stages:
        # The layout alone: trainhub's per-user layout with upstream's batch size and learning rate,
        # for as many steps as upstream's curve (so the same number of batches of 128).
        epochs = max(1, round(s.speed_steps * 128 / max(1, results["data"]["users"]) / 1))
        print(f"speed: trainhub HSTU, per-user layout, upstream's batch 128 and lr 1e-3 ({epochs} epochs)", flush=True)
        results["speed"]["trainhub_user_upstream_recipe"] = run_worker(
            "trainhub", trainhub_params(ws, s, "hstu", epochs=epochs, batch_size=128, lr=1e-3,
                                        model_path=str(ws.root / "trainhub-hstu-b128")),
            ws.root / "logs" / "trainhub-hstu-b128.log")
        yield_results(results)
    if "trainhub" in stages:
        print("trainhub: SASRec, per-user layout", flush=True)
        results["trainhub"]["sasrec"] = run_worker("trainhub", trainhub_params(ws, s, "sasrec"),
                                                   ws.root / "logs" / "trainhub-sasrec.log")
        results["trainhub"]["popularity"] = popularity(s)
        # The brief's "same epochs for all", taken literally: the script's epoch count on the
        # per-user layout (one epoch there is ~1/100 of the script's training work).
        for model in ("hstu", "sasrec"):
            results["trainhub"][f"{model}_script_epochs"] = run_worker(
                "trainhub", trainhub_params(ws, s, model, epochs=s.script_epochs,
                                            model_path=str(ws.root / f"trainhub-{model}-e{s.script_epochs}")),
                ws.root / "logs" / f"trainhub-{model}-e{s.script_epochs}.log")
        yield_results(results)
    if "windows" in stages:
        # Every training transition once per epoch, as one sliding epoch has them: earlier windows of
        # histories longer than max_seq_len too (window_stride = max_seq_len tiles each history).
        for model in ("hstu", "sasrec"):
            print(f"trainhub: {model}, per-user layout with every window", flush=True)
            results.setdefault("trainhub", {})[f"{model}_all_windows"] = run_worker(
                "trainhub", trainhub_params(ws, s, model, window_stride=s.max_seq_len,
                                            model_path=str(ws.root / f"trainhub-{model}-windows")),
                ws.root / "logs" / f"trainhub-{model}-windows.log")
            yield_results(results)
    if "scale" in stages:
        cases = {}
        for case in scale_cases(s):
            print(f"scale: {case['name']}", flush=True)
            params = {"settings": dataclasses.asdict(s), "model_path": str(ws.root / f"scale-{case['name']}"), **case}
            cases[case["name"]] = run_worker("scale", params, ws.root / "logs" / f"scale-{case['name']}.log")
        results["scale"] = cases
        yield_results(results)


_OUT: dict[str, Path] = {}


def yield_results(results: dict[str, Any]) -> None:
    """Write the JSON after every stage (a later failure keeps what was measured)."""
    path = _OUT["json"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1, default=str) + "\n")


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def summarise(results: dict[str, Any]) -> None:
    """Derived numbers and the issue's goals, met or not, from what was measured."""
    up, th = results.get("upstream"), results.get("trainhub", {})
    pop = th.get("popularity")
    goals: dict[str, Any] = {}
    for suffix in ("", "_all_windows"):
        hstu, sasrec = th.get("hstu" + suffix), th.get("sasrec" + suffix)
        if hstu and up:
            goals["hstu_vs_torch_rechub" + suffix] = {
                "hr@10": _ratio(hstu["hr@10"], up["hr@10"]), "ndcg@10": _ratio(hstu["ndcg@10"], up["ndcg@10"]),
                "met": hstu["hr@10"] >= up["hr@10"] and hstu["ndcg@10"] >= up["ndcg@10"]}
        if hstu and sasrec:
            goals["hstu_vs_sasrec" + suffix] = {
                "hr@10": _ratio(hstu["hr@10"], sasrec["hr@10"]), "ndcg@10": _ratio(hstu["ndcg@10"], sasrec["ndcg@10"]),
                "met": hstu["hr@10"] >= 1.05 * sasrec["hr@10"] and hstu["ndcg@10"] >= 1.05 * sasrec["ndcg@10"]}
        if hstu and sasrec and pop:
            # "Well above" read as at least 1.5x the most-popular baseline's HR@10 and NDCG@10.
            ratios = {f"{name}_{m}": _ratio(r[m], pop[m]) for name, r in (("hstu", hstu), ("sasrec", sasrec))
                      for m in ("hr@10", "ndcg@10")}
            goals["above_popularity" + suffix] = {**ratios, "threshold": 1.5,
                                                  "met": all(v >= 1.5 for v in ratios.values())}
    hstu = th.get("hstu")
    speed = results.get("speed", {})
    curve_up = speed.get("upstream_curve")
    if curve_up and hstu:
        reached = [p["ndcg@10"] for p in curve_up["curve"] if p["step"] > 0]
        target = round(max(reached), 4)
        same_recipe = speed.get("trainhub_user_upstream_recipe")
        summary: dict[str, Any] = {"target_val_ndcg@10": target}
        for clock in ("train_wall_s", "train_cpu_s"):
            t_up = time_to(curve_up["curve"], target, clock)
            t_th = time_to(hstu["curve"], target, clock)
            t_same = time_to(same_recipe["curve"], target, clock) if same_recipe else None
            summary[clock] = {"torch_rechub_sliding": t_up, "trainhub_user_tuned": t_th,
                              "trainhub_user_upstream_recipe": t_same,
                              "speedup_tuned": _ratio(t_up, t_th), "speedup_same_recipe": _ratio(t_up, t_same)}
        end = (up or {}).get("val_after_training")
        if end:  # the quality upstream's script reaches after its epoch(s), on its whole-run clock
            target_end = round(end["ndcg@10"], 4)
            entry: dict[str, Any] = {"target_val_ndcg@10": target_end}
            for clock, t_up in (("train_wall_s", up.get("train_loop_wall_s") or up["wall_s"]),
                                ("train_cpu_s", up["cpu_s"])):
                t_th = time_to(hstu["curve"], target_end, clock)
                entry[clock] = {"torch_rechub_script": t_up, "trainhub_user_tuned": t_th,
                                "speedup_tuned": _ratio(t_up, t_th)}
            summary["script_end"] = entry
        ported = results.get("ported")
        if up and ported:  # the same script and samples on both libraries: the step alone
            summary["step_gain_sliding_wall"] = _ratio(ported["train_samples_per_s_wall"],
                                                       up["train_samples_per_s_wall"])
            summary["step_gain_sliding_cpu"] = _ratio(ported["train_samples_per_s_cpu"],
                                                      up["train_samples_per_s_cpu"])
        # Met when trainhub is 3x faster to both targets, on the wall clock and on CPU time.
        speedups = [summary[c]["speedup_tuned"] for c in ("train_wall_s", "train_cpu_s")]
        if "script_end" in summary:
            speedups += [summary["script_end"][c]["speedup_tuned"] for c in ("train_wall_s", "train_cpu_s")]
        summary["met"] = all(x is not None and x >= 3 for x in speedups)
        goals["speed_time_to_ndcg"] = summary
    scale = results.get("scale")
    if scale:
        small, large = results["settings"]["scale_vocabs"]
        s_small, s_large = scale.get(f"sampled_{small}"), scale.get(f"sampled_{large}")
        if s_small and s_large:
            goals["scale_sampled_1m_vs_10k"] = {"ratio": _ratio(s_large["step_ms"], s_small["step_ms"]),
                                                "met": s_large["step_ms"] <= 2 * s_small["step_ms"]}
    results["goals"] = goals
    results["cpu_s_all_runs"] = round(sum(_cpu_seconds(results.get(k)) for k in ("upstream", "ported", "trainhub",
                                                                               "speed", "scale")), 1)


def _cpu_seconds(entry: Any) -> float:
    """CPU seconds of every measured process below ``entry``."""
    if not isinstance(entry, dict):
        return 0.0
    if "cpu_s" in entry and isinstance(entry["cpu_s"], (int, float)):
        return float(entry["cpu_s"])
    return sum(_cpu_seconds(v) for v in entry.values())


def _f(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _t(seconds: float | None) -> str:
    if seconds is None:
        return "not reached"
    return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"


def _work(steps: int, positions: float) -> str:
    return f"{steps:,} steps, {positions / 1e6:.2f}M positions trained"


def render_tables(results: dict[str, Any]) -> str:
    """The markdown tables of docs/generative.md (between its markers)."""
    s = results.get("settings", {})
    env = results.get("environment", {})
    data = results.get("data", {})
    th = results.get("trainhub", {})
    stamps = sorted(_stamps(results))
    trees = list(dict.fromkeys(tree for _, tree in stamps))  # in the order the runs met them
    when = f"{stamps[0][0]} to {stamps[-1][0]}" if stamps else env.get("date_utc", "?")
    lines = [f"Measured {when} UTC on {env.get('cpu_count', '?')} shared CPU cores "
             f"(torch {env.get('torch', '?')}; trainhub {', '.join(trees) or env.get('trainhub_commit', '?')}, "
             "as the runs found the shared checkout; "
             f"Torch-RecHub {env.get('torch_rechub', '?')}, examples at "
             f"{str(env.get('torch_rechub_source_commit'))[:10]}); "
             f"`python bench/generative.py`, results in `bench/results/generative.json`. ML-100K: "
             f"{data.get('users')} users, {data.get('items')} items, {data.get('ratings')} ratings; history length "
             f"{s.get('max_seq_len')}; HSTU d_model {s.get('d_model')}, {s.get('n_heads')} head, "
             f"{s.get('n_layers')} layers (upstream script's defaults); SASRec of the same width, depth and head. "
             "The load average is the 1-minute one while the run lasted (other work shares the machine).", ""]
    lines += ["**Quality** (test, full ranking over every item, the history's items excluded):", "",
              "| model | params | training | HR@10 | NDCG@10 | HR@50 | NDCG@50 | HR@200 | NDCG@200 | MRR@10 "
              "| train time (wall / CPU) | load avg |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]

    def row(name: str, r: dict[str, Any] | None, training: str) -> None:
        if not r:
            return
        wall = r.get("train_wall_s", r.get("wall_s"))
        cpu = r.get("train_cpu_s", r.get("cpu_s"))
        time_cell = f"{wall:.0f} s / {cpu:.0f} s" if wall is not None else "–"
        load = r.get("loadavg_1min_mean")
        params = f"{int(r['num_parameters']):,}" if r.get("num_parameters") else "–"
        lines.append(f"| {name} | {params} | {training} | {_f(r.get('hr@10'))} | {_f(r.get('ndcg@10'))} | "
                     f"{_f(r.get('hr@50'))} | "
                     f"{_f(r.get('ndcg@50'))} | {_f(r.get('hr@200'))} | {_f(r.get('ndcg@200'))} | "
                     f"{_f(r.get('mrr@10'))} | {time_cell} | {_f(load, 1)} |")

    up, ported = results.get("upstream"), results.get("ported")
    epochs = s.get("script_epochs", 1)
    windows = data.get("train_samples") or 0
    positions = data.get("sliding_loss_positions_per_sample", 0)
    sliding = (f"{_n(epochs, 'epoch')} of {windows:,} sliding windows, batch 128, lr 1e-3 "
               f"({_work(epochs * -(-windows // 128), epochs * windows * positions)})")
    row("Torch-RecHub 0.9.0 HSTU: its `run_hstu_movielens.py`", up, sliding)
    row("the same script on trainhub (imports rewritten)", ported, sliding)

    def per_user(r: dict[str, Any]) -> str:
        steps = r["epochs"] * -(-r["train_samples"] // r["batch_size"])
        work = _work(steps, r["epochs"] * r["loss_positions_per_epoch"])
        best = f"; test at the best validation epoch, {r.get('best_epoch')}" if r["epochs"] > 1 else ""
        if r.get("window_stride"):
            best += f"; every {r['window_stride']}-item window of longer histories"
        return (f"{_n(r['epochs'], 'epoch')} of {r['train_samples']:,} user sequences, batch {r['batch_size']}, "
                f"lr {_lr(r['lr'])} ({work}{best})")

    for key, name in (("hstu", "trainhub HSTU: `interaction_sequences` + `SeqTrainer`"),
                      ("sasrec", "trainhub SASRec: same pipeline"),
                      ("hstu_all_windows", "trainhub HSTU, every window (`window_stride=max_seq_len`)"),
                      ("sasrec_all_windows", "trainhub SASRec, every window"),
                      ("hstu_script_epochs", "trainhub HSTU at the script's epoch count"),
                      ("sasrec_script_epochs", "trainhub SASRec at the script's epoch count")):
        r = th.get(key)
        if r:
            row(name, r, per_user(r))
    pop = th.get("popularity")
    if pop:
        lines.append(f"| most popular (training counts) | – | – | {_f(pop.get('hr@10'))} | {_f(pop.get('ndcg@10'))} | "
                     f"{_f(pop.get('hr@50'))} | {_f(pop.get('ndcg@50'))} | {_f(pop.get('hr@200'))} | "
                     f"{_f(pop.get('ndcg@200'))} | {_f(pop.get('mrr@10'))} | – | – |")
    lines.append("")
    lines.append("Script rows: the metrics the script prints (upstream's `topk_metrics`, 4 decimals, no MRR), "
                 "training time = the whole script. trainhub rows: `SeqTrainer.evaluate_all` on the test samples, "
                 "training time = training steps only.")
    goals = results.get("goals", {})
    speed = results.get("speed", {})
    g = goals.get("speed_time_to_ndcg")
    if g:
        curve_up = speed["upstream_curve"]
        same = speed.get("trainhub_user_upstream_recipe")
        e = g.get("script_end")
        w, c = g["train_wall_s"], g["train_cpu_s"]
        early = g["target_val_ndcg@10"]
        lines += ["", "**Speed**: training time (validation excluded) until validation NDCG@10 first reaches a target: "
                      f"{early:.4f}, the best Torch-RecHub's SeqTrainer reached in its first {curve_up['steps']} steps "
                      f"(validated every {s.get('eval_every')} steps; trainhub every epoch)"
                  + (f", and {e['target_val_ndcg@10']:.4f}, what its script reached after its "
                     f"{_n(s.get('script_epochs', 1), 'epoch')} (its saved weights validated the same way; the clock "
                     "is its training loop's tqdm time, and CPU time of the whole script)" if e else "") + ".", "",
                  f"| run | layout | batch, lr | to {early:.4f}: wall / CPU | speedup | "
                  + (f"to {e['target_val_ndcg@10']:.4f}: wall / CPU | speedup | " if e else "")
                  + "training samples/s (wall) | load avg |",
                  "|---|---|---|---|---|" + ("---|---|" if e else "") + "---|---|"]

        def cells(t_wall: Any, t_cpu: Any, s_wall: Any, s_cpu: Any) -> str:
            return f"{_t(t_wall)} / {_t(t_cpu)} | x{_f(s_wall, 2)} / x{_f(s_cpu, 2)} |"

        lines.append("| Torch-RecHub SeqTrainer | sliding windows | 128, 1e-3 | "
                     + cells(w["torch_rechub_sliding"], c["torch_rechub_sliding"], 1.0, 1.0)
                     + (" " + cells(e["train_wall_s"]["torch_rechub_script"], e["train_cpu_s"]["torch_rechub_script"],
                                    1.0, 1.0) if e else "")
                     + f" {_f(curve_up.get('samples_per_s'), 1)} | {_f(curve_up.get('loadavg_1min_mean'), 1)} |")
        runs = [(same, "per user"), (th.get("hstu"), "per user"),
                (th.get("hstu_all_windows"), "per user, every window")]
        for r, layout in runs:
            if not r:
                continue
            row_cells = ""
            for target, base_wall, base_cpu in ((early, w["torch_rechub_sliding"], c["torch_rechub_sliding"]),
                                                *(((e["target_val_ndcg@10"], e["train_wall_s"]["torch_rechub_script"],
                                                    e["train_cpu_s"]["torch_rechub_script"]),) if e else ())):
                t_wall, t_cpu = time_to(r["curve"], target, "train_wall_s"), time_to(r["curve"], target, "train_cpu_s")
                row_cells += " " + cells(t_wall, t_cpu, _ratio(base_wall, t_wall), _ratio(base_cpu, t_cpu))
            lines.append(f"| trainhub SeqTrainer | {layout} | {r['batch_size']}, {_lr(r['lr'])} |{row_cells}"
                         f" {_f(r.get('train_samples_per_s_wall'), 1)} | {_f(r.get('loadavg_1min_mean'), 1)} |")
        if same:
            lines += ["", f"The per-user run with upstream's batch and learning rate ran {same['epochs']} epochs "
                          f"({same['epochs'] * -(-same['train_samples'] // 128)} steps of 128, about as many as "
                          "upstream's curve): it isolates the layout at an equal recipe, for the first target."]
        step = g.get("step_gain_sliding_wall")
        if step and w.get("speedup_same_recipe") and w.get("speedup_tuned"):
            lines += ["", f"Where the x{w['speedup_tuned']:.1f} (wall, first target) comes from: x{step:.2f} the step "
                          "(the same script on the same samples, below), "
                          f"x{w['speedup_same_recipe'] / step:.2f} the per-user layout at upstream's batch and "
                          f"learning rate (x{w['speedup_same_recipe']:.2f} in all), and "
                          f"x{w['speedup_tuned'] / w['speedup_same_recipe']:.2f} "
                          "a batch and learning rate suited to the layout (smaller batches: more steps per epoch)."]
        if up and ported:
            lines += ["", f"The step alone (same script, same sliding-window samples, whole runs): Torch-RecHub "
                          f"{up['train_samples_per_s_wall']:.0f} samples/s wall ({up['train_samples_per_s_cpu']:.0f} "
                          f"per CPU-second), trainhub {ported['train_samples_per_s_wall']:.0f} "
                          f"({ported['train_samples_per_s_cpu']:.0f}): x{_f(g.get('step_gain_sliding_wall'), 2)} "
                          f"wall, x{_f(g.get('step_gain_sliding_cpu'), 2)} CPU. A per-user sequence carries about "
                          f"{_per_sample(th.get('hstu'), data):.2f}x the loss positions of an average sliding window, "
                          f"but a per-user epoch has {th.get('hstu', {}).get('train_samples', 0):,} sequences and a "
                          f"sliding one {data.get('train_samples') or 0:,} windows that train the same transitions "
                          "again and again: samples/s say nothing across layouts, time to a validation NDCG does."]
    scale = results.get("scale")
    if scale:
        small, large = s.get("scale_vocabs", (None, None))
        lines += ["", f"**Scale**: one HSTU training step (same model, history {s.get('max_seq_len')}) on synthetic "
                      "sequences with item ids uniform over the vocabulary, median of "
                      f"{s.get('scale_steps')} steps after {s.get('scale_warmup')} warm-up steps; each case in its "
                      "own process.", "",
                  "| vocabulary | loss | batch | item table | step | peak RSS | load avg |",
                  "|---|---|---|---|---|---|---|"]
        for r in scale.values():
            loss = {"sampled_softmax": "sampled softmax (128 uniform + 128 in-batch negatives, logQ)",
                    "cross_entropy": "full softmax"}[r["loss"]]
            table = "row-sparse, row-wise AdamW" if r["sparse_embeddings"] else "dense, AdamW"
            lines.append(f"| {r['vocab']:,} | {loss} | {r['batch_size']} | {table} | {r['step_ms']:.0f} ms | "
                         f"{r['peak_rss_mb']:.0f} MB | {_f(r.get('loadavg_1min_mean'), 1)} |")
        fs = scale.get(f"full_{small}_b{s.get('scale_full_batch')}")
        fl = scale.get(f"full_{large}_b{s.get('scale_full_batch')}")
        if fs and fl:
            estimate = fl["step_ms"] * s.get("scale_batch", 128) / s.get("scale_full_batch", 4)
            lines += ["", f"Full softmax at {large:,} items and batch {s.get('scale_batch')} would hold "
                          f"{s.get('scale_batch')} x {s.get('max_seq_len')} rows x {large:,} items x 4 bytes = "
                          f"{s.get('scale_batch') * s.get('max_seq_len') * large * 4 / 1e9:.1f} GB of logits per "
                          "tensor, "
                          f"so it is measured at batch {s.get('scale_full_batch')}: "
                          f"x{fl['step_ms'] / fs['step_ms']:.0f} "
                          f"the {small:,}-item step at that batch, about {estimate / 1000:.1f} s per batch of "
                          f"{s.get('scale_batch')} scaled linearly (the logits dominate)."]
    if goals:
        lines += ["", "**Goals of issue 21**:", ""]
        lines += [f"- {line}" for line in goal_lines(goals)]
    return "\n".join(lines)


def _stamps(entry: Any) -> list[tuple[str, str]]:
    """``(finished_utc, trainhub_tree)`` of every measured run below ``entry``."""
    if not isinstance(entry, dict):
        return []
    own = [(entry["finished_utc"], entry.get("trainhub_tree", "?"))] if "finished_utc" in entry else []
    return own + [x for k, v in entry.items() if k not in ("environment", "settings") for x in _stamps(v)]


def _lr(value: float) -> str:
    mantissa, exponent = f"{value:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _per_sample(hstu: dict[str, Any] | None, data: dict[str, Any]) -> float:
    """Loss positions of a per-user sequence over those of an average sliding window."""
    if not hstu:
        return float("nan")
    user = hstu["loss_positions_per_epoch"] / hstu["train_samples"]
    window = data.get("sliding_loss_positions_per_sample")
    return user / window if window else float("nan")


def goal_lines(goals: dict[str, Any]) -> list[str]:
    out = []
    mark = {True: "met", False: "**not met**"}
    for suffix, label in (("", ""), ("_all_windows", " (every window)")):
        g = goals.get("hstu_vs_torch_rechub" + suffix)
        if g:
            out.append(f"trainhub HSTU{label} HR@10 and NDCG@10 >= Torch-RecHub's HSTU: {mark[g['met']]} "
                       f"(x{_f(g['hr@10'], 2)} HR@10, x{_f(g['ndcg@10'], 2)} NDCG@10)")
        g = goals.get("hstu_vs_sasrec" + suffix)
        if g:
            out.append(f"trainhub HSTU >= 1.05x trainhub SASRec{label}: {mark[g['met']]} (x{_f(g['hr@10'], 2)} "
                       f"HR@10, x{_f(g['ndcg@10'], 2)} NDCG@10)")
        g = goals.get("above_popularity" + suffix)
        if g:
            out.append(f"both well above most-popular{label} (read as >= 1.5x): {mark[g['met']]} (HSTU "
                       f"x{_f(g['hstu_hr@10'], 2)} / x{_f(g['hstu_ndcg@10'], 2)}, SASRec x{_f(g['sasrec_hr@10'], 2)} / "
                       f"x{_f(g['sasrec_ndcg@10'], 2)} HR@10 / NDCG@10)")
    g = goals.get("speed_time_to_ndcg")
    if g:
        e = g.get("script_end")
        out.append(f"time to a validation NDCG@10 >= 3x faster than Torch-RecHub's SeqTrainer: {mark[g['met']]} "
                   f"(to {g['target_val_ndcg@10']:.4f}: x{_f(g['train_wall_s']['speedup_tuned'], 2)} wall, "
                   f"x{_f(g['train_cpu_s']['speedup_tuned'], 2)} CPU"
                   + (f"; to {e['target_val_ndcg@10']:.4f}: x{_f(e['train_wall_s']['speedup_tuned'], 2)} wall, "
                      f"x{_f(e['train_cpu_s']['speedup_tuned'], 2)} CPU" if e else "") + ")")
    g = goals.get("scale_sampled_1m_vs_10k")
    if g:
        out.append(f"sampled-softmax step at 1M items within 2x of the 10k step: {mark[g['met']]} "
                   f"(x{_f(g['ratio'], 2)})")
    return out


def write_doc(results: dict[str, Any], doc: Path = DOC) -> None:
    text = doc.read_text()
    if DOC_START not in text or DOC_END not in text:
        raise ValueError(f"{doc} has no {DOC_START} ... {DOC_END} markers for the measured tables")
    head, rest = text.split(DOC_START, 1)
    _, tail = rest.split(DOC_END, 1)
    doc.write_text(f"{head}{DOC_START}\n<!-- written by bench/generative.py from bench/results/generative.json: "
                   f"do not edit by hand -->\n\n{render_tables(results)}\n\n{DOC_END}{tail}")
    print(f"wrote the tables of {doc}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke settings (results to bench/results/tmp/)")
    parser.add_argument("--only", nargs="+", choices=STAGES, help="run these stages, keep the others' results")
    parser.add_argument("--rechub-python", type=Path,
                        default=Path(os.environ.get("TORCH_RECHUB_PYTHON", RECHUB_PYTHON)))
    parser.add_argument("--rechub-source", type=Path, default=RECHUB_SOURCE,
                        help="a Torch-RecHub checkout or bare git mirror (its examples/ are read)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/trainhub-generative-bench"))
    parser.add_argument("--json", type=Path)
    parser.add_argument("--no-doc", action="store_true", help="do not rewrite docs/generative.md's tables")
    parser.add_argument("--doc-only", action="store_true", help="only rewrite the doc's tables from the JSON")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--params", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        fn = {"trainhub": worker_trainhub, "scale": worker_scale}[args.worker]
        import logging

        logging.basicConfig(level=logging.WARNING)
        print(json.dumps(fn(json.loads(args.params)), default=str), flush=True)
        return 0

    out = args.json or (QUICK_RESULTS if args.quick else RESULTS)
    _OUT["json"] = out
    if args.doc_only:
        results = json.loads(out.read_text())
        summarise(results)
        yield_results(results)
        write_doc(results)
        return 0
    if not (DATA / "u.data").is_file():
        print(f"skipped: MovieLens-100K is not at {DATA} (u.data); nothing measured", flush=True)
        return 0
    s = QUICK if args.quick else FULL
    rechub_python = args.rechub_python if args.rechub_python.exists() else None
    ws = Workspace((args.work / "quick") if args.quick else args.work, args.rechub_source, rechub_python)
    ws.root.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    if args.only and out.is_file():
        results = json.loads(out.read_text())
        if results.get("settings") != dataclasses.asdict(s):
            print("the JSON's settings differ from this run's: the kept stages were measured with other settings",
                  flush=True)
    run_stages(ws, s, list(args.only or STAGES), results)
    summarise(results)
    yield_results(results)
    print(render_tables(results), flush=True)
    if not args.quick and not args.no_doc and not args.json:
        write_doc(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())

