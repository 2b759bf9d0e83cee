#!/usr/bin/env bash
# GPU checks in one call (about 7 minutes on an H200), logs and JSON under ${OUT:-/tmp/evo-gpu}:
#   1. the tests that need a GPU (a captured CUDA-graph step trains as the eager step does);
#   2. images/s of evo's trainer against the fastest hand-written loop (CUDA graph, channels_last, bf16)
#      for the hand-designed 5-conv net, two evolved-like DNAs and the seed (benchmarks/gpu_speed.py);
#   3. children per GPU-hour at the start of an evolution with 1, 2, 4, 8 children per GPU, against
#      today's one eager child per GPU (benchmarks/children_per_gpu.py).
# FULL=1 adds the earlier checks: evo's trainer against the tutorial's DataLoader loop, and a real
# evolution with two workers sharing the GPU.
set -uo pipefail
OUT=${OUT:-/tmp/evo-gpu}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c "import torch, platform; print('torch', torch.__version__, 'python', platform.python_version(), torch.cuda.get_device_name(0))" | tee -a "$OUT/gpu.txt"
date -u +%FT%TZ | tee -a "$OUT/gpu.txt"

echo "== 1. GPU tests: graph and eager steps"
timeout 120 python3 -m pytest -q -p no:cacheprovider tests/test_train.py -k "graph or eager or cpu_trains" 2>&1 \
    | tee "$OUT/gpu_tests.log" | tail -5

echo "== 2. images/s: evo's trainer vs the hand-written loop"
timeout ${SPEED_S:-200} python3 benchmarks/gpu_speed.py --batches 50,500 --images ${SPEED_IMAGES:-60000} \
    --repeats ${SPEED_REPEATS:-1} --json "$OUT/gpu_speed.json" 2>&1 | tee "$OUT/gpu_speed.log" | tail -20

echo "== 3. children per GPU-hour, seed-sized children"
timeout ${CHILDREN_S:-330} python3 benchmarks/children_per_gpu.py --per-gpu ${PER_GPU:-1,2,4,8} --baseline \
    --seconds ${CHILDREN_WINDOW_S:-30} --steps ${CHILDREN_STEPS:-400} --json "$OUT/children_per_gpu.json" 2>&1 \
    | tee "$OUT/children_per_gpu.log" | tail -10

if [ "${FULL:-0}" = 1 ]; then
  echo "== training speed against the DataLoader loop (cuda)"
  timeout 300 python3 benchmarks/train_speed.py --device cuda --repeats 3 --json "$OUT/train_speed_cuda.json" 2>&1 | tee "$OUT/train_speed_cuda.log" | tail -25

  echo "== evolution on the GPU: 2 workers sharing it, synthetic 3x32x32, 400 steps per child"
  rm -rf /tmp/gpop
  python3 -m evo init /tmp/gpop --dataset-opt image_size=32 -P 10 --steps-per-child 400 --max-individuals 60 --lock flock >/dev/null
  start=$(date +%s.%N)
  timeout 240 bash -c 'python3 -m evo worker /tmp/gpop > /tmp/gpop/w0.log 2>&1 & python3 -m evo worker /tmp/gpop > /tmp/gpop/w1.log 2>&1 & wait'
  echo "wall $(python3 -c "import time; print(round(time.time() - $start, 1))") s"
  tail -3 /tmp/gpop/w0.log
  python3 -m evo status /tmp/gpop | tee "$OUT/gpu_evolution_status.txt"
  python3 -m evo top /tmp/gpop -n 5 | tee -a "$OUT/gpu_evolution_status.txt"
  python3 - <<'PY' | tee "$OUT/gpu_child_speed.txt"
import json, glob, statistics
recs = [json.load(open(p)) for p in glob.glob("/tmp/gpop/alive/*/fitness.json") + glob.glob("/tmp/gpop/dead/*/*/fitness.json")]
ips = [r["images_per_s"] for r in recs if r.get("images_per_s")]
dev = {r.get("device") for r in recs}
steps = {r.get("train_step") for r in recs}
print(f"children {len(recs)} on {dev}, steps {steps}; training images/s per child: median {statistics.median(ips):.0f}, max {max(ips):.0f}")
PY
fi
