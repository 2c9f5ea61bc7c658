#!/usr/bin/env bash
# Install PMQ and what it needs on a fresh machine: the Fashion-MNIST Debian package (when root),
# a pinned torch/torchvision pair, and this repository in editable mode.
# Usage: scripts/install.sh [EXTRA]   e.g. scripts/install.sh dev
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
extra=${1:-}

if [ ! -f /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
  else
    echo "Fashion-MNIST is missing: run 'sudo apt-get install dataset-fashion-mnist' (or pass --data DIR)" >&2
  fi
fi

# torch 2.14.1 + torchvision 0.29.1 is a known-good pair (timm imports torchvision).
"$PYTHON" -m pip install -q --disable-pip-version-check "torch==2.14.1" "torchvision==0.29.1"
"$PYTHON" -m pip install -q --disable-pip-version-check -e ".${extra:+[$extra]}"
