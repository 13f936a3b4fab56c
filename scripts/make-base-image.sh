#!/usr/bin/env bash
# Make a local stand-in for python:3.11-slim-bookworm when no container registry is reachable
# (only Debian's mirror is): a minimal bookworm (mmdebstrap, else debootstrap) with its python3
# (3.11) and venv, imported into podman's image store.
#   scripts/make-base-image.sh [IMAGE]        (default localhost/streamdream-base:bookworm)
#   podman build --isolation=chroot --build-arg BASE=localhost/streamdream-base:bookworm ...
# Does nothing when IMAGE already exists (set REBUILD=1 to make it again).
# The Dockerfile uses `python3 -m venv` and the venv's paths only, so it builds on either base.
set -euo pipefail
image=${1:-localhost/streamdream-base:bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
if [ "${REBUILD:-0}" != 1 ] && podman image exists "$image"; then
  echo "make-base-image: $image exists (REBUILD=1 to make it again)"
  exit 0
fi
missing() { echo "make-base-image: $1 is missing (scripts/install-system-deps.sh installs it)" >&2; exit 1; }
command -v podman >/dev/null || missing podman
command -v mmdebstrap >/dev/null || command -v debootstrap >/dev/null || missing "mmdebstrap (or debootstrap)"
root=$(mktemp -d "${TMPDIR:-/tmp}/streamdream-base.XXXXXX")
trap 'rm -rf "$root"' EXIT
# What python:3.11-slim-bookworm carries that the image relies on: python3 with venv/ensurepip,
# CA certificates (HTTPS streams), tzdata (strftime in recording names), netbase (/etc/services).
include=python3,python3-venv,ca-certificates,tzdata,netbase
if command -v mmdebstrap >/dev/null; then
  # apt's parallel downloads and no fsync while unpacking: 3.5 min where debootstrap took 9.6;
  # the merged-usr hook lays out /usr itself, so the usrmerge package (and perl) stays out
  mmdebstrap --quiet --variant=minbase --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --aptopt='APT::Install-Recommends "false"' --include="$include" bookworm "$root" "$mirror"
else
  debootstrap --variant=minbase --include="$include" bookworm "$root" "$mirror" >/dev/null
fi
# Slim it as the official image does: no apt lists or caches, no docs or man pages.
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/var/log/*.log
tar -C "$root" -c . | podman import --quiet \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' \
  - "$image" >/dev/null
echo "make-base-image: $image ($(podman image inspect --format '{{.Size}}' "$image") bytes)"
