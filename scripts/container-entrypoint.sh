#!/bin/sh
# The image's entrypoint: /data may be a fresh volume or an empty host folder, so make the
# folder the recordings go to, then become streamdream (exec: it gets SIGTERM directly).
set -eu
if ! mkdir -p /data/recordings 2>/dev/null; then
  echo "streamdream: cannot create /data/recordings: /data must be writable by uid $(id -u)" \
    "(for a host folder: chown $(id -u):$(id -g) FOLDER)" >&2
  exit 1
fi
# A read-only root with no tmpfs on /tmp (docker run --read-only): TensorFlow still writes
# temporary files, so they go on the volume, emptied at each start.
if [ ! -w /tmp ]; then
  export TMPDIR=/data/tmp
  rm -rf "$TMPDIR"
  mkdir -p "$TMPDIR"
fi
exec streamdream "$@"
