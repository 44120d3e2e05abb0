#!/usr/bin/env bash
# The checks that need a CUDA GPU, as one script: the CUDA tests, the training benchmark at
# full resolution for all four models, and the Full preset trained on a generated demo lot.
#
#   tests/benchmarks/gpu_check.sh [OUT_FOLDER] [PART...]
#   PART: env tests bench throughput dist train recipes
#
# 'throughput' measures the GPU path step by step (fp32 eager, + bf16, + channels-last,
# + fused AdamW, + torch.compile) for designed_resnet, resnet18 and resnet50 at 267x275 with
# TFLOP/s and % of the dense bf16 peak (goal on H100/H200: resnet18 and resnet50 >= 25 %),
# then times scoring (goal: 30,000 images <= 1 s with designed_resnet).
# 'dist' trains and scores with --devices N on N GPUs (NCCL; N = all GPUs, at most 8) and
# scores again in one process (the printed top scores must match); with a single GPU it runs the CPU/gloo tests and
# says that the NCCL path was not exercised.
#
# 'recipes' trains the Full preset on every demo style (bench_recipes.py, 3,000 and 10,000
# labelled images, seeds 0-2; RECIPE_SEEDS / RECIPE_SIZES change that) and prints the issue-8
# goals as reached or not.
#
# Runs with whatever python3 has torch (no install: it puts the checkout on PYTHONPATH), so
# it also runs on a GPU machine that has PyTorch but not the GUI's packages. Logs go to
# OUT_FOLDER (default /tmp/diesight-gpu-check). TRAIN_MODELS picks the models to train (default: all
# four), TRAIN_SECONDS caps each training run (Ctrl-C semantics:
# the run stops cleanly and keeps its best checkpoint).
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${1:-${TMPDIR:-/tmp}/diesight-gpu-check}; shift || true
parts=${*:-env tests throughput dist bench train}
mkdir -p "$out"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
export DIESIGHT_HOME=${DIESIGHT_HOME:-$(mktemp -d)}
py=${PYTHON:-python3}
diesight() { "$py" -c 'import sys; from core.cli import main; sys.exit(main(sys.argv[1:]))' "$@"; }

for part in $parts; do
  echo "=== $part ($(date +%T))"
  case $part in
    env)
      nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$out/env.txt"
      "$py" -c 'import sys, torch, torchvision; print(sys.version.split()[0], "torch",
torch.__version__, "torchvision", torchvision.__version__, torch.cuda.get_device_name())' \
        2>&1 | tee -a "$out/env.txt" ;;
    tests)
      timeout 240 "$py" -m pytest -q -p no:cacheprovider -o addopts="" \
        tests/core/test_cuda.py tests/core/test_models.py tests/core/test_device.py \
        2>&1 | tee "$out/tests.txt" ;;
    throughput)
      data=$out/demo3k
      [ -d "$data" ] || diesight demo-data "$data" --n 3000 2>&1 | tail -1
      timeout ${THROUGHPUT_SECONDS:-420} "$py" tests/benchmarks/bench_train.py --device cuda \
        --data "$data" --image-size 267 --batch-size ${THROUGHPUT_BATCH:-128} --steps 40 \
        --repeats 1 --ladder --score --models ${THROUGHPUT_MODELS:-resnet18 resnet50 designed_resnet} \
        2>&1 | tee "$out/throughput.txt" ;;
    dist)
      gpus=$(nvidia-smi -L 2>/dev/null | wc -l); gpus=$(( gpus > 8 ? 8 : gpus ))
      if [ "$gpus" -lt 2 ]; then
        echo "one GPU: the NCCL path of --devices was not exercised; running the gloo tests" \
          | tee "$out/dist.txt"
        timeout ${DIST_SECONDS:-400} "$py" -m pytest -q -p no:cacheprovider -o addopts="" \
          tests/core/test_distributed.py 2>&1 | tee -a "$out/dist.txt"
      else
        data=$out/demo3k
        [ -d "$data" ] || diesight demo-data "$data" --n 3000 2>&1 | tail -1
        timeout ${DIST_SECONDS:-400} bash -c "
          $(declare -f diesight); py=$py
          diesight train '$data' --devices $gpus --model resnet18 --image-size 267 \
            --epochs 2 --per-class 1500 --batch-size $((64 * gpus)) --precision bf16 &&
          diesight score '$data' --run latest --devices $gpus --top 3 &&
          diesight score '$data' --run latest --top 3" 2>&1 | tee "$out/dist.txt"
      fi ;;
    bench)
      timeout ${BENCH_SECONDS:-300} "$py" tests/benchmarks/bench_train.py --device cuda \
        --image-size 267 --repeats 2 --workers 8 --steps 80 2>&1 | tee "$out/bench.txt" ;;
    train)
      data=$out/demo10k
      [ -d "$data" ] || diesight demo-data "$data" --n ${DEMO_N:-10000} 2>&1 | tail -3
      for model in ${TRAIN_MODELS:-designed_resnet stratified resnet18 resnet50}; do
        timeout -s INT ${TRAIN_SECONDS:-150} "$py" -c \
          'import sys; from core.cli import main; sys.exit(main(sys.argv[1:]))' \
          train "$data" --model "$model" --image-size 267 --sampler B --per-class 5000 \
          --epochs 20 --batch-size 64 --lr 1e-3 --precision bf16 2>&1 \
          | tee "$out/train-$model.txt"
      done
      diesight score "$data" --run latest 2>&1 | tee "$out/score.txt"
      diesight runs "$data" 2>&1 | tee "$out/runs.txt" ;;
    recipes)
      timeout ${RECIPE_SECONDS:-540} "$py" tests/benchmarks/bench_recipes.py --preset full \
        --device cuda --sizes ${RECIPE_SIZES:-3000,10000} --seeds ${RECIPE_SEEDS:-0,1,2} \
        --root "$out/recipes" 2>&1 | tee "$out/recipes.txt" ;;
  esac
done
