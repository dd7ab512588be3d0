#!/bin/sh
# The install steps of the container image, shared by the Dockerfile and by the test that runs
# them in a fresh virtual environment (tests/integration/install/test_image_install.py).
#
# Usage: hack/install_image.sh SOURCE_DIR PREFIX
#   1. generates the CSI gRPC stubs from the pinned csi.proto with a throw-away build environment
#      (grpcio-tools; needs `go` on PATH to fetch the proto through the Go module cache), and the
#      freeze agent's stubs from our own freeze.proto;
#   2. installs the package, not editable, into the virtual environment PREFIX.
set -eu
src=$1
prefix=$2
python=${PYTHON:-python3}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
"$python" -m venv "$scratch/build"
"$scratch/build/bin/pip" install --quiet --no-cache-dir --disable-pip-version-check "grpcio-tools>=1.85.1,<2"
(cd "$src" && "$scratch/build/bin/python" hack/generate_csi_stubs.py)
(cd "$src" && "$scratch/build/bin/python" hack/generate_freeze_stubs.py)
"$python" -m venv "$prefix"
"$prefix/bin/pip" install --quiet --no-cache-dir --disable-pip-version-check "$src"
