#!/usr/bin/env bash
# Install PMQ and what it needs on a fresh machine: the Fashion-MNIST Debian package (when root),
# a pinned torch/torchvision pair, and this repository in editable mode.
#
# Usage: scripts/install.sh [EXTRA]     e.g. scripts/install.sh dev   (or bench, distributed)
#        scripts/install.sh --python    print the interpreter it installs into, install nothing
#
# Which Python: $PYTHON if set; else the active virtual environment; else ./.venv if it exists;
# else python3 if pip may install into it; else (a Debian/Ubuntu system Python, PEP 668
# "externally managed") a new project venv ./.venv, which it says. CPU-only machine: set
# TORCH_INDEX=https://download.pytorch.org/whl/cpu to get the CPU wheels (~0.2 GB instead of the
# CUDA build's several GB).
set -euo pipefail
cd "$(dirname "$0")/.."

choose_python() {
  if [ -n "${PYTHON:-}" ]; then echo "$PYTHON"; return; fi
  if python3 -c 'import sys; sys.exit(sys.prefix == sys.base_prefix)' 2>/dev/null; then echo python3; return; fi
  if [ -x .venv/bin/python ]; then echo .venv/bin/python; return; fi
  if python3 -c 'import os, sys, sysconfig
sys.exit(os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")))'; then
    echo python3
  else
    echo .venv/bin/python
  fi
}

python=$(choose_python)
if [ "${1:-}" = "--python" ]; then echo "$python"; exit 0; fi
extra=${1:-}

if [ "$python" = .venv/bin/python ] && [ ! -x .venv/bin/python ]; then
  echo "install.sh: python3 is externally managed (PEP 668): creating the project venv .venv" \
       "(use it with: . .venv/bin/activate, or set PYTHON=...)" >&2
  python3 -m venv .venv || { echo "install.sh: cannot create .venv: run 'sudo apt-get install python3-venv'" >&2; exit 1; }
fi

if [ ! -f /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
  else
    echo "Fashion-MNIST is missing: run 'sudo apt-get install dataset-fashion-mnist' (or pass --data DIR)" >&2
  fi
fi

# torch 2.14.1 + torchvision 0.29.1 is a known-good pair (timm imports torchvision).
"$python" -m pip install -q --disable-pip-version-check ${TORCH_INDEX:+--index-url "$TORCH_INDEX"} \
  "torch==2.14.1" "torchvision==0.29.1"
"$python" -m pip install -q --disable-pip-version-check -e ".${extra:+[$extra]}"
