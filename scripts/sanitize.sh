#!/usr/bin/env bash
# Builds fastloss with AddressSanitizer + UndefinedBehaviorSanitizer (gcc) into its own virtual
# environment and build directory, then runs the whole test suite under it:
#   scripts/sanitize.sh [pytest arguments]
# Any out-of-bounds access, use-after-free or undefined behaviour in the C++ code aborts the run
# with a report (non-zero exit). The regular build and environment are not touched.
set -euo pipefail
cd "$(dirname "$0")/.."

python="${PYTHON:-python3}"
venv=build/asan-venv
if [ ! -x "$venv/bin/pytest" ]; then
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  # The build tools are installed here (no build isolation) so the flags below reach CMake.
  # torch and scikit-learn are left out on purpose: their tests skip, and torch's own code would
  # run under our ASan runtime without being instrumented for it. dask is pure Python and drives
  # our kernels block by block (its process-worker test skips here, see test_dask_cluster.py).
  # The lower bounds keep a matching dask and distributed (see the peers in .ci/run).
  "$venv/bin/python" -m pip install --quiet numpy pytest hypothesis threadpoolctl ml_dtypes \
    "scikit-build-core>=0.10" "pybind11>=2.13" cmake ninja "dask[array]>=2024.1.0" "distributed>=2024.1.0"
fi

# -O1 keeps the run fast enough while keeping stack traces readable; -g1 gives the reports their
# file:line (line tables) without the rest of the debug information, which cost a third of the
# compile time; -fno-sanitize-recover makes every UBSan finding fatal; _GLIBCXX_ASSERTIONS adds
# bounds checks to std::vector and friends.
# float-cast-overflow (NaN or out-of-range float to integer) is not part of gcc's "undefined".
# -fno-sanitize-address-use-after-scope: ASan's check that a local is not used after its scope
# ends poisons and unpoisons every local whose address is taken at each entry and exit of its
# scope. After the kernels' inlining those are the SIMD vectors of every inner loop, and the check
# made distillation.cpp take 184 s to compile against 78 s without it (gcc 12, scalar variant),
# the sanitizer build's critical path. Out-of-bounds accesses to the stack, the heap and globals
# are still caught; a pointer kept to a local past its scope is what goes unchecked.
san="-fsanitize=address,undefined,float-cast-overflow -fno-sanitize-address-use-after-scope"
san="$san -fno-sanitize-recover=all -fno-omit-frame-pointer"
# Only the scalar variant and the best one this machine runs are built (the one dispatch picks):
# under the sanitizers the compile time of each variant is the largest part of this script, and
# of CI's. The others run their tests in CI's other steps, without the sanitizers.
skip="$(bash scripts/unrunnable_isas.sh --all-but-best)"
echo "sanitizer build leaves out: ${skip:-nothing}"
"$venv/bin/python" -m pip install --quiet --no-build-isolation --force-reinstall --no-deps \
  -Cbuild-dir=build/asan \
  -Ccmake.define.FASTLOSS_SKIP_ISAS="$skip" \
  -Ccmake.build-type=RelWithDebInfo \
  -Cinstall.strip=false \
  -Ccmake.define.CMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -D_GLIBCXX_ASSERTIONS $san" \
  -Ccmake.define.CMAKE_SHARED_LINKER_FLAGS="$san" \
  .

# The ASan runtime must be loaded before Python (which is not instrumented). Leak checking is off:
# CPython keeps its interned objects alive at exit, which LeakSanitizer reports as leaks.
# Reports go to files as well as being fatal: pytest captures a test's stderr, and a process that
# dies in a test never shows it.
reports=build/sanitizer-reports
rm -rf "$reports" && mkdir -p "$reports"
# libstdc++ is preloaded too: Python does not link it, and ASan's __cxa_throw interceptor must find
# the real one when it starts ("CHECK failed: ... real___cxa_throw != 0" on the first C++ throw).
export LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libstdc++.so)"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:log_path=$PWD/$reports/asan"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$PWD/$reports/ubsan"
# Prove the instrumented module is the one under test: ASan's symbols are linked into it.
"$venv/bin/python" - <<'PY'
import fastloss._core as core
data = open(core.__file__, "rb").read()
assert b"__asan_" in data and b"__ubsan_" in data, f"{core.__file__} is not instrumented"
print("sanitized build:", core.__file__)
PY
status=0
"$venv/bin/python" -m pytest tests -p no:cacheprovider "$@" || status=$?
# Zero reports is the bar, whatever pytest said.
if [ -n "$(ls -A "$reports")" ]; then
  cat "$reports"/*
  echo "sanitizer reports in $reports" >&2
  exit 1
fi
exit "$status"
