#!/usr/bin/env bash
# Install everything the test suite needs on a fresh Debian machine, then run it.
# System packages: PostgreSQL (store tests), openssh-server (SSH resource tests), Chromium
# (dashboard browser tests), tmux (interactive 'aup init' tests). The test fixtures start and
# stop the servers themselves (PostgreSQL cluster, sshd, Ray head) on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
for pkg in postgresql openssh-server chromium tmux; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e '.[test]'
.venv/bin/ruff check src tests benchmarks examples
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
