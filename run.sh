#!/usr/bin/env bash
# One command for each job on a fresh Debian/Ubuntu machine:
#   bash run.sh demo     set everything up, then run the demo (a local board, two workers)
#   bash run.sh test     set everything up, then run the test suite
#   bash run.sh setup    only set up (system packages, .venv, Python packages)
set -euo pipefail
cd "$(dirname "$0")"

APT_PACKAGES=(git python3 python3-venv python3-pip tesseract-ocr tesseract-ocr-jpn tesseract-ocr-jpn-vert
              tesseract-ocr-eng fonts-noto-cjk fonts-dejavu-core)

need_apt() {
  for pkg in "${APT_PACKAGES[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || return 0
  done
  return 1
}

setup() {
  if command -v apt-get >/dev/null 2>&1 && need_apt; then
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "Installing system packages: ${APT_PACKAGES[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${APT_PACKAGES[@]}" >/dev/null
  fi
  if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
  fi
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -r requirements.txt
}

case "${1:-demo}" in
  setup) setup ;;
  demo) setup; shift || true; .venv/bin/python scripts/demo.py "$@" ;;
  test) setup; shift || true; .venv/bin/python -m pytest "$@" ;;
  *) echo "usage: bash run.sh [demo|test|setup]" >&2; exit 2 ;;
esac
