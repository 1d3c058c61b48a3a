"""Run Torch-RecHub's own example scripts against trainhub, with only their import lines changed.

Usage:
    python bench/rechub_examples.py CHECKOUT DATA [--lib trainhub|torch_rechub] [--only NAME ...]

    CHECKOUT  a Torch-RecHub checkout (a folder holding ``examples/``) or its git directory
              (the Python files of ``examples/`` at ``HEAD`` are then read from it).
    DATA      a folder holding the sample data at the checkout's relative paths
              (``examples/ranking/data/criteo/criteo_sample.csv``, ...), e.g. ``../shared/data/rechub``.

For every run in ``RUNS`` the examples are copied to a temporary folder, the sample data laid
beside them, and (with ``--lib trainhub``) every ``from torch_rechub... import ...`` rewritten as
README's porting table says (``PORTING`` below is that table). Each script then runs in its own
process from its own folder with ``--epoch 1 --device cpu`` (``--batch_size`` is left at the
script's default). ``--lib torch_rechub`` runs the unchanged scripts, e.g. with
``--python /path/to/rechub-venv/bin/python``, for the reference count. ``--apply-fixes`` first
applies README's one-line fixes (``FIXES``) for what trainhub rejects on purpose.

Prints one line per run and the counts per group; ``--json FILE`` writes every result (status,
seconds, the last line of the error). Nothing of the checkout or the data is written to this
repository.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# README's porting table: Torch-RecHub module -> trainhub module, and (module, name) overrides.
PORTING = {
    "torch_rechub.basic.features": "trainhub.features",
    "torch_rechub.basic.metric": "trainhub.metrics.compat",
    "torch_rechub.basic.loss_func": "trainhub.tasks",
    "torch_rechub.models": "trainhub.models",
    "torch_rechub.models.ranking": "trainhub.models.ranking",
    "torch_rechub.models.matching": "trainhub.models.matching",
    "torch_rechub.models.multi_task": "trainhub.models.multitask",
    "torch_rechub.trainers": "trainhub.trainers",
    "torch_rechub.utils.data": "trainhub.data",
    "torch_rechub.utils.match": "trainhub.data",
    "torch_rechub.data.convert": "trainhub.data",
    "torch_rechub.data.dataset": "trainhub.data",
    "torch_rechub.utils.onnx_export": "trainhub.export",
    "torch_rechub.utils.quantization": "trainhub.export",
    "torch_rechub.models.generative.hstu": "trainhub.models.generative",
    "torch_rechub.models.generative.hllm": "trainhub.models.generative",
    "torch_rechub.trainers.seq_trainer": "trainhub.trainers.seq_trainer",
    "torch_rechub.utils.hstu_utils": "trainhub.models.generative",
    "torch_rechub.basic.layers": "trainhub.nn",
    "torch_rechub.models.generative.rqvae": "trainhub.models.generative.rqvae",
    "torch_rechub.models.generative.tiger": "trainhub.models.generative.tiger",
    "torch_rechub.trainers.rqvae_trainer": "trainhub.trainers.rqvae_trainer",
}
PORTING_NAMES = {  # (module, name) -> (trainhub module, trainhub name)
    ("torch_rechub.utils.match", "Annoy"): ("trainhub.retrieval", "Annoy"),
    ("torch_rechub.utils.match", "Faiss"): ("trainhub.retrieval", "Faiss"),
    ("torch_rechub.utils.match", "Milvus"): ("trainhub.retrieval", "Milvus"),
    ("torch_rechub.models", "multi_task"): ("trainhub.models", "multitask"),
}


@dataclass
class Run:
    group: str  # "matching" or "ranking" (ranking and multi-task scripts live in examples/ranking)
    script: str  # path relative to the checkout
    args: list[str] = field(default_factory=list)
    # run first: (folder relative to the script's folder, script and arguments)
    prepare: list[tuple[str, list[str]]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return " ".join([Path(self.script).name, *self.args])


def _runs() -> list[Run]:
    m, r = "examples/matching/", "examples/ranking/"
    runs = [Run("matching", m + s) for s in ("run_ml_dssm.py", "run_ml_youtube_dnn.py", "run_ml_youtube_sbc.py",
                                             "run_ml_facebook_dssm.py", "run_ml_mind.py")]
    runs += [Run("matching", m + "run_ml_comirec.py", ["--model_name", n]) for n in ("comirec_sa", "comirec_dr")]
    runs += [Run("matching", m + s) for s in ("run_ml_gru4rec.py", "run_ml_sine.py")]
    prep = ("data/session_based", ["preprocess_session_based.py", "--name", "diginetica",
                                   "--path", "./diginetica/train-item-views-sample.csv"])
    runs += [Run("matching", m + "run_sbr.py", ["--model_name", n, "--data_path", "./data/session_based/diginetica",
                                                  "--top_k", "3"], [prep]) for n in ("narm", "stamp")]
    # Ranking and multi-task: every command each script's docstring lists (criteo's default fibinet too).
    runs += [Run("ranking", r + "run_criteo.py", ["--model_name", n]) for n in
             ("widedeep", "deepfm", "dcn", "dcn_v2", "edcn", "autoint", "deepffm", "fat_deepffm", "fibinet")]
    runs += [Run("ranking", r + "run_avazu.py", ["--model_name", n]) for n in
             ("widedeep", "deepfm", "dcn", "deepffm", "fat_deepffm")]
    runs += [Run("ranking", r + "run_ali_ccp_ctr_ranking.py", ["--model_name", n])
             for n in ("widedeep", "deepfm", "dcn")]
    runs += [Run("ranking", r + "run_amazon_electronics.py"), Run("ranking", r + "run_dien.py")]
    for script, models in (("run_ali_ccp_multi_task.py", ("SharedBottom", "ESMM", "MMOE", "PLE", "AITM")),
                           ("run_census.py", ("SharedBottom", "ESMM", "MMOE", "PLE", "AITM")),
                           ("run_aliexpress.py", ("SharedBottom", "ESMM", "MMOE", "PLE", "AITM")),
                           ("run_gradnorm.py", ("SharedBottom", "MMOE", "PLE", "AITM")),
                           ("run_metabalance.py", ("SharedBottom", "MMOE", "PLE", "AITM"))):
        runs += [Run("ranking", r + script, ["--model_name", n]) for n in models]
    return runs


RUNS = _runs()

# README's one-line fixes for the scripts trainhub rejects on purpose (applied with --apply-fixes).
FIXES = {
    "examples/ranking/run_avazu.py": [(
        "embed_dim=16) for feature_name in features]",  # SparseFeatures from the encoded columns only
        "embed_dim=16) for feature_name in sparse_features]")],
    "examples/ranking/run_amazon_electronics.py": [(
        "target_features = features\n",  # one target per history feature
        "target_features = features[:2]\n")],
}


def rewrite_imports(source: str) -> str:
    """Replace every ``from torch_rechub.<module> import ...`` whose module PORTING maps; others stay as they are."""
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    edits = []  # (first line, last line, replacement)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "torch_rechub":
            if node.module not in PORTING:
                continue  # no trainhub counterpart (generative models, ONNX, serving): the script fails to import
            targets: dict[str, list[str]] = {}
            for alias in node.names:
                module, name = PORTING_NAMES.get((node.module, alias.name), (PORTING[node.module], alias.name))
                bound = alias.asname or alias.name
                targets.setdefault(module, []).append(name if bound == name else f"{name} as {bound}")
            indent = lines[node.lineno - 1][:node.col_offset]
            text = "".join(f"{indent}from {mod} import {', '.join(names)}\n" for mod, names in targets.items())
            edits.append((node.lineno, node.end_lineno, text))
    for first, last, text in sorted(edits, reverse=True):
        lines[first - 1:last] = [text]
    return "".join(lines)


def _examples_tree(checkout: Path, dest: Path) -> None:
    if (checkout / "examples").is_dir():
        shutil.copytree(checkout / "examples", dest / "examples")
        return
    # A bare mirror may lack large blobs (data files): take its Python files one by one.
    listing = subprocess.run(["git", f"--git-dir={checkout}", "ls-tree", "-r", "HEAD", "examples"], check=True,
                             capture_output=True, text=True).stdout
    for line in listing.splitlines():
        meta, path = line.split("\t", 1)
        if path.endswith(".py"):
            blob = subprocess.run(["git", f"--git-dir={checkout}", "cat-file", "blob", meta.split()[2]], check=True,
                                  capture_output=True).stdout
            (dest / path).parent.mkdir(parents=True, exist_ok=True)
            (dest / path).write_bytes(blob)


def apply_fixes(work: Path) -> None:
    for script, edits in FIXES.items():
        path = work / script
        text = path.read_text()
        for old, new in edits:
            if old not in text:
                raise ValueError(f"{script}: the line to fix ({old.strip()!r}) is not there; update FIXES")
            text = text.replace(old, new)
        path.write_text(text)


def prepare_tree(checkout: Path, data: Path, lib: str, fixes: bool = False) -> Path:
    work = Path(tempfile.mkdtemp(prefix="rechub-examples-"))
    _examples_tree(checkout, work)
    for src in (data / "examples").rglob("*"):
        if src.is_file():
            dst = work / src.relative_to(data)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    (work / "examples/matching/data/ml-1m/saved").mkdir(parents=True, exist_ok=True)
    if fixes:
        apply_fixes(work)
    if lib == "trainhub":
        for py in (work / "examples").rglob("*.py"):
            text = py.read_text()
            if "torch_rechub" in text:
                py.write_text(rewrite_imports(text))
    return work


def _last_error(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    for line in reversed(lines):
        if not line.startswith(("warnings.warn", "File ", "^")) and ("Error" in line or "Exception" in line):
            return line[:300]
    return lines[-1][:300] if lines else ""


def run_one(run: Run, work: Path, python: str, lib: str, timeout: float) -> dict:
    folder = work / Path(run.script).parent
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if lib == "trainhub":
        env["PYTHONPATH"] = str(ROOT / "src")
    env.update({"OMP_NUM_THREADS": "2", "MPLBACKEND": "Agg", "PYTHONWARNINGS": "ignore"})
    start = time.perf_counter()
    cmd = [python, Path(run.script).name, *run.args, "--epoch", "1", "--device", "cpu"]
    try:
        for prep_dir, prep_cmd in run.prepare:
            prep = subprocess.run([python, *prep_cmd], cwd=folder / prep_dir, env=env, capture_output=True,
                                  text=True, timeout=timeout)
            if prep.returncode != 0:
                raise RuntimeError(f"preparing data: {_last_error(prep.stderr)}")
        proc = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True, timeout=timeout)
        ok, error = proc.returncode == 0, "" if proc.returncode == 0 else _last_error(proc.stderr or proc.stdout)
    except subprocess.TimeoutExpired:
        ok, error = False, f"timed out after {timeout:.0f} s"
    except RuntimeError as err:
        ok, error = False, str(err)
    return {"group": run.group, "run": run.name, "ok": ok, "seconds": round(time.perf_counter() - start, 1),
            "error": error}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkout", type=Path)
    parser.add_argument("data", type=Path)
    parser.add_argument("--lib", choices=("trainhub", "torch_rechub"), default="trainhub")
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--only", nargs="*", help="runs whose name contains one of these strings")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--json", type=Path, help="write every result here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary examples folder")
    parser.add_argument("--apply-fixes", action="store_true",
                        help="apply README's one-line fixes for the differences trainhub keeps on purpose (FIXES)")
    args = parser.parse_args(argv)
    if not (args.data / "examples").is_dir():
        parser.error(f"{args.data} holds no examples/ folder of sample data")
    runs = [r for r in RUNS if not args.only or any(s in r.name for s in args.only)]
    work = prepare_tree(args.checkout.resolve(), args.data.resolve(), args.lib, args.apply_fixes)
    results = []
    try:
        for run in runs:
            res = run_one(run, work, args.python, args.lib, args.timeout)
            results.append(res)
            print(f"{'ok  ' if res['ok'] else 'FAIL'} {res['seconds']:6.1f}s  {res['group']:9s} {res['run']}"
                  + (f"\n      {res['error']}" if res["error"] else ""), flush=True)
    finally:
        if args.keep:
            print(f"examples kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    for group in ("matching", "ranking"):
        done = [r for r in results if r["group"] == group]
        if done:
            print(f"{group}: {sum(r['ok'] for r in done)} of {len(done)} complete ({args.lib}"
                  f"{', with README fixes' if args.apply_fixes else ''})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"lib": args.lib, "python": args.python, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
