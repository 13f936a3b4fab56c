"""The device-resident step, proven on the CPU: TensorFlow's warp in the graph instead of
OpenCV's on the host (``engine.transform``), the octaves on the device (``dream/octaves.py``)
and mixed precision, each dreaming the look the host step dreams.

"Within seed noise": the same dream with another seed moves grain, strength and blacks by
this much anyway; a change of the step's machinery must not move them by more. The figures
of the OpenCV step were recorded from main's step before this change, on this dream.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest

from streamdream.config import DreamConfig, EngineConfig, ModelConfig, parse_config
from streamdream.dream.engine import DreamEngine
from streamdream.errors import ConfigError
from streamdream.measure import LookFigures, look_figures
from streamdream.models.loader import load_dream_model

ROOT = Path(__file__).resolve().parents[1]
DREAM = {"octaves": 2, "steps": 4, "octave_scale": 1.4}
#: main's TensorFlow step (OpenCV's warp, octaves on the host) on ``picture()``, seed 0
MAIN_SEED0 = LookFigures(grain=0.0755, strength=15.9931, blacks=1.9324, whites=1.7725)


def picture(width: int = 160, height: int = 120) -> np.ndarray:
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = 127 + 80 * np.sin(x / 9.0)[..., None] * np.cos(y / 13.0)[..., None]
    return np.clip(base + rng.normal(0, 8, (height, width, 3)), 0, 255).astype(np.float32)


def model(path: Path, precision: str = "float32"):
    return load_dream_model(ModelConfig(name=str(path), layers=["conv2"], preprocess="tf"), precision)


def look(network, engine: EngineConfig, seed: int) -> LookFigures:
    dreamer = DreamEngine(network, DreamConfig(seed=seed, **DREAM), engine)
    return look_figures(picture(), dreamer.dream(picture()))


def seed_noise(a: LookFigures, b: LookFigures) -> dict[str, float]:
    """How far two seeds' figures lie apart, with a floor (two seeds can agree by chance)."""
    return {"grain": max(abs(a.grain - b.grain), 0.005), "strength": max(abs(a.strength - b.strength), 0.05 * a.strength),
            "blacks": max(abs(a.blacks - b.blacks), 0.25)}


def assert_within(ours: LookFigures, theirs: LookFigures, noise: dict[str, float]) -> None:
    for key, limit in noise.items():
        assert abs(getattr(ours, key) - getattr(theirs, key)) <= limit, (key, ours, theirs, noise)


def graph_ops(step) -> set[str]:
    """Every op type in the whole-frame step's graph, the loop body's functions included."""
    import tensorflow as tf

    graph = step._ascend_whole.get_concrete_function(
        tf.TensorSpec([None, None, 3], tf.float32), tf.TensorSpec([], tf.int32), tf.TensorSpec([], tf.float32),
        tf.TensorSpec([], tf.int32), tf.TensorSpec([], tf.int32)).graph.as_graph_def()
    ops = {node.op for node in graph.node}
    for function in graph.library.function:
        ops |= {node.op for node in function.node_def}
    return ops


@pytest.fixture(scope="module")
def tiny(tiny_model_path):
    return model(tiny_model_path)


def test_opencv_warp_keeps_mains_look_and_its_host_warp(tiny):
    dreamer = DreamEngine(tiny, DreamConfig(seed=0, **DREAM), EngineConfig(transform="opencv"))
    assert dreamer.step.warp == "opencv" and not dreamer.step.device_resident
    ops = graph_ops(dreamer.step)
    assert {"PyFunc", "PyFuncStateless"} & ops and "ImageProjectiveTransformV3" not in ops
    ours = look_figures(picture(), dreamer.dream(picture()))
    for key in ("grain", "strength", "blacks", "whites"):
        assert getattr(ours, key) == pytest.approx(getattr(MAIN_SEED0, key), rel=0.01, abs=0.002), (ours, MAIN_SEED0)


def test_tensorflow_warp_stays_in_the_graph_and_dreams_what_opencv_dreams(tiny):
    on_host = DreamEngine(tiny, DreamConfig(seed=0, **DREAM), EngineConfig(transform="opencv"))
    on_device = DreamEngine(tiny, DreamConfig(seed=0, **DREAM), EngineConfig(transform="tensorflow"))
    assert on_device.step.device_resident  # and so its octaves stay on the device too
    ops = graph_ops(on_device.step)
    assert "ImageProjectiveTransformV3" in ops and not {"PyFunc", "PyFuncStateless", "EagerPyFunc"} & ops
    # the same random draws through both warps: the same pixels, to the warps' rounding
    a, b = on_host.ascend(picture(), 3), on_device.ascend(picture(), 3)
    assert np.abs(a - picture()).mean() > 1.0
    np.testing.assert_allclose(b, a, atol=1.0)
    assert np.abs(b - a).mean() < 0.05
    other_seed = look(tiny, EngineConfig(transform="opencv"), 1)
    assert_within(look(tiny, EngineConfig(transform="tensorflow"), 0), MAIN_SEED0, seed_noise(MAIN_SEED0, other_seed))


def test_a_device_dream_sends_the_frame_once_and_brings_the_detail_back_once(tiny, monkeypatch):
    from streamdream.dream import octaves

    dreamer = DreamEngine(tiny, DreamConfig(seed=0, **DREAM), EngineConfig(transform="tensorflow"))
    dreamer.ascend(picture(), 1)  # traced before counting: tracing converts constants
    crossings = {"to the device": 0, "back": 0}

    def counted(name, real):
        def call(*args, **kwargs):
            crossings[name] += 1
            return real(*args, **kwargs)
        return call

    monkeypatch.setattr(octaves.ops, "convert_to_tensor", counted("to the device", octaves.ops.convert_to_tensor))
    monkeypatch.setattr(octaves.ops, "convert_to_numpy", counted("back", octaves.ops.convert_to_numpy))
    monkeypatch.setattr(dreamer.step, "ascend", lambda *args: pytest.fail("a numpy round trip per octave"))
    dreamed = dreamer.dream(picture())
    assert crossings == {"to the device": 1, "back": 1}
    assert np.abs(dreamed - picture()).mean() > 1.0


def test_auto_warp_is_opencv_without_a_gpu_and_bad_choices_are_refused(tiny):
    step = DreamEngine(tiny, DreamConfig(seed=0, **DREAM), EngineConfig()).step
    assert EngineConfig().transform == "auto" and step.warp == "opencv"  # this machine has no GPU
    with pytest.raises(ConfigError, match=r"engine\.transform"):
        parse_config({"engine": {"transform": "cuda"}})
    with pytest.raises(ConfigError, match=r"engine\.precision"):
        parse_config({"engine": {"precision": "int8"}})


@pytest.mark.parametrize("precision", ["bfloat16", "float16"])
def test_mixed_precision_look_within_seed_noise_of_float32(tiny_model_path, tiny, precision):
    exact0, exact1 = look(tiny, EngineConfig(), 0), look(tiny, EngineConfig(), 1)
    low = model(tiny_model_path, precision)
    assert low.extractor.layers[-1].compute_dtype == precision
    assert_within(look(low, EngineConfig(precision=precision), 0), exact0, seed_noise(exact0, exact1))


def test_float16_loss_scale_keeps_small_gradients(tiny_model_path):
    # a mean over many activations gives each ~1/N: without the scale float16 flushes them to zero
    from streamdream.dream.objective import loss_scale

    assert loss_scale("float16") > 1 and loss_scale("bfloat16") == loss_scale("float32") == 1
    low = model(tiny_model_path, "float16")
    big = picture(480, 360)
    dreamed = DreamEngine(low, DreamConfig(seed=0, octaves=1, steps=2), EngineConfig(precision="float16")).ascend(big, 2)
    assert np.isfinite(dreamed).all() and np.abs(dreamed - big).mean() > 1.0


JAX_OCTAVES = """
import json, sys
import numpy as np
from streamdream.backend import prepare
from streamdream.config import DreamConfig, EngineConfig, ModelConfig
prepare(EngineConfig())
from streamdream.dream.engine import DreamEngine
from streamdream.measure import look_figures
from streamdream.models.loader import load_dream_model
from tests.test_device_step import DREAM, picture
network = load_dream_model(ModelConfig(name=sys.argv[1], layers=["conv2"], preprocess="tf"))
out = {}
for name, seed, on_device in (("device0", 0, True), ("host0", 0, False), ("host1", 1, False)):
    dreamer = DreamEngine(network, DreamConfig(seed=seed, **DREAM), EngineConfig())
    assert dreamer.step.device_resident
    dreamer.step.device_resident = on_device  # False: the octaves on the host, as before
    out[name] = look_figures(picture(), dreamer.dream(picture())).as_dict()
print("FIGURES " + json.dumps(out))
"""


def test_jax_octaves_on_the_device_dream_what_the_host_octaves_dream(tiny_model_path):
    if find_spec("jax") is None:
        pytest.skip("jax is not installed (pip install 'streamdream[jax]')")
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", JAX_OCTAVES, str(tiny_model_path)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    lines = [line for line in done.stdout.splitlines() if line.startswith("FIGURES ")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    figures = {name: LookFigures(**values) for name, values in json.loads(lines[-1].removeprefix("FIGURES ")).items()}
    assert_within(figures["device0"], figures["host0"], seed_noise(figures["host0"], figures["host1"]))
