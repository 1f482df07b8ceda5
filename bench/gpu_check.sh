#!/usr/bin/env bash
# The GPU check for a session whose `device` tool has a GPU (this one machine, a single call):
#   bash bench/gpu_check.sh [OUT]        # OUT: default $OUT (the device tool's folder), else runs/gpu_check
# 1. the demo's llama in bf16 on CUDA: ms/step, tokens/s and MFU per width (bench/gpu_check.py, part 1);
# 2. a one-phase demo study packed 4 runs per GPU by the local executor (part 2);
# 3. the torchrun + FSDP2 command-objective example on the GPU (NCCL, one process per run).
# Everything is offline (the stdlib corpus); about 5 minutes on an H200. Results: OUT/gpu_check.json, OUT/*.log.
set -uo pipefail
out="${1:-${OUT:-runs/gpu_check}}"
mkdir -p "$out"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/nvidia-smi.log"
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())"
timeout 360 python bench/gpu_check.py --out "$out" 2>&1 | tee "$out/gpu_check.log"
sed -e 's/--nproc_per_node=2/--nproc_per_node=1/' examples/torchrun_fsdp_study.yaml > "$out/torchrun_study.yaml"
cp examples/torchrun_train.py "$out/"
timeout 180 python -m lrtransfer.cli sweep "$out/torchrun_study.yaml" --out "$out/torchrun" --runs-per-gpu 4 \
  2>&1 | tail -n 5 | tee "$out/torchrun.log"
