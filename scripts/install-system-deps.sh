#!/usr/bin/env bash
# The Debian/Ubuntu packages the test suite needs, and nothing else. streamdream itself
# needs none of them (PyAV's wheels carry FFmpeg); the tests use them as real servers,
# a real browser and real tools:
#
#   ffmpeg                        ffmpeg receives the RTSP publish test's stream; ffprobe
#                                 is the reference for the timestamp tests
#   python3-gi                    the system python3 runs GStreamer's RTSP server for
#   gir1.2-gst-rtsp-server-1.0      the RTSP input tests (tests/fixtures/rtsp_server.py)
#   gstreamer1.0-plugins-base     ... its videotestsrc (the live test pattern)
#   gstreamer1.0-plugins-good     ... its qtdemux and rtph264pay
#   gstreamer1.0-plugins-bad      ... its h264parse
#   gstreamer1.0-plugins-ugly     ... its x264enc
#   chromium                      headless browser for the preview page test
#   prometheus                    promtool checks the /metrics exposition (the server is
#                                 not started or enabled)
#   nginx libnginx-mod-rtmp       the RTMP server the publish test records into (started
#                                 by the test itself; not started or enabled)
#   podman buildah                build and run the container image for real
#                                 (tests/test_container.py; no Docker engine here)
#   mmdebstrap                    scripts/make-base-image.sh makes the image's Debian base
#                                 from the mirror (no container registry is reachable)
#   runc                          starts containers where crun cannot (crun fails on
#                                 hybrid cgroups and rlimits)
#
# How it installs: without recommends (they pulled in avahi, smartd, node-exporter...);
# waiting up to 10 minutes for another apt or dpkg to release the package lock instead of
# failing; with services kept from starting during the install (policy-rc.d, where no
# policy exists yet) and, afterwards, every service, socket or timer of the packages this
# run installed disabled at boot (systemd units and SysV links). Services of packages that
# were installed before are left as they were.
set -euo pipefail

packages=(
  ffmpeg
  python3-gi gir1.2-gst-rtsp-server-1.0
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly
  chromium
  prometheus
  nginx libnginx-mod-rtmp
  podman buildah mmdebstrap runc
)
LOCK_TIMEOUT=${STREAMDREAM_APT_LOCK_TIMEOUT:-600}  # seconds to wait for the package lock
POLICY=${STREAMDREAM_POLICY_RC_D:-/usr/sbin/policy-rc.d}  # another path only for the script's own test

say() { echo "install-system-deps: $*" >&2; }

if ! command -v apt-get >/dev/null; then
  say "no apt-get here; install these yourself: ${packages[*]}"
  exit 0
fi
installed() { dpkg-query -W -f='${db:Status-Status} ${Package}\n' 2>/dev/null | awk '$1 == "installed" {print $2}' | sort; }
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  say "all present: ${packages[*]}"
  exit 0
fi
say "installing ${missing[*]} (see the list at the top of $0 for why)"

run=()
[ "$(id -u)" -ne 0 ] && run=(sudo)
export DEBIAN_FRONTEND=noninteractive
apt=("${run[@]}" apt-get -q -o "DPkg::Lock::Timeout=$LOCK_TIMEOUT")

# Keep services from starting while they are installed, unless a policy is already in place.
policy=$POLICY
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\n# written by streamdream install-system-deps.sh while it runs\nexit 101\n' | "${run[@]}" tee "$policy" >/dev/null
  "${run[@]}" chmod 755 "$policy"
  trap '"${run[@]}" rm -f "$policy"' EXIT
fi

# apt-get waits for dpkg's lock (DPkg::Lock::Timeout) but not for its lists or archives
# locks: another apt holding those makes it fail at once, so try again until the timeout.
patiently() {
  local waited=0 log
  log=$(mktemp)
  until "$@" 2>"$log"; do
    if grep -q "Could not get lock" "$log" && [ "$waited" -lt "$LOCK_TIMEOUT" ]; then
      [ "$waited" -eq 0 ] && say "another package manager holds the lock; waiting (up to ${LOCK_TIMEOUT} s)"
      sleep 5
      waited=$((waited + 5))
    else
      cat "$log" >&2
      rm -f "$log"
      return 1
    fi
  done
  cat "$log" >&2
  rm -f "$log"
}

before=$(mktemp)
installed >"$before"
patiently "${apt[@]}" update
patiently "${apt[@]}" install -y --no-install-recommends "${missing[@]}"
new=$(installed | comm -13 "$before" -)
rm -f "$before"

# Disable at boot whatever this run's packages enable there.
for package in $new; do
  for unit in $(dpkg-query -L "$package" 2>/dev/null | grep -E '^/(usr/)?lib/systemd/system/[^/]+\.(service|socket|timer)$' | xargs -rn1 basename); do
    if command -v systemctl >/dev/null && [ "$(systemctl is-enabled "$unit" 2>/dev/null)" = enabled ]; then
      "${run[@]}" systemctl disable --quiet "$unit" && say "disabled $unit at boot (installed by $package)"
    fi
  done
  for script in $(dpkg-query -L "$package" 2>/dev/null | grep -E '^/etc/init\.d/[^/]+$' | xargs -rn1 basename); do
    "${run[@]}" update-rc.d "$script" disable >/dev/null 2>&1 && say "disabled /etc/init.d/$script at boot (installed by $package)"
  done
done
say "done: $(echo "$new" | wc -w) package(s) installed"
