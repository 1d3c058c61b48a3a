#!/usr/bin/env bash
# Multi-node check on one machine: the same training as one node with 2 processes and as 2 nodes
# with 1 process each (c10d rendezvous on 127.0.0.1), then a comparison of their metrics.
#   bench/multinode.sh [PYTHON]        (default: python; run from the repository root)
set -euo pipefail
PY=${1:-python}
OUT=${OUT:-$(mktemp -d)}
PORT=${PORT:-$((20000 + RANDOM % 20000))}
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}" OMP_NUM_THREADS=1 TRAINHUB_DIST_TIMEOUT=${TRAINHUB_DIST_TIMEOUT:-120}

echo "[multinode] one node, 2 processes"
"$PY" -m torch.distributed.run --standalone --nproc_per_node=2 bench/ddp_compare.py "$OUT/one_node.json"

echo "[multinode] two nodes, 1 process each (127.0.0.1:$PORT)"
for NODE in 0 1; do
  "$PY" -m torch.distributed.run --nnodes=2 --node_rank=$NODE --nproc_per_node=1 --rdzv_backend=c10d \
    --rdzv_endpoint=127.0.0.1:$PORT --rdzv_id=trainhub-multinode "bench/ddp_compare.py" "$OUT/two_nodes.json" &
  PIDS[$NODE]=$!
done
wait "${PIDS[0]}" && wait "${PIDS[1]}"

echo "[multinode] one process (combined batch), for reference"
env -u WORLD_SIZE "$PY" bench/ddp_compare.py "$OUT/one_process.json"

"$PY" - "$OUT" <<'PYEOF'
import json, math, sys
out = sys.argv[1]
one, two, single = (json.load(open(f"{out}/{n}.json")) for n in ("one_node", "two_nodes", "one_process"))

def flat(run):
    vals = {}
    for name in ("ctr", "match"):
        for i, h in enumerate(run[name]["history"]):
            vals.update({f"{name}/epoch{i}/{k}": v for k, v in h.items()})
    vals.update({f"ctr/test/{k}": v for k, v in run["ctr"]["test"].items()})
    return vals

a, b, c = flat(one), flat(two), flat(single)
assert a.keys() == b.keys(), (sorted(a.keys() ^ b.keys()))
worst = max(abs(a[k] - b[k]) for k in a)
print(f"{'metric':38s} {'1 node x 2':>12s} {'2 nodes x 1':>12s} {'1 process':>12s}")
for k in a:
    if "val/" in k or "/test/" in k or "train/loss" in k:
        print(f"{k:38s} {a[k]:12.6f} {b[k]:12.6f} {c.get(k, math.nan):12.6f}")
print(f"[multinode] largest |one node - two nodes| difference: {worst:.3g}")
sys.exit(0 if worst <= 1e-6 else 1)
PYEOF
