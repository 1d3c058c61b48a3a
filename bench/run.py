"""``make bench``: every speed case on trainhub and on Torch-RecHub 0.9.0, side by side.

Each run is its own subprocess of ``bench/speed_case.py`` (the same script for both libraries,
only the imports differ), 2 torch threads; the libraries alternate run by run (th, rh, th, rh,
th, rh) so a slow spell on a shared machine hits both; the median of the runs is reported.

Environment:
    TORCH_RECHUB_PYTHON  a Python with torch-rechub==0.9.0 (``make bench`` makes bench/.rechub-venv
                         when this is unset; without either only trainhub runs)
    BENCH_CASES          comma-separated subset, e.g. ``deepfm,mmoe`` (default: all, see CASES, plus
                         ``text``: the text trainer's overhead and length-grouped batching)
    BENCH_SCALE          multiply the row counts, e.g. 0.05 for a smoke check; results of a scale
                         other than 1 go to bench/results/tmp/ and leave the README alone
    BENCH_REPEATS        runs per library and case (default 3)

Writes bench/results/speed.json (every run), bench/results/speed.md (the table) and README's
Speed section between ``<!-- speed:start -->`` and ``<!-- speed:end -->``. A subset at full scale
replaces only its own cases in speed.json.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
README = ROOT / "README.md"
MARK_START, MARK_END = "<!-- speed:start -->", "<!-- speed:end -->"
LIBS = {"trainhub": "trainhub", "torch_rechub": "Torch-RecHub 0.9.0"}
CASES = {  # name -> what the table says
    "deepfm": "DeepFM, 1 epoch, 26 Zipf fields (1k-100k ids, 9.58M params), batch 2048",
    "deepfm_3ep": "DeepFM, 3 epochs (validation after each), same data",
    "deepfm_1m": "DeepFM, 1 epoch, one 1,000,000-row table among the 26",
    "deepfm_old": "DeepFM, 1 epoch, uniform ids, vocabulary 1,000 per field, batch 1024 (earlier case)",
    "deepfm_bf16": "`deepfm` with trainhub's opt-in `precision=\"bf16\"` (Torch-RecHub: float32, no such option)",
    "mmoe": "MMOE + MTLTrainer, 30 fields (10-10k ids), 2 tasks, batch 1024",
    "dssm": "DSSM + MatchTrainer, list-wise, in-batch negatives, batch 1024",
    "youtubednn": "YoutubeDNN + MatchTrainer, list-wise, in-batch negatives, temperature 1.0, batch 1024",
}


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return {"nproc": os.cpu_count(), "cpu": cpu, "python": platform.python_version(), "torch_threads": 2,
            "loadavg_start": [round(x, 2) for x in os.getloadavg()]}


def run_once(python: str, lib: str, case: str, scale: float) -> dict:
    cmd = [python, str(HERE / "speed_case.py"), "--lib", lib, "--case", case, "--scale", str(scale)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    if lib == "torch_rechub":
        env.pop("PYTHONPATH")  # trainhub's sources must not shadow anything in the peer's venv
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        error = [line for line in proc.stderr.strip().splitlines() if line.strip()][-1:] or [f"exit {proc.returncode}"]
        print(f"[bench] {case} on {lib} failed: {error[0]}", file=sys.stderr)
        return {"lib": lib, "case": case, "scale": scale, "error": error[0]}
    return json.loads(lines[-1])


def summarize(runs: list[dict]) -> list[dict]:
    """Per case and library: the median run by samples/s, with the spread of all runs."""
    rows = []
    for case in CASES:
        for lib in LIBS:
            mine = [r for r in runs if r["case"] == case and r["lib"] == lib]
            ok = sorted((r for r in mine if "error" not in r), key=lambda r: r["samples_per_s"])
            if not mine:
                continue
            if not ok:
                rows.append({"case": case, "lib": lib, "error": mine[0]["error"], "runs": len(mine)})
                continue
            median = dict(ok[(len(ok) - 1) // 2])
            median["samples_per_s"] = statistics.median(r["samples_per_s"] for r in ok)
            median["samples_per_s_all"] = [r["samples_per_s"] for r in ok]
            median["runs"] = len(mine)
            median["failed_runs"] = len(mine) - len(ok)
            rows.append(median)
    for row in rows:
        peer = next((r for r in rows if r["case"] == row["case"] and r["lib"] == "torch_rechub"), None)
        if row["lib"] == "trainhub" and peer and "error" not in peer and "error" not in row:
            row["ratio"] = row["samples_per_s"] / peer["samples_per_s"]
    return rows


def quality_text(q: dict) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in q.items())


def _dates_note(runs: list[dict], meta: dict) -> str:
    """When a subset run replaced only its own cases, which cases were measured when."""
    fallback = (meta.get("earlier") or {}).get("date", "an earlier run")
    by_date: dict[str, list[str]] = {}
    for run in runs:
        cases = by_date.setdefault(run.get("date", fallback), [])
        if run["case"] not in cases:
            cases.append(run["case"])
    if len(by_date) < 2:
        return ""
    parts = [f"{', '.join(cases)} at {date}" for date, cases in sorted(by_date.items(), reverse=True)]
    return " Cases measured at different times: " + "; ".join(parts) + " (the load average is the latest run's)."


def table(summary: list[dict], meta: dict, runs: list[dict] = ()) -> str:
    m = meta["machine"]
    load = f"load average {m['loadavg_start'][0]} at start, {m.get('loadavg_end', ['?'])[0]} at end"
    # At the start the load is other work's; at the end it includes the benchmark's own torch
    # threads (about one per core), so only a load beyond that counts against the machine.
    nproc = m["nproc"] or 1
    if m["loadavg_start"][0] > 0.5 * nproc or m.get("loadavg_end", [0])[0] > nproc + 0.5:
        load = f"**taken on a loaded machine** ({load}): timings are noisy"
    lines = [
        f"Machine: {m['nproc']} cores, {m['cpu']}; torch {meta.get('torch', '?')}, {m['torch_threads']} torch threads; "
        f"{meta['date']}; {load}; scale {meta['scale']}; median of {meta['repeats']} runs per library, "
        "libraries alternating run by run, each run its own process." + _dates_note(list(runs), meta),
        "",
        "| case | library | samples/s (median) | trainhub / Torch-RecHub | fit s | quality | peak RSS MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in summary:
        lib = LIBS[row["lib"]]
        if "error" in row:
            lines.append(f"| {row['case']} | {lib} | failed | | | {row['error'][:120]} | |")
            continue
        ratio = f"{row['ratio']:.2f}x" if "ratio" in row else ""
        lines.append(f"| {row['case']} | {lib} | {row['samples_per_s']:,.0f} | {ratio} | {row['fit_s']:.1f} "
                     f"| {quality_text(row['quality'])} | {row['peak_rss_mb']} |")
    inference = [r for r in summary if r["case"] == "deepfm" and "error" not in r]
    if inference:
        lines += ["", f"Inference, DeepFM (case `deepfm`), `trainer.evaluate` / `trainer.predict` over the "
                  f"{inference[0]['val_rows']:,} validation rows, batch 2048:", "",
                  "| library | `evaluate` rows/s | `predict` rows/s |", "|---|---|---|"]
        lines += [f"| {LIBS[r['lib']]} | {r['eval_rows_per_s']:,.0f} | {r['predict_rows_per_s']:,.0f} |"
                  for r in inference]
    lines += ["", "Cases:", ""] + [f"- `{name}`: {text}" for name, text in CASES.items()]
    if meta.get("notes"):  # hand-written remarks kept in speed.json (e.g. about a partial run)
        lines += ["", "Notes:", ""] + [f"- {note}" for note in meta["notes"]]
    if meta.get("text"):
        lines += ["", "### Text trainer (trainhub only; `bench/text_speed.py`)", "", meta["text"]["markdown"]]
    return "\n".join(lines) + "\n"


def update_readme(text: str) -> None:
    readme = README.read_text()
    if MARK_START not in readme or MARK_END not in readme:
        print(f"[bench] {README} has no {MARK_START} / {MARK_END} markers; README left alone", file=sys.stderr)
        return
    head, rest = readme.split(MARK_START, 1)
    tail = rest.split(MARK_END, 1)[1]
    README.write_text(f"{head}{MARK_START}\n{text}{MARK_END}{tail}")


def run_text(scale: float, repeats: int, out_dir: Path) -> dict | None:
    """The text trainer's own overhead and length-grouped batching (``bench/text_speed.py``)."""
    out = out_dir / "text_speed.json"
    cmd = [sys.executable, str(HERE / "text_speed.py"), "--scale", str(scale), "--repeats", str(repeats),
           "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0 or not out.exists():
        print(f"[bench] text speed failed (exit {proc.returncode})", file=sys.stderr)
        return None
    return {"markdown": json.loads(out.read_text())["markdown"], "file": str(out.relative_to(ROOT))}


def peer_python() -> str | None:
    given = os.environ.get("TORCH_RECHUB_PYTHON")
    if given:
        return given
    local = HERE / ".rechub-venv" / "bin" / "python"
    return str(local) if local.exists() else None


def render() -> int:
    """``python bench/run.py --render``: rebuild speed.md and README's section from speed.json."""
    data = json.loads((RESULTS / "speed.json").read_text())
    text = table(summarize(data["runs"]), data["meta"])
    (RESULTS / "speed.md").write_text(text)
    update_readme(text)
    print(text)
    return 0


def main() -> int:
    if "--render" in sys.argv[1:]:
        return render()
    cases = [c.strip() for c in os.environ.get("BENCH_CASES", ",".join([*CASES, "text"])).split(",") if c.strip()]
    unknown = [c for c in cases if c not in CASES and c != "text"]
    if unknown:
        print(f"unknown BENCH_CASES {unknown}; choose from {list(CASES)}", file=sys.stderr)
        return 2
    scale = float(os.environ.get("BENCH_SCALE", "1"))
    repeats = int(os.environ.get("BENCH_REPEATS", "3"))
    runners = [("trainhub", sys.executable)]
    peer = peer_python()
    if peer:
        runners.append(("torch_rechub", peer))
    else:
        print("[bench] no Torch-RecHub: run `make bench` (it makes bench/.rechub-venv) or set TORCH_RECHUB_PYTHON",
              file=sys.stderr)
    import torch

    meta = {"machine": machine(), "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "scale": scale, "repeats": repeats, "torch": torch.__version__, "cases": cases}
    out_dir = RESULTS if scale == 1 else RESULTS / "tmp"
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "speed.json"
    earlier: list[dict] = []
    if scale == 1 and json_path.exists() and set(cases) != set(CASES) | {"text"}:
        # a subset replaces only its own cases; the others keep their earlier runs and metadata
        old = json.loads(json_path.read_text())
        earlier = [r for r in old.get("runs", []) if r["case"] not in cases]
        meta["earlier"] = old.get("meta")
        meta["text"] = old.get("meta", {}).get("text")
    runs: list[dict] = []

    def save() -> str:
        """Write the results so far: an interrupted run still leaves every finished case behind."""
        meta["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
        summary = summarize(earlier + runs)
        json_path.write_text(json.dumps({"meta": meta, "summary": summary, "runs": earlier + runs}, indent=1) + "\n")
        text = table(summary, meta, earlier + runs)
        (out_dir / "speed.md").write_text(text)
        if scale == 1:
            update_readme(text)
        return text

    for case in (c for c in cases if c in CASES):
        for repeat in range(repeats):
            for lib, python in runners:  # alternate: th, rh, th, rh, ...
                result = run_once(python, lib, case, scale)
                result["repeat"], result["date"] = repeat, meta["date"]
                runs.append(result)
                if "error" not in result:
                    print(f"[bench] {case:11s} {lib:13s} run {repeat}: {result['samples_per_s']:9,.0f} samples/s "
                          f"fit {result['fit_s']:.1f}s {quality_text(result['quality'])}", file=sys.stderr, flush=True)
                save()
    if "text" in cases:
        meta["text"] = run_text(scale, repeats, out_dir)
    print(save())
    return 0


if __name__ == "__main__":
    sys.exit(main())
