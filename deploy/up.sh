#!/usr/bin/env bash
# Quickstart, step 1: install build dependencies if missing, build, and run `skiff up`
# (a local cluster; Ctrl-C stops it, running it again resumes it). Extra arguments go to
# `skiff up`, e.g. `deploy/up.sh --replicas 3`.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/skiff-target}"
bash deploy/install-build-deps.sh
# The images examples/ and the tests use (no registry is reachable); skipped without Docker.
if docker info >/dev/null 2>&1; then bash deploy/images/build.sh; fi
cargo build --bin skiff
exec "$CARGO_TARGET_DIR/debug/skiff" up "$@"
