#!/usr/bin/env bash
# Build the container images Skiff's tests and examples use, with no registry access:
#
#   skiff/busybox:1  Debian's busybox-static with every applet linked under /bin, /sbin,
#                    /usr/bin, /usr/sbin; default command `sh`. Also holds:
#                      /bin/serve-hostname  HTTP server on port 8080 whose index is the pod's
#                                           hostname (the pod name): writes `hostname` to
#                                           /www/index.html, then runs
#                                           `httpd -f -p 8080 -h /www`; exits 0 on SIGTERM.
#                                           Port and directory: SERVE_PORT, SERVE_DIR.
#                      /bin/pause           sleeps until SIGTERM/SIGINT, then exits 0.
#   skiff/pause:1    the same root filesystem with `/bin/pause` as its command: the pod
#                    sandbox image of the docker runtime.
#
# The busybox .deb comes from apt (`apt-get download`), which works where registries do not.
# Idempotent: images that already exist are kept unless --force is given.
#
# Usage: deploy/images/build.sh [--force]
set -euo pipefail

FORCE=0
for arg in "$@"; do
  case "$arg" in
    --force) FORCE=1 ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done

BUSYBOX_IMAGE=skiff/busybox:1
PAUSE_IMAGE=skiff/pause:1

have() { docker image inspect "$1" >/dev/null 2>&1; }

if [[ $FORCE == 0 ]] && have "$BUSYBOX_IMAGE" && have "$PAUSE_IMAGE"; then
  echo "images $BUSYBOX_IMAGE and $PAUSE_IMAGE exist (use --force to rebuild)"
  exit 0
fi

command -v docker >/dev/null || { echo "docker CLI not found" >&2; exit 1; }
docker info >/dev/null 2>&1 || { echo "docker engine not reachable (DOCKER_HOST=${DOCKER_HOST:-unset})" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

# Fetch the .deb; refresh the package lists once if apt does not know the package yet.
if ! apt-get download busybox-static >/dev/null 2>&1; then
  apt-get update -qq >/dev/null
  apt-get download busybox-static
fi
dpkg-deb -x busybox-static_*.deb extract

root="$work/rootfs"
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,www,root,proc,sys,dev,var/log}
chmod 1777 "$root/tmp"
install -m 0755 extract/bin/busybox "$root/bin/busybox"
for applet in $("$root/bin/busybox" --list-full); do
  [[ "$applet" == bin/busybox ]] && continue
  mkdir -p "$root/$(dirname "$applet")"
  ln -sf /bin/busybox "$root/$applet"
done

cat > "$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
cat > "$root/etc/group" <<'GROUP'
root:x:0:
nogroup:x:65534:
GROUP
echo "hosts: files dns" > "$root/etc/nsswitch.conf"

cat > "$root/bin/pause" <<'PAUSE'
#!/bin/sh
# Pod sandbox: hold the namespaces until told to stop. PID 1 has no default signal
# actions, so SIGTERM must be trapped for a prompt exit.
trap 'exit 0' TERM INT
while :; do
  sleep 86400 &
  wait $!
done
PAUSE

cat > "$root/bin/serve-hostname" <<'SERVE'
#!/bin/sh
# HTTP server answering with the container's hostname (the pod name in a Skiff pod).
port="${SERVE_PORT:-8080}"
dir="${SERVE_DIR:-/www}"
mkdir -p "$dir"
hostname > "$dir/index.html"
httpd -f -p "$port" -h "$dir" &
pid=$!
trap 'kill $pid 2>/dev/null; exit 0' TERM INT
wait $pid
SERVE
chmod 0755 "$root/bin/pause" "$root/bin/serve-hostname"

import() {
  local tag=$1 cmd=$2
  tar -C "$root" --numeric-owner --owner=0 --group=0 -cf - . |
    docker import \
      --change 'ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin' \
      --change "CMD $cmd" \
      --change 'LABEL io.skiff.image=local' \
      - "$tag" >/dev/null
  echo "built $tag"
}

import "$BUSYBOX_IMAGE" '["sh"]'
import "$PAUSE_IMAGE" '["/bin/pause"]'
