"""`streamdream bench --engine`: the dream step under each `engine:` setting and backend,
against the step as it was before them (the *baseline*), side by side in one run.

The backend, oneDNN and thread pools are fixed per process, so every setting runs in its
own worker process (spawned, so nothing is imported before its settings are applied).
The baseline and the default stay up for the whole run; each other setting comes up in
turn and the three take turns step by step (minimum of ``repeats``), so the machine's
load hits all three alike and every ratio compares measurements of the same minutes.
Each worker also dreams one fixed picture with a fixed seed and reports its look
(``measure.look_figures``) and how far it raised the objective; the baseline dreamed with a second seed
gives the noise those figures have anyway.

Each row also times whole dreams (every octave, ``DREAM_REPEATS`` rounds) against the
baseline's: a dream's smaller octaves pay a fixed cost per step (op dispatch, threads
waking) that faster kernels do not remove, so the whole dream gains less than one step
at the full size.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
from dataclasses import dataclass, field
from importlib.util import find_spec
from typing import Any

import cv2
import numpy as np

from ..backend import device_name, prepare
from ..config import Config, EngineConfig, ModelConfig
from ..measure import look_figures
from ..models.loader import load_dream_model

log = logging.getLogger(__name__)

LOOK_SIZE = (192, 144)  # the look figures' picture: small, so even JAX on CPU dreams it in seconds
SLOW_STEPS = 2  # timed steps for settings known to be slow (XLA, JAX on CPU): ms/step needs few
DREAM_REPEATS = 2  # whole dreams timed per setting and size (each is 40 steps over 4 octaves)


@dataclass(frozen=True)
class Setting:
    """One way to run the step: engine fields (over the defaults) and a label."""

    name: str
    engine: dict[str, Any] = field(default_factory=dict)
    tile_size: int | None = None
    slow: bool = False


# main's step before issue 14: TensorFlow, oneDNN switched off (the old logging default),
# batch normalisations computed as they are, Grappler's defaults
BASELINE = Setting("baseline (main's TF step)",
                   {"backend": "tensorflow", "onednn": False, "fold_batchnorm": False, "remapper": True})
DEFAULT = Setting("default engine settings", {})


def measures(cores: int, backends: list[str]) -> list[Setting]:
    """Each CPU measure alone over the defaults, then each other backend installed."""
    out = [
        Setting("oneDNN off", {"onednn": False}),
        Setting("BatchNorm not folded", {"fold_batchnorm": False}),
        Setting("Grappler remapper on", {"remapper": True}),
        Setting(f"threads intra={cores} inter=1", {"intra_op_threads": cores, "inter_op_threads": 1}),
        Setting("threads intra=1 inter=1", {"intra_op_threads": 1, "inter_op_threads": 1}),
        Setting("bfloat16", {"precision": "bfloat16"}),
        Setting("float16", {"precision": "float16"}),
        Setting("transform tensorflow", {"transform": "tensorflow"}),
        Setting("XLA jit_compile", {"jit_compile": True}, slow=True),
        Setting("tiles of 256, one by one", {}, tile_size=256),
        Setting("tiles of 256, batched", {"batch_tiles": True}, tile_size=256),
    ]
    out += [Setting(f"backend {b}", {"backend": b}, slow=True) for b in backends if b != "tensorflow"]
    return out


def _test_picture(width: int, height: int) -> np.ndarray:
    """A smooth seeded picture with shadows and highlights (the look figures need both)."""

    rng = np.random.default_rng(0)
    coarse = rng.uniform(0, 255, (6, 8, 3)).astype(np.float32)
    fine = rng.uniform(-40, 40, (height // 4, width // 4, 3)).astype(np.float32)
    picture: np.ndarray = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    picture += cv2.resize(fine, (width, height), interpolation=cv2.INTER_LINEAR)
    return np.clip(picture, 0, 255)


def _worker(conn: Any, setting: Setting, model_name: str, sizes: list[tuple[int, int]], seeds: tuple[int, ...]) -> None:
    """One setting in its own process: prepares the backend, then answers measurements."""
    try:
        engine_config = EngineConfig(**setting.engine)
        backend = prepare(engine_config)
        from ..dream.engine import DreamEngine  # noqa: PLC0415 - loads the backend that prepare() chose

        model = load_dream_model(ModelConfig(name=model_name), engine_config.precision, engine_config.fold_batchnorm)
        dream = Config().dream.model_copy(update={"tile_size": setting.tile_size or Config().dream.tile_size})
        looks = []
        picture = _test_picture(*LOOK_SIZE)
        for seed in seeds:
            engine = DreamEngine(model, dream.model_copy(update={"seed": seed}), engine_config)
            dreamed = engine.dream(picture)
            rise = engine.layer_activation(dreamed) - engine.layer_activation(picture)
            looks.append({**look_figures(picture, dreamed).as_dict(), "objective_rise": round(rise, 4)})
        images = [np.random.default_rng(0).uniform(0, 255, (h, w, 3)).astype(np.float32) for w, h in sizes]
        for image in images:
            engine.ascend(image, 1)  # compile for this size
        conn.send({"ready": True, "backend": backend, "device": device_name(), "looks": looks})
        while True:
            command = conn.recv()
            if command is None:
                return
            index, steps = command
            started = time.perf_counter()
            if steps:
                engine.ascend(images[index], steps)
            else:  # a whole dream: every octave, the smaller ones included
                engine.dream(images[index])
            conn.send((time.perf_counter() - started) * 1000.0 / max(steps, 1))
    except Exception as exc:  # reported to the parent, which goes on with the other settings
        conn.send({"ready": False, "error": f"{type(exc).__name__}: {exc}"})


class _Running:
    def __init__(self, ctx: Any, setting: Setting, model: str, sizes: list[tuple[int, int]], seeds: tuple[int, ...]) -> None:
        self.setting = setting
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker, args=(child, setting, model, sizes, seeds), daemon=True)
        self.process.start()
        self.hello: dict[str, Any] = {}

    def wait_ready(self, timeout: float = 1800.0) -> bool:
        if not self.conn.poll(timeout):
            self.hello = {"ready": False, "error": "no answer within the timeout"}
        else:
            self.hello = self.conn.recv()
        if not self.hello.get("ready"):
            log.warning("%s: %s", self.setting.name, self.hello.get("error"))
        return bool(self.hello.get("ready"))

    def step_ms(self, index: int, steps: int) -> float:
        """ms per step over ``steps`` steps at size ``index``; 0 steps: ms for one whole dream."""
        self.conn.send((index, steps))
        return self.conn.recv()

    def close(self) -> None:
        try:
            self.conn.send(None)
        except OSError:
            pass
        self.process.join(30)
        if self.process.is_alive():
            self.process.kill()


def installed_backends() -> list[str]:
    return [b for b in ("tensorflow", "jax", "torch") if find_spec(b) is not None]


def bench_engine(model: str, sizes: list[tuple[int, int]], steps: int, repeats: int = 5,
                 only: list[str] | None = None) -> dict[str, Any]:
    """Rows of ms/step per setting and size, each with the baseline's ms/step of the same rounds."""

    ctx = multiprocessing.get_context("spawn")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    settings = measures(cores, installed_backends())
    if only:
        settings = [s for s in settings if any(word.lower() in s.name.lower() for word in only)]
    base = _Running(ctx, BASELINE, model, sizes, (0, 1))
    default = _Running(ctx, DEFAULT, model, sizes, (0,))
    if not (base.wait_ready() and default.wait_ready()):
        raise RuntimeError(f"bench workers failed: {base.hello.get('error') or default.hello.get('error')}")
    report: dict[str, Any] = {"device": default.hello["device"], "rows": [], "looks": {}}
    report["looks"][BASELINE.name] = base.hello["looks"][0]
    report["looks"]["baseline, another seed (noise)"] = base.hello["looks"][1]
    report["looks"][DEFAULT.name] = default.hello["looks"][0]
    first = True
    for setting in [None, *settings]:  # None: the default against the baseline alone
        other = None
        if setting is not None:
            other = _Running(ctx, setting, model, sizes, (0,))
            if not other.wait_ready():
                report["rows"].append({"setting": setting.name, "error": other.hello.get("error")})
                other.close()
                continue
            report["looks"][setting.name] = other.hello["looks"][0]
        for index, (width, height) in enumerate(sizes):
            best = {"base": float("inf"), "default": float("inf"), "other": float("inf")}
            n = SLOW_STEPS if setting is not None and setting.slow else steps
            for _ in range(repeats):
                best["base"] = min(best["base"], base.step_ms(index, n))
                if first:
                    best["default"] = min(best["default"], default.step_ms(index, n))
                if other is not None:
                    best["other"] = min(best["other"], other.step_ms(index, n))
            running, ms = (default, best["default"]) if setting is None or other is None else (other, best["other"])
            row = {"setting": running.setting.name, "backend": running.hello["backend"], "size": f"{width}x{height}",
                   "step_ms": round(ms, 1), "baseline_ms": round(best["base"], 1),
                   "speedup": round(best["base"] / ms, 2)}
            if setting is None or not setting.slow:  # a whole dream, its small octaves included
                whole = {"base": float("inf"), "mine": float("inf")}
                for _ in range(DREAM_REPEATS):
                    whole["base"] = min(whole["base"], base.step_ms(index, 0))
                    whole["mine"] = min(whole["mine"], running.step_ms(index, 0))
                row.update(dream_ms=round(whole["mine"]), baseline_dream_ms=round(whole["base"]),
                           dream_speedup=round(whole["base"] / whole["mine"], 2))
            report["rows"].append(row)
            log.info("%s %s: %.1f ms/step, baseline %.1f ms/step (x%.2f)", row["setting"], row["size"], ms,
                     best["base"], row["speedup"])
        first = False
        if other is not None:
            other.close()
    base.close()
    default.close()
    return report


def format_engine_report(report: dict[str, Any]) -> str:
    lines = [f"device: {report['device']}", "",
             f"{'setting':<34} {'backend':<11} {'size':>8} {'ms/step':>9} {'baseline ms':>12} {'speed-up':>9}"
             f" {'dream ms':>9} {'baseline ms':>12} {'speed-up':>9}"]
    for row in report["rows"]:
        if "error" in row:
            lines.append(f"{row['setting']:<34} failed: {row['error']}")
            continue
        whole = (f" {row['dream_ms']:>9} {row['baseline_dream_ms']:>12} {row['dream_speedup']:>8.2f}x"
                 if "dream_ms" in row else "")
        lines.append(f"{row['setting']:<34} {row['backend']:<11} {row['size']:>8} {row['step_ms']:>9.1f} "
                     f"{row['baseline_ms']:>12.1f} {row['speedup']:>8.2f}x{whole}")
    lines += ["", f"look of a full dream at {LOOK_SIZE[0]}x{LOOK_SIZE[1]}, seed 0 (measure.look_figures):",
              f"{'setting':<34} {'grain':>7} {'strength':>9} {'blacks':>8} {'whites':>8} {'obj. rise':>10}"]
    for name, look in report["looks"].items():
        lines.append(f"{name:<34} {look['grain']:>7.3f} {look['strength']:>9.2f} {look['blacks']:>8.2f} "
                     f"{look['whites']:>8.2f} {look['objective_rise']:>10.4f}")
    return "\n".join(lines)


__all__ = ["BASELINE", "DEFAULT", "Setting", "bench_engine", "format_engine_report", "installed_backends", "measures"]
