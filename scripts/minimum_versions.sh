#!/usr/bin/env bash
# Runs the test suite against the oldest versions of numpy and ml_dtypes that pyproject.toml
# declares (`numpy>=X`, `ml_dtypes>=Y`), so that the lower bounds stay true:
#   scripts/minimum_versions.sh WHEEL [pytest arguments]
# WHEEL is a built fastloss wheel (scripts/build_wheel.sh); it is installed without its
# dependencies into a fresh virtual environment holding exactly those versions. A declared bound
# that does not install on this Python (no wheel for it) fails the run with that message: raise
# the bound to the oldest version that installs and passes.
set -euo pipefail
cd "$(dirname "$0")/.."

wheel="${1:?usage: scripts/minimum_versions.sh WHEEL [pytest arguments]}"
shift
python="${PYTHON:-python3}"

# The lower bounds, read from pyproject.toml's [project] dependencies and the test extra.
read -r numpy_min ml_dtypes_min < <("$python" - <<'PY'
import re
text = open("pyproject.toml").read()
def lower_bound(name):
    found = re.findall(rf'"{name}>=([0-9][0-9.]*)"', text)
    if not found:
        raise SystemExit(f"pyproject.toml declares no lower bound for {name}")
    return min(found, key=lambda v: tuple(int(p) for p in v.split(".")))
print(lower_bound("numpy"), lower_bound("ml_dtypes"))
PY
)
echo "oldest declared versions: numpy $numpy_min, ml_dtypes $ml_dtypes_min"

venv=build/minimum-versions-venv
rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
pins=("numpy==$numpy_min" "ml_dtypes==$ml_dtypes_min")
if ! "$venv/bin/python" -m pip install --quiet --only-binary=:all: "${pins[@]}"; then
  echo "numpy==$numpy_min with ml_dtypes==$ml_dtypes_min does not install on $("$python" --version):" \
       "raise the lower bounds in pyproject.toml" >&2
  exit 1
fi
# The test tools and the optional peers, without letting them move the pinned versions.
# (scikit-learn is left out: its releases need newer numpy, and only the training example's test,
# which skips without it, uses it. dask is left out likewise: its recent releases need a newer
# numpy than the oldest declared one, and tests/test_dask*.py skip without it; the other three
# runs cover them.)
"$venv/bin/python" -m pip install --quiet "pytest>=7" "hypothesis>=6" "threadpoolctl>=3" \
  torch==2.13.0 "${pins[@]}"
"$venv/bin/python" -m pip install --quiet --no-deps "$wheel"
"$venv/bin/python" - "${pins[@]}" <<'PY'
import sys
import ml_dtypes
import numpy
got = [f"numpy=={numpy.__version__}", f"ml_dtypes=={ml_dtypes.__version__}"]
assert got == sys.argv[1:], f"installed {got}, expected {sys.argv[1:]}"
print("testing with", ", ".join(got))
PY
"$venv/bin/python" -m pytest "$@"
