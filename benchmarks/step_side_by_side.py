"""One engine's dream step against another tree's, side by side: two worker processes, one per
source tree, take turns on the same pictures, so the machine's load hits both alike.

    python benchmarks/step_side_by_side.py /path/to/main /path/to/branch [--backend tensorflow]

Reports ms per step (minimum of --rounds rounds of 5 steps, each tree first in turn) and ms per whole dream (minimum of 2) at
320x240 and 640x480, with the ratio second/first. Used for issue 24: TensorFlow's CPU step
with OpenCV's warp against main's.
"""

import argparse
import json
import os
import subprocess
import sys

WORKER = r'''
import sys, time, json
import numpy as np
from streamdream.backend import prepare
from streamdream.config import Config, EngineConfig, ModelConfig
prepare(EngineConfig())
from streamdream.dream.engine import DreamEngine
from streamdream.models.loader import load_dream_model
cfg = Config()
model = load_dream_model(ModelConfig(name="efficientnet_lite0"), "float32", True)
eng = DreamEngine(model, cfg.dream.model_copy(update={"seed": 0}), cfg.engine)
imgs = {s: np.random.default_rng(0).uniform(0, 255, (s[1], s[0], 3)).astype(np.float32) for s in [(320, 240), (640, 480)]}
for im in imgs.values():
    eng.ascend(im, 1)
print("ready", flush=True)
for line in sys.stdin:
    w, h, steps = map(int, line.split())
    t = time.perf_counter()
    if steps:
        eng.ascend(imgs[(w, h)], steps)
    else:
        eng.dream(imgs[(w, h)])
    print((time.perf_counter() - t) * 1000 / max(steps, 1), flush=True)
'''
parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("main", help="the first source tree (the one as it was)")
parser.add_argument("branch", help="the second source tree (the change)")
parser.add_argument("--backend", default="tensorflow")
parser.add_argument("--rounds", type=int, default=5, help="rounds of 5 steps per size (the fastest kept)")
args = parser.parse_args()
procs = {}
for name, path in (("main", args.main), ("branch", args.branch)):
    env = {**os.environ, "PYTHONPATH": path, "KERAS_BACKEND": args.backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    procs[name] = subprocess.Popen([sys.executable, "-c", WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.DEVNULL, text=True, env=env)
for p in procs.values():
    while p.stdout.readline().strip() != "ready":
        pass
out = {}
for (w, h) in [(320, 240), (640, 480)]:
    for steps in (5, 0):
        best = {n: float("inf") for n in procs}
        for round_ in range(args.rounds if steps else 2):
            # each round the other tree goes first, so neither always follows the same one
            for n, p in (list(procs.items()) if round_ % 2 == 0 else list(procs.items())[::-1]):
                p.stdin.write(f"{w} {h} {steps}\n")
                p.stdin.flush()
                best[n] = min(best[n], float(p.stdout.readline()))
        key = f"{w}x{h} " + ("ms/step" if steps else "whole dream ms")
        out[key] = {n: round(v, 1) for n, v in best.items()} | {"branch/main": round(best["branch"] / best["main"], 3)}
        print(key, out[key], flush=True)
for p in procs.values():
    p.stdin.close()
    p.wait()
print(json.dumps(out))
