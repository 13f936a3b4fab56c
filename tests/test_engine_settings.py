"""The `engine:` switches: each one dreams what the plain step dreams, and bad choices are
refused with a clear error. Speed is measured by `streamdream bench`, never here."""

from __future__ import annotations

import numpy as np
import pytest

from streamdream.backend import chosen_backend, prepare
from streamdream.config import DreamConfig, EngineConfig, ModelConfig, parse_config
from streamdream.dream.engine import DreamEngine
from streamdream.errors import ConfigError
from streamdream.measure import look_figures
from streamdream.models.loader import load_dream_model


@pytest.fixture(scope="module")
def tiny_model(tiny_model_path):
    return load_dream_model(ModelConfig(name=str(tiny_model_path), layers=["conv2"], preprocess="tf"))


def picture(width: int = 128, height: int = 128) -> np.ndarray:
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = 127 + 80 * np.sin(x / 9.0)[..., None] * np.cos(y / 13.0)[..., None]
    return np.clip(base + rng.normal(0, 8, (height, width, 3)), 0, 255).astype(np.float32)


def ascend(model, engine: EngineConfig, **dream) -> np.ndarray:
    settings = {"seed": 0, "octaves": 1, "steps": 3, **dream}
    return DreamEngine(model, DreamConfig(**settings), engine).ascend(picture(), 3)


def test_batched_tiles_dream_what_tiles_one_by_one_dream(tiny_model):
    # 128x128 in tiles of 64: four equal tiles, so the batch needs no padding and every
    # tile sees exactly what it sees alone (the objective's scale cancels in the step)
    one_by_one = ascend(tiny_model, EngineConfig(), tile_size=64)
    batched = ascend(tiny_model, EngineConfig(batch_tiles=True), tile_size=64)
    whole = ascend(tiny_model, EngineConfig())
    np.testing.assert_allclose(batched, one_by_one, atol=0.05)
    assert np.abs(whole - one_by_one).mean() > 0.05  # tiles are not the whole frame: the test can tell


def test_xla_step_dreams_what_the_graph_step_dreams(tiny_model):
    graph = ascend(tiny_model, EngineConfig())
    xla = ascend(tiny_model, EngineConfig(jit_compile=True))
    np.testing.assert_allclose(xla, graph, atol=0.05)
    assert np.abs(graph - picture()).mean() > 1.0


def test_bfloat16_changes_the_look_by_little(tiny_model_path):
    config = ModelConfig(name=str(tiny_model_path), layers=["conv2"], preprocess="tf")
    exact = ascend(load_dream_model(config), EngineConfig())
    low = load_dream_model(config, precision="bfloat16")
    assert low.extractor.layers[-1].compute_dtype == "bfloat16"
    rough = ascend(low, EngineConfig(precision="bfloat16"))
    a, b = look_figures(picture(), exact), look_figures(picture(), rough)
    assert abs(a.strength - b.strength) < 0.1 * a.strength
    assert abs(a.grain - b.grain) < 0.02


def test_engine_section_is_strict():
    with pytest.raises(ConfigError, match=r"engine\.backend"):
        parse_config({"engine": {"backend": "mxnet"}})
    with pytest.raises(ConfigError, match=r"engine\.intra_op_threads: must be >= 0, got -1"):
        parse_config({"engine": {"intra_op_threads": -1}})
    with pytest.raises(ConfigError, match=r"engine\.xla: unknown key"):
        parse_config({"engine": {"xla": True}})


def test_a_backend_other_than_the_imported_one_is_refused_clearly(monkeypatch):
    import keras  # noqa: F401  (this process runs Keras on TensorFlow)

    with pytest.raises(ConfigError, match=r"already runs Keras on 'tensorflow', got 'jax'.*KERAS_BACKEND=jax"):
        prepare(EngineConfig(backend="jax"))
    monkeypatch.setenv("KERAS_BACKEND", "theano")
    with pytest.raises(ConfigError, match=r"KERAS_BACKEND='theano'"):
        chosen_backend(EngineConfig())
    assert chosen_backend(EngineConfig(backend="tensorflow")) == "tensorflow"


def test_bench_report_names_the_device_and_the_speedups():
    from streamdream.backend import device_name
    from streamdream.bench_engine import format_engine_report

    device = device_name()
    assert device.startswith("CPU: ") and device.endswith("cores)")  # no GPU on the test machines
    row = {"setting": "backend jax", "backend": "jax", "size": "320x240", "step_ms": 40.0, "baseline_ms": 60.0,
           "speedup": 1.5}
    text = format_engine_report({"device": device, "rows": [row, {"setting": "bfloat16", "error": "ValueError: x"}],
                                 "looks": {}})
    assert text.splitlines()[0] == f"device: {device}"
    assert "1.50x" in text and "bfloat16" in text and "failed: ValueError: x" in text
