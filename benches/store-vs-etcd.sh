#!/usr/bin/env bash
# Write throughput and latency of a 3-replica Skiff store against a 3-member etcd, same
# workload, same load generator (`skiff bench store`, which speaks etcd's v3 KV/Put with
# --target etcd), same machine, same run. Prints both figures and the ratio Skiff/etcd.
#
#   benches/store-vs-etcd.sh            # 64 clients, 10 s, 256-byte values
#   CLIENTS=16 DURATION=5 benches/store-vs-etcd.sh
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS=${CLIENTS:-64}
DURATION=${DURATION:-10}
VALUE_SIZE=${VALUE_SIZE:-256}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/skiff-target}"

if ! command -v etcd >/dev/null || ! command -v etcdctl >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server etcd-client >/dev/null
fi
# SKIFF_BIN=path uses an already built binary instead of building one.
if [ -z "${SKIFF_BIN:-}" ]; then cargo build --bin skiff -q; fi
SKIFF="${SKIFF_BIN:-$CARGO_TARGET_DIR/debug/skiff}"

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

wait_until() { # deadline-bounded poll: wait_until SECONDS CMD...
  local end=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $end ] || { echo "timed out waiting for: $*" >&2; return 1; }
    sleep 0.2
  done
}

# --- etcd: 3 members on loopback ---
ic="e1=http://127.0.0.1:23801,e2=http://127.0.0.1:23802,e3=http://127.0.0.1:23803"
for i in 1 2 3; do
  etcd --name "e$i" --data-dir "$work/etcd$i" \
    --listen-client-urls "http://127.0.0.1:2379$i" --advertise-client-urls "http://127.0.0.1:2379$i" \
    --listen-peer-urls "http://127.0.0.1:2380$i" --initial-advertise-peer-urls "http://127.0.0.1:2380$i" \
    --initial-cluster "$ic" --initial-cluster-state new --initial-cluster-token skiff-bench \
    >"$work/etcd$i.log" 2>&1 &
  pids+=($!)
done
etcd_eps="127.0.0.1:23791,127.0.0.1:23792,127.0.0.1:23793"
wait_until 30 env ETCDCTL_API=3 etcdctl --endpoints "$etcd_eps" put warmup 1
etcd_out=$("$SKIFF" bench store --target etcd --endpoints "$etcd_eps" --clients "$CLIENTS" --duration "$DURATION" --value-size "$VALUE_SIZE")
echo "$etcd_out"
for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
pids=()

# --- Skiff: 3 replicas on loopback ---
ic="1=127.0.0.1:27001,2=127.0.0.1:27002,3=127.0.0.1:27003"
for i in 1 2 3; do
  "$SKIFF" server --id "$i" --data-dir "$work/skiff$i" --grpc-addr "127.0.0.1:2700$i" \
    --api-addr "127.0.0.1:2644$i" --initial-cluster "$ic" >"$work/skiff$i.log" 2>&1 &
  pids+=($!)
done
skiff_eps="127.0.0.1:27001,127.0.0.1:27002,127.0.0.1:27003"
wait_until 30 "$SKIFF" kv put --endpoints "$skiff_eps" warmup 1
skiff_out=$("$SKIFF" bench store --target skiff --endpoints "$skiff_eps" --clients "$CLIENTS" --duration "$DURATION" --value-size "$VALUE_SIZE")
echo "$skiff_out"

field() { echo "$1" | grep '^RESULT' | tr ' ' '\n' | grep "^$2=" | cut -d= -f2; }
ew=$(field "$etcd_out" writes_per_sec); sw=$(field "$skiff_out" writes_per_sec)
ep=$(field "$etcd_out" p99_ms); sp=$(field "$skiff_out" p99_ms)
echo
echo "clients=$CLIENTS value=${VALUE_SIZE}B duration=${DURATION}s"
awk -v s="$sw" -v e="$ew" 'BEGIN { printf "throughput  skiff=%s etcd=%s writes/s  ratio skiff/etcd=%.2f\n", s, e, s / e }'
awk -v s="$sp" -v e="$ep" 'BEGIN { printf "p99 latency skiff=%sms etcd=%sms  ratio skiff/etcd=%.2f\n", s, e, s / e }' 
