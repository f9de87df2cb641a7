#!/usr/bin/env bash
# The GPU figures of benchmarks/RESULTS.md in one go, for a machine lent for a short while:
# fine-tuning throughput/MFU/GPU busy, stage 0's trainings on the GPU Ray gives them (the check
# fails if a task computes elsewhere), small evaluation trials packed on one GPU, and evaluation
# batched against one prompt at a time and against the number of prompts. Each
# benchmark runs under its own time limit, so one that hangs leaves the others' figures.
#
#     bash benchmarks/gpu_checks.sh [LOG_FOLDER]    (default benchmarks/logs; one log each)
set -u
logs=${1:-benchmarks/logs}
mkdir -p "$logs"
export PYTHONUNBUFFERED=1

run() {
    local name=$1 limit=$2
    shift 2
    echo "== $name (limit ${limit} s): $*"
    local started=$SECONDS
    timeout "$limit" "$@" >"$logs/$name.log" 2>&1
    local status=$?
    grep -v '^\s*$' "$logs/$name.log" | tail -n 25
    echo "== $name: exit $status in $((SECONDS - started)) s"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'
run moclip 150 python3 benchmarks/bench_moclip.py --towers vit-b-32 --paths trimmed \
    --device cuda --batch-size 128 256 --frame-stride 1 --steps 15
run stage0 150 python3 benchmarks/bench_stage0.py --steps 200 --cpu-steps 5
run pack 200 python3 benchmarks/bench_pack.py --trials 8 --fractions 1 0.25 --prompts 64 \
    evaluation.ddim_steps=10
# clean prompts: TextAttack's dependencies are not on the lent machines; perturbing is CPU work
run cost 150 python3 benchmarks/bench_cost.py --device cuda --recipe none --parts 1 3 \
    --sample-batch 8 128 512
