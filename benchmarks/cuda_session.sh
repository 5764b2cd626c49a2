#!/usr/bin/env bash
# One GPU session in one command (a lent GPU machine is held for minutes, not hours):
#   1. the suite's CUDA tests (every test named *cuda*: each registered model moved with
#      .to("cuda") against the CPU, the fused losses, REARM's attention kernels, sampling,
#      evaluation, propagation, AMP), while
#   2. REARM trains on a real dataset in the background: 3 seeds with the library defaults
#      (lr 1e-3) and 3 with the authors' lr 5e-5 (benchmarks/RESULTS.md), until REARM_S seconds;
#   3. benchmarks/peers.py --device cuda against the MMRec toolbox (when MMREC is given);
#   4. LightGCN at Elec scale on CUDA (benchmarks/scaling.py).
# Everything it prints and the run folders land in $OUT (default ./cuda-session).
#
#   OUT=dir REAL=path/to/tiktok MMREC=path/to/MMRec bash benchmarks/cuda_session.sh
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-cuda-session}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 MMGRAPH_CACHE=${MMGRAPH_CACHE:-/tmp/mmgraph-cache}
REARM_S=${REARM_S:-300}
W=$OUT/work; mkdir -p "$W"
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }

el "machine"; nvidia-smi -L; python3 -c "import torch, torch_geometric as g; print('torch', torch.__version__, 'PyG', g.__version__, torch.cuda.get_device_name())"

pids=()
if [ -n "${REAL:-}" ]; then
  el "REARM on $REAL in the background (6 runs, until ${REARM_S} s)"
  for s in 0 1 2; do
    for v in default lr5e-5; do
      extra=(); [ $v = lr5e-5 ] && extra=(--lr 5e-5)
      timeout "$REARM_S" python3 -m mmgraph.cli train --model rearm --data "$REAL" --seed $s \
        --device cuda --threads 2 --progress false --out-dir "$W/rearm-$v-s$s" "${extra[@]}" \
        > "$W/rearm-$v-s$s.log" 2>&1 &
      pids+=($!)
    done
  done
fi

el "CUDA tests"
timeout 240 python3 -m pytest -q -rs -p no:cacheprovider tests -k cuda 2>&1 | tee "$OUT/pytest-cuda.log" | tail -25

if [ ${#pids[@]} -gt 0 ]; then el "waiting for REARM"; wait "${pids[@]}"; fi
python3 - "$W" <<'PY' | tee "$OUT/rearm.md"
import json, pathlib, statistics, sys
rows = {}
for d in sorted(pathlib.Path(sys.argv[1]).glob("rearm-*")):
    f = d / "metrics.jsonl"
    if not d.is_dir() or not f.is_file():
        continue
    h = [json.loads(l) for l in f.read_text().splitlines() if l.strip()]
    h = [r for r in h if "valid" in r]
    if not h:
        continue
    b = max(h, key=lambda r: r["valid"]["recall@20"])
    done = (d / "results.json").is_file()
    print(f"{d.name}: epochs {len(h)} ({'stopped by patience' if done else 'cut by time'}), "
          f"best valid R@20 {b['valid']['recall@20']:.4f} at epoch {b['epoch']}, test R@20 "
          f"{b['test']['recall@20']:.4f}, s/epoch {statistics.median(r['train_seconds'] for r in h):.2f}")
    print("   valid R@20: " + " ".join(f"{r['valid']['recall@20']:.4f}" for r in h))
    rows.setdefault(d.name.rsplit("-s", 1)[0], []).append(b["test"]["recall@20"])
for k, v in rows.items():
    sd = statistics.stdev(v) if len(v) > 1 else float("nan")
    print(f"{k}: test R@20 {statistics.mean(v):.4f} +- {sd:.4f} over {len(v)} seeds")
PY

if [ -n "${MMREC:-}" ]; then
  el "peers on CUDA"
  timeout 130 python3 benchmarks/peers.py --mmrec "$MMREC" --device cuda --models lightgcn,freedom \
    --epochs 3 --threads 2 --json "$OUT/peers-cuda.json" 2>&1 | tee "$OUT/peers-cuda.log" | tail -8
fi

el "LightGCN at Elec scale on CUDA"
timeout 100 python3 benchmarks/scaling.py --sizes elec --models lightgcn --device cuda \
  --image-dim 64 --text-dim 32 --no-write --fresh --json "$OUT/scaling-elec-cuda.json" 2>&1 \
  | tee "$OUT/scaling-elec-cuda.log" | tail -8
el "done"
