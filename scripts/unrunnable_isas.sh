#!/usr/bin/env bash
# Prints the instruction-set variants this machine cannot run, as the ;-list FASTLOSS_SKIP_ISAS
# takes (empty when it runs them all; dispatch.cpp's checks, read from /proc/cpuinfo). Builds that
# only run here (the sanitizer build, the benchmark smoke build) leave them out: no code could
# reach them, and their compile time is most of such a build.
set -euo pipefail
skip=""
for flag in avx512f avx512bw avx512vl avx512dq; do
  grep -qw "$flag" /proc/cpuinfo || skip="avx512"
done
for flag in avx2 fma f16c; do
  grep -qw "$flag" /proc/cpuinfo || skip="avx2;avx512"
done
echo "$skip"
