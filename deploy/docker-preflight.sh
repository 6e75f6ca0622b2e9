#!/usr/bin/env bash
# Checks that the Docker engine can start a container within a deadline, and tries one
# restart of the engine when it cannot (a wedged engine, e.g. a stuck runc, otherwise makes
# every Docker test wait out its deadline). Builds the local images first. Never fails the
# caller: it prints what it found; the tests then report a broken engine themselves.
#
# Usage: deploy/docker-preflight.sh
set -uo pipefail
cd "$(dirname "$0")/.."

if ! command -v docker >/dev/null; then
  echo "docker preflight: no docker CLI; the Docker tests will be skipped"
  exit 0
fi

probe() {
  timeout 20 docker info >/dev/null 2>&1 &&
    timeout 120 bash deploy/images/build.sh >/dev/null 2>&1 &&
    timeout 60 docker run --rm --label io.skiff.preflight=1 skiff/busybox:1 true >/dev/null 2>&1
}

if probe; then
  echo "docker preflight: the engine starts containers"
  exit 0
fi
echo "docker preflight: the engine did not start a container within its deadline; restarting it" >&2
ps -eo pid,stat,etimes,cmd | grep -E '[r]unc|[c]ontainerd-shim|[d]ockerd' | head -20 >&2
for stuck in $(pgrep -x runc); do kill -9 "$stuck" 2>/dev/null; done
if command -v service >/dev/null && [ -x /etc/init.d/docker ]; then
  timeout 120 service docker restart >&2 || true
elif command -v systemctl >/dev/null; then
  timeout 120 systemctl restart docker >&2 || true
fi
for _ in $(seq 1 30); do
  if probe; then
    echo "docker preflight: the engine starts containers after a restart"
    exit 0
  fi
  sleep 2
done
echo "docker preflight: the engine is still not starting containers; the Docker tests will fail" >&2
exit 0
