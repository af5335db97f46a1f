#!/usr/bin/env bash
# Prints instruction-set variants to leave out of a build, as the ;-list FASTLOSS_SKIP_ISAS takes
# (dispatch.cpp's checks, read from /proc/cpuinfo):
#   scripts/unrunnable_isas.sh                  those this machine cannot run (empty: none)
#   scripts/unrunnable_isas.sh --all-but-best   those, and every runnable one below the best
# Builds that only run here (the sanitizer build, the benchmark smoke build) leave them out: no
# code could reach the unrunnable ones, dispatch only reaches the best one unless a test forces
# another (FASTLOSS_CPU_CAPABILITY), and their compile time is most of such a build.
set -euo pipefail
case "${1:-}" in
  "" | --all-but-best) ;;
  *) echo "usage: scripts/unrunnable_isas.sh [--all-but-best]" >&2; exit 2 ;;
esac
best=avx512
for flag in avx512f avx512bw avx512vl avx512dq; do
  grep -qw "$flag" /proc/cpuinfo || best=avx2
done
for flag in avx2 fma f16c; do
  grep -qw "$flag" /proc/cpuinfo || best=scalar
done
case "$best:${1:-}" in
  avx512:) echo "" ;;
  avx512:--all-but-best) echo "avx2" ;;
  avx2:*) echo "avx512" ;;
  scalar:*) echo "avx2;avx512" ;;
esac
