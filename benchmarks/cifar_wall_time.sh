#!/usr/bin/env bash
# One evolution on real CIFAR-10 for a fixed wall time, as a user would run it: the training JPEGs through the
# imagefolder data set (45,000 train / 5,000 validation), WORKERS local workers of one thread each, then the
# best validation accuracy and the top-5 ensemble's (validation split). Prints a table; writes OUT/result.json.
#
#   bash benchmarks/cifar_wall_time.sh grow    [OUT] [MINUTES] [WORKERS]   # grow + function-preserving + fast
#   bash benchmarks/cifar_wall_time.sh paper   [OUT] [MINUTES] [WORKERS]   # tournament, paper inheritance/recipe
#
# DATA (default ../shared/data/cifar10-train-jpeg.tar.gz) is extracted once under OUT/data.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mode=${1:?usage: cifar_wall_time.sh grow|paper [OUT] [MINUTES] [WORKERS]}
out=${2:-runs/cifar-$mode}
minutes=${3:-30}
workers=${4:-2}
data=${DATA:-$here/../../shared/data/cifar10-train-jpeg.tar.gz}
mkdir -p "$out/data"
if [ ! -d "$out/data/train" ]; then tar xzf "$data" -C "$out/data"; fi
pop="$out/pop"
if [ ! -e "$pop/config.json" ]; then
  common=(--dataset imagefolder --data-root "$out/data/train" --dataset-opt image_size=32
          --dataset-opt val_fraction=0.1 --keep-checkpoints top:5 --check-data)
  case "$mode" in
    grow)
      # a small seed (3 convolutions, 16-32-64 channels) grown by WIDEN / DEEPEN / LARGER-FILTER children that
      # start computing their parent's function; each child 300 steps of the fast recipe at batch 100
      python3 - "$out/seed.json" <<'PY'
import json, sys
from evo.genome.real2017.dna import DNA, Edge, EdgeType, Vertex, VertexType
B, L, C = VertexType.BN_RELU, VertexType.LINEAR, EdgeType.CONV
convs = [(16, 1), (32, 2), (64, 2)]
dna = DNA(vertices=tuple(Vertex(i, B if i else L) for i in range(len(convs) + 1)),
          edges=tuple(Edge(100 + i, i, i + 1, C, ch, (3, 3), s) for i, (ch, s) in enumerate(convs)),
          input_vertex=0, output_vertex=len(convs), learning_rate=0.05, input_shape=(3, 32, 32),
          num_classes=10, next_id=200).validate()
json.dump({"seed_dna": dna.to_dict()}, open(sys.argv[1], "w"))
PY
      evo init "$pop" --config "$out/seed.json" "${common[@]}" -P 2 --strategy grow --grow-children 4 \
          --grow-survivors 2 --steps-per-child 300 --train-opt recipe=fast --train-opt batch_size=100 ;;
    paper)
      evo init "$pop" "${common[@]}" -P 20 --strategy tournament --steps-per-child 600 ;;
    *) echo "unknown mode $mode (grow or paper)" >&2; exit 2 ;;
  esac
fi
start=$(date +%s)
( while sleep 30; do echo "$(( $(date +%s) - start )) $(cut -d' ' -f1-3 /proc/loadavg)"; done ) > "$out/load.txt" &
sampler=$!
pids=()
for i in $(seq 1 "$workers"); do
  OMP_NUM_THREADS=1 evo worker "$pop" -q --time-limit $(( minutes * 60 )) > "$out/worker-$i.log" 2>&1 &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || true; done
kill "$sampler" 2>/dev/null || true
evo status "$pop" | head -12
evo top "$pop" -n 5
python3 - "$pop" "$out/result.json" "$minutes" "$workers" "$out/load.txt" <<'PY'
import json, sys, platform, os, datetime
from evo import analysis
from evo.bench.ensemble import ensemble_val_accuracy
pop, dest, minutes, workers, load = sys.argv[1:6]
h = analysis.load(pop)
top = [r for r in h.ranked() if h.checkpoint(r.id)][:5]
best = h.best()
ens = ensemble_val_accuracy(h, [r.id for r in top]) if top else None
loads = [float(l.split()[1]) for l in open(load) if l.strip()]
res = {"population": pop, "minutes": float(minutes), "workers": int(workers), "trained": len(h.individuals),
       "best_val_acc": best.fitness, "best_id": best.id, "best_params": best.params,
       "top5_ids": [r.id for r in top], "top5_ensemble_val_acc": ens,
       "load_avg_1min_mean": sum(loads) / len(loads) if loads else None,
       "machine": f"{platform.machine()}, {os.cpu_count()} cores", "date": datetime.date.today().isoformat()}
json.dump(res, open(dest, "w"), indent=1)
print(json.dumps(res, indent=1))
PY
