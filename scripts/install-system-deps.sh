#!/usr/bin/env bash
# System packages the test suite uses for real servers and a real browser:
# FFmpeg (RTSP publish receiver), GStreamer's RTSP server, nginx-rtmp, Chromium, promtool;
# and to build and run the container image for real (tests/test_container.py): podman and
# buildah (no Docker engine here), mmdebstrap (scripts/make-base-image.sh makes the base from
# Debian's mirror, as no container registry is reachable), and runc, which starts containers
# where crun cannot (crun fails on this VM's hybrid cgroups and rlimits).
# streamdream itself needs none of them: PyAV's wheels carry FFmpeg.
set -euo pipefail
packages=(
  ffmpeg
  gir1.2-gst-rtsp-server-1.0 python3-gi
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  gstreamer1.0-plugins-ugly gstreamer1.0-libav
  chromium
  prometheus
  nginx libnginx-mod-rtmp
  podman buildah mmdebstrap runc
)
if ! command -v apt-get >/dev/null; then
  echo "install-system-deps: no apt-get here; install these yourself: ${packages[*]}" >&2
  exit 0
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
run=()
[ "$(id -u)" -ne 0 ] && run=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${run[@]}" apt-get update -q
"${run[@]}" apt-get install -y -q "${missing[@]}"
