#!/usr/bin/env bash
# Installs the Debian packages the build needs: protoc (prost code generation) and
# libclang (bindgen for RocksDB), and what the agent's pod network and iptables proxy run:
# ip (iproute2), nsenter (util-linux), iptables. Idempotent; used by deploy/up.sh and .ci/run.
set -euo pipefail
need=()
command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler)
dpkg -s libclang-dev >/dev/null 2>&1 || need+=(libclang-dev)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v nsenter >/dev/null 2>&1 || need+=(util-linux)
command -v iptables >/dev/null 2>&1 || need+=(iptables)
if [ "${#need[@]}" -gt 0 ]; then
  echo "installing: ${need[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
