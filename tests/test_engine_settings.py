"""The `engine:` switches: each one dreams what the plain step dreams, and bad choices are
refused with a clear error. Speed is measured by `streamdream bench`, never here."""

from __future__ import annotations

import re

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
    from streamdream.commands.bench_engine import format_engine_report

    device = device_name()
    assert device.startswith("CPU: ") and device.endswith("cores)")  # no GPU on the test machines
    row = {"setting": "backend jax", "backend": "jax", "size": "320x240", "step_ms": 40.0, "baseline_ms": 60.0,
           "speedup": 1.5}
    whole = {**row, "setting": "default engine settings", "backend": "tensorflow", "dream_ms": 800,
             "baseline_dream_ms": 1000, "dream_speedup": 1.25}
    text = format_engine_report({"device": device, "rows": [row, whole, {"setting": "bfloat16", "error": "ValueError: x"}],
                                 "looks": {}})
    assert text.splitlines()[0] == f"device: {device}"
    assert "1.50x" in text and "bfloat16" in text and "failed: ValueError: x" in text
    assert re.search(r"default engine settings .* 1\.50x +800 +1000 +1\.25x", text)  # a whole dream's row


# --- batch normalisation folded into its convolution (engine.fold_batchnorm) ---------------------


def _random_statistics(model, seed: int = 0) -> None:
    """Batch normalisations with statistics far from identity, so a wrong fold shows."""
    import keras

    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            values = []
            for weight in layer.weights:
                kind, shape = weight.path.rsplit("/", 1)[-1], weight.shape
                low, high = {"gamma": (0.5, 1.5), "beta": (-0.5, 0.5), "moving_mean": (-0.5, 0.5)}.get(kind, (0.5, 2.0))
                values.append(rng.uniform(low, high, shape).astype(np.float32))
            layer.set_weights(values)


def _batch_norms(model) -> int:
    import keras

    return sum(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers)


@pytest.mark.parametrize("app, layers, size", [
    ("MobileNetV2", ["block_8_add", "block_16_project_BN"], 96),  # a dream layer named after a batch norm
    ("InceptionV3", ["mixed3", "mixed5"], 139),  # batch norms without scale (gamma)
])
def test_folded_batch_norms_compute_what_the_network_computes(app, layers, size):
    import keras

    from streamdream.models.fold import fold_batchnorm

    keras.utils.set_random_seed(1)
    network = getattr(keras.applications, app)(include_top=False, weights=None, input_shape=(None, None, 3))
    _random_statistics(network)
    before = _batch_norms(network)
    folded = fold_batchnorm(network)
    assert before > 50 and _batch_norms(folded) == 0
    x = np.random.default_rng(2).uniform(-1, 1, (1, size, size, 3)).astype(np.float32)
    for name in layers:
        want = keras.Model(network.inputs, network.get_layer(name).output)(x)
        got = keras.Model(folded.inputs, folded.get_layer(name).output)(x)
        want, got = keras.ops.convert_to_numpy(want), keras.ops.convert_to_numpy(got)
        np.testing.assert_allclose(got, want, atol=2e-4 * float(np.abs(want).max()))
        assert np.abs(want).mean() > 0.01  # the layer is alive: the comparison can tell


def test_the_folded_lite0_dreams_what_the_unfolded_one_dreams():
    from skimage import data

    config = ModelConfig(name="efficientnet_lite0", layers="block_6,classes")
    plain, folded = load_dream_model(config, fold_batchnorm=False), load_dream_model(config)
    assert _batch_norms(plain.extractor) > 30 and _batch_norms(folded.extractor) == 0
    photo = data.chelsea()[::2, ::2].astype(np.float32)
    for want, got in zip(plain.extractor(plain.preprocess(photo[None])), folded.extractor(folded.preprocess(photo[None]))):
        want, got = np.asarray(want), np.asarray(got)
        np.testing.assert_allclose(got, want, atol=1e-4 * float(np.abs(want).max()))
    settings = DreamConfig(seed=0, octaves=1, steps=4)
    a = DreamEngine(plain, settings).dream(photo)
    b = DreamEngine(folded, settings).dream(photo)
    assert np.abs(a - b).mean() < 0.05 * np.abs(a - photo).mean()  # the same dream, to rounding
