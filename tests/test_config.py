"""Config files: strict keys, bounds, and errors that name the key, the value and the line."""

from pathlib import Path

import pytest

from streamdream.config import Config, load_config, parse_config, with_overrides
from streamdream.errors import ConfigError

CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))


def write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_are_valid(path):
    assert isinstance(load_config(path), Config)


def test_shipped_configs_include_demo_and_classic():
    names = {p.name for p in CONFIGS}
    assert {"demo.yaml", "classic-inception.yaml"} <= names


def test_out_of_range_value_names_key_value_and_line(tmp_path):
    path = write(tmp_path, "source: demo\ndream:\n  steps: 4\n  octaves: 0\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert f"{path}:4: dream.octaves: must be >= 1, got 0" in str(err.value)


def test_unknown_key_is_rejected_with_its_line(tmp_path):
    path = write(tmp_path, "dream:\n  octaves: 2\n  octavez: 3\n")
    with pytest.raises(ConfigError, match=r"c.yaml:3: dream.octavez: unknown key"):
        load_config(path)


def test_wrong_type_is_reported(tmp_path):
    path = write(tmp_path, "dream:\n  step_size: fast\n")
    with pytest.raises(ConfigError, match=r"dream.step_size: .*valid number.*'fast'"):
        load_config(path)


def test_negative_size_is_reported(tmp_path):
    path = write(tmp_path, "source:\n  uri: webcam\n  width: -640\n")
    with pytest.raises(ConfigError, match=r"c.yaml:3: source.width: must be >= 16, got -640"):
        load_config(path)


def test_every_error_is_listed(tmp_path):
    path = write(tmp_path, "dream:\n  octaves: 0\n  steps: -1\noutputs:\n  - uri: a.mp4\n    crf: 99\n")
    message = str(pytest.raises(ConfigError, load_config, path).value)
    assert "dream.octaves" in message and "dream.steps" in message and "outputs.0.crf" in message


def test_missing_and_non_mapping_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "dream: [\n"))


def test_short_forms_for_source_outputs_and_layers():
    config = parse_config({"source": "clip.mp4", "outputs": ["a.mp4", "null"], "model": {"layers": "mixed3,mixed5"}})
    assert config.source.uri == "clip.mp4"
    assert [o.uri for o in config.outputs] == ["a.mp4", "null"]
    assert [layer.name for layer in config.model.layers] == ["mixed3", "mixed5"]


def test_overrides_are_validated_too():
    config = with_overrides(Config(), dream={"octaves": 5, "steps": None})
    assert config.dream.octaves == 5 and config.dream.steps == Config().dream.steps
    with pytest.raises(ConfigError, match="dream.octaves: must be >= 1, got 0"):
        with_overrides(Config(), dream={"octaves": 0})


def test_defaults_dream_the_demo_into_an_mp4():
    config = Config()
    assert config.source.uri == "demo"
    assert [o.uri for o in config.outputs] == ["dream.mp4"]
    assert config.model.name == "efficientnet_lite0"
