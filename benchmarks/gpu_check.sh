#!/usr/bin/env bash
# GPU checks in one call: the training-speed benchmark on CUDA, then a real evolution whose
# workers train on the GPU (synthetic data at CIFAR size). Writes logs under ${OUT:-/tmp/evo-gpu}.
set -uo pipefail
OUT=${OUT:-/tmp/evo-gpu}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c "import torch, platform; print('torch', torch.__version__, 'python', platform.python_version(), torch.cuda.get_device_name(0))" | tee -a "$OUT/gpu.txt"

echo "== training speed (cuda)"
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
print(f"children {len(recs)} on {dev}; training images/s per child: median {statistics.median(ips):.0f}, max {max(ips):.0f}")
PY
