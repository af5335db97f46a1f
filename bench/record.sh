#!/usr/bin/env bash
# Reproduces the measurements in BENCHMARKS.md on an otherwise idle machine: the native roofline
# harness, then the Python comparison at 2 threads and 1 thread (float32) and at 2 threads
# (float64). Raw outputs go to bench/results/ (or the folder given as the first argument).
# Needs fastloss installed (pip install .) and, for the peers, torch==2.13.0 (jax, scipy optional).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-bench/results}
mkdir -p "$out"

cmake -S . -B build/bench -DFASTLOSS_BUILD_BENCH=ON -DFASTLOSS_BUILD_PYTHON=OFF \
      -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build build/bench -j2 > /dev/null
./build/bench/bench/native/fastloss_bench --isa avx2,avx512 --csv "$out/native.csv" | tee "$out/native.txt"

python -m fastloss.bench --threads 2 --budget 1 --csv "$out/python_f32_t2.csv" \
    --plot "$out/python_f32_t2.png" | tee "$out/python_f32_t2.txt"
python -m fastloss.bench --threads 1 --peers torch --budget 0.5 --csv "$out/python_f32_t1.csv" \
    | tee "$out/python_f32_t1.txt"
python -m fastloss.bench --threads 2 --dtype float64 --peers torch --budget 0.5 \
    --csv "$out/python_f64_t2.csv" | tee "$out/python_f64_t2.txt"
python -m fastloss.bench --ops cross_entropy,log_softmax,logsumexp,kl_div,binary_cross_entropy_with_logits \
    --shapes 4096x32000 --dtype float32,float16,bfloat16 --threads 2 --peers torch \
    --csv "$out/python_half_t2.csv" | tee "$out/python_half_t2.txt"
