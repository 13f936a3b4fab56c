"""The model registry: what is offered, what works offline, and clear errors for the rest."""

import pytest

from streamdream.config import ModelConfig
from streamdream.errors import ModelError, WeightsUnavailableError
from streamdream.models.loader import load_dream_model
from streamdream.models.registry import REGISTRY, get_entry

REQUIRED = {"efficientnet_lite0", "inception_v3", "densenet121", "vgg16", "mobilenet_v2", "resnet50", "efficientnet_b0"}


def test_registry_offers_the_required_models_with_presets():
    assert REQUIRED <= set(REGISTRY)
    for entry in REGISTRY.values():
        assert {"shallow", "mid", "deep"} <= set(entry.presets)
        assert entry.default_preset in entry.presets
    assert REGISTRY["inception_v3"].presets["mid"].layer_names == ("mixed3", "mixed5")


@pytest.mark.parametrize("name", sorted(REQUIRED - {"efficientnet_lite0"}))
def test_keras_presets_name_real_layers(name):
    """Every preset layer exists in the architecture (built without weights, no download)."""
    import keras

    entry = REGISTRY[name]
    builders = {
        "inception_v3": keras.applications.InceptionV3,
        "densenet121": keras.applications.DenseNet121,
        "vgg16": keras.applications.VGG16,
        "mobilenet_v2": keras.applications.MobileNetV2,
        "resnet50": keras.applications.ResNet50,
        "efficientnet_b0": keras.applications.EfficientNetB0,
    }
    model = builders[name](include_top=False, weights=None, input_shape=(None, None, 3))
    names = {layer.name for layer in model.layers}
    for look in entry.presets.values():
        assert set(look.layer_names) <= names


def test_offline_download_failure_names_the_file_and_the_offline_model(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    # no network to Keras' weight store here; for a machine that has one, make the fetch fail
    import keras.src.utils.file_utils as file_utils

    def no_network(*args, **kwargs):
        raise Exception("URL fetch failure: network unreachable")

    monkeypatch.setattr(file_utils, "get_file", no_network)
    monkeypatch.setattr("keras.src.applications.inception_v3.file_utils.get_file", no_network, raising=False)
    with pytest.raises(WeightsUnavailableError) as err:
        load_dream_model(ModelConfig(name="inception_v3"))
    message = str(err.value)
    assert "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5" in message
    assert str(tmp_path / "models") in message
    assert "efficientnet_lite0 works offline" in message
    ok, where = REGISTRY["inception_v3"].available()
    assert not ok and "missing" in where


def test_local_weights_file_that_is_missing(tmp_path):
    with pytest.raises(WeightsUnavailableError, match="weights file not found: .*nope.h5"):
        load_dream_model(ModelConfig(name="vgg16", weights=tmp_path / "nope.h5"))


@pytest.mark.parametrize("name", ["notes.keras", "notes.h5"])
def test_a_text_file_named_as_a_model_is_not_a_keras_model_file_not_a_missing_one(tmp_path, name):
    # what loading says where no preflight ran before it (a playlist look, a model switched by the API);
    # Keras itself says "File not found" of a .keras file that is there
    path = tmp_path / name
    path.write_text("these are my notes, not a network\n")
    with pytest.raises(ModelError) as err:
        load_dream_model(ModelConfig(name=str(path), layers="conv2"))
    assert f"model file {path} is not a Keras model file" in str(err.value)
    assert "not found" not in str(err.value)


def test_unknown_model_lists_the_choices():
    with pytest.raises(ModelError, match="unknown model 'inceptionv3'.*inception_v3"):
        get_entry("inceptionv3")
    with pytest.raises(ModelError, match="unknown model"):
        load_dream_model(ModelConfig(name="inceptionv3"))


def test_own_model_file_with_named_layers(tiny_model_path):
    model = load_dream_model(ModelConfig(name=str(tiny_model_path), layers="conv1,conv2"))
    assert [spec.name for spec in model.layers] == ["conv1", "conv2"]
    assert len(model.extractor.outputs) == 2


def test_own_model_needs_layers_and_real_names(tiny_model_path, tmp_path):
    with pytest.raises(ModelError, match="give `layers`"):
        load_dream_model(ModelConfig(name=str(tiny_model_path)))
    with pytest.raises(ModelError, match="has no layer 'conv9'; its layers include: .*conv1"):
        load_dream_model(ModelConfig(name=str(tiny_model_path), layers="conv9"))
    with pytest.raises(ModelError, match="channel\\(s\\) \\[99\\] out of range 0..15"):
        load_dream_model(ModelConfig(name=str(tiny_model_path), layers=[{"name": "conv2", "channels": [1, 99]}]))
    with pytest.raises(ModelError, match="model file not found"):
        load_dream_model(ModelConfig(name=str(tmp_path / "missing.keras"), layers="a"))


def test_unknown_preset_lists_the_choices(tiny_model_path):
    with pytest.raises(ModelError, match="unknown preset 'weird'; choose one of shallow, mid, deep"):
        load_dream_model(ModelConfig(name="efficientnet_lite0", preset="weird"))
