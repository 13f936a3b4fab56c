"""The dream step on the real offline model (EfficientNet-Lite0) and real photos."""

import numpy as np
import pytest
import skimage.data

from streamdream.config import DreamConfig, ModelConfig
from streamdream.dream.engine import DreamEngine, octave_sizes, resize, zoom_frame
from streamdream.images import write_image
from streamdream.models.loader import load_dream_model


def photo(name="chelsea", width=320):
    image = getattr(skimage.data, name)().astype(np.float32)
    height = round(image.shape[0] * width / image.shape[1])
    return resize(image, width, height)


@pytest.fixture(scope="module")
def engine(lite0_model):
    return DreamEngine(lite0_model, DreamConfig(octaves=2, steps=6, step_size=2.0, seed=0))


def test_dream_raises_the_target_layers_activation(engine):
    image = photo()
    before = engine.layer_activation(image)
    values = [before]
    current = image
    for _ in range(3):
        current = engine.ascend(current, 4)
        values.append(engine.layer_activation(current))
    assert values == sorted(values), f"activation should rise step after step: {values}"
    assert values[-1] > before * 1.3


def test_dream_changes_the_picture_by_a_sensible_amount(engine):
    image = photo()
    dreamed = engine.dream(image)
    change = np.abs(dreamed - image).mean()
    assert 2.0 < change < 40.0, change  # visibly dreamed, not destroyed
    assert dreamed.shape == image.shape and dreamed.min() >= 0 and dreamed.max() <= 255
    assert engine.layer_activation(dreamed) > engine.layer_activation(image)


def test_zero_steps_return_the_picture_unchanged(engine):
    image = photo("coffee")
    np.testing.assert_array_equal(engine.dream(image, steps=0), image)


def test_same_size_frame_does_not_retrace(lite0_model):
    engine = DreamEngine(lite0_model, DreamConfig(octaves=1, steps=1, seed=1))
    engine.dream(photo(width=160))
    traces = engine.trace_count
    engine.dream(photo("coffee", width=160))
    assert engine.trace_count == traces == 1
    engine.dream(photo(width=200))  # a new size does not retrace either: the signature leaves H, W open
    assert engine.trace_count == 1


def test_seeded_dreams_repeat(lite0_model):
    a = DreamEngine(lite0_model, DreamConfig(octaves=1, steps=2, seed=7)).dream(photo(width=128))
    b = DreamEngine(lite0_model, DreamConfig(octaves=1, steps=2, seed=7)).dream(photo(width=128))
    np.testing.assert_allclose(a, b, atol=1e-3)


def test_tiled_gradient_covers_the_whole_frame(lite0_model):
    """With tiles smaller than the frame every tile is dreamed, including the far edges."""
    engine = DreamEngine(lite0_model, DreamConfig(octaves=1, steps=2, tile_size=128, jitter=0, seed=0))
    image = photo(width=300)
    change = np.abs(engine.dream(image) - image).mean(axis=2)
    h, w = change.shape
    for y0, x0 in [(0, 0), (0, w - 64), (h - 64, 0), (h - 64, w - 64), (h // 2 - 32, w // 2 - 32)]:
        assert change[y0 : y0 + 64, x0 : x0 + 64].mean() > 0.5


def test_4k_frame_dreams_in_bounded_memory(lite0_model):
    """3840x2160 in 512-px tiles: the peak resident memory rises far less than an untiled pass would need."""
    import resource

    engine = DreamEngine(lite0_model, DreamConfig(octaves=1, steps=1, tile_size=512, seed=0))
    engine.dream(np.full((256, 256, 3), 128, np.float32))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB
    image = resize(photo(width=960), 3840, 2160)
    dreamed = engine.dream(image)
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before
    assert dreamed.shape == (2160, 3840, 3)
    assert np.abs(dreamed - image).mean() > 0.3
    assert grown < 3000, f"peak memory grew {grown:.0f} MiB"


def test_channel_selection_changes_the_objective(lite0_model):
    whole = load_dream_model(ModelConfig(name="efficientnet_lite0", layers="block_6"))
    some = load_dream_model(ModelConfig(name="efficientnet_lite0", layers=[{"name": "block_6", "channels": [3, 17]}]))
    image = photo(width=160)
    a = DreamEngine(whole, DreamConfig(octaves=1, steps=3, seed=0)).dream(image)
    b = DreamEngine(some, DreamConfig(octaves=1, steps=3, seed=0)).dream(image)
    assert np.abs(a - b).mean() > 1.0


def test_guide_image_pulls_toward_the_guide(lite0_model, tmp_path):
    """A dream guided by a picture ends closer, in feature space, to that picture than an unguided one."""
    guide_path = tmp_path / "guide.png"
    guide = photo("coffee", width=160)
    write_image(guide_path, guide.astype(np.uint8))
    image = photo("astronaut", width=160)
    guided = DreamEngine(lite0_model, DreamConfig(octaves=1, steps=8, guide=guide_path, seed=0))
    free = DreamEngine(lite0_model, DreamConfig(octaves=1, steps=8, seed=0))
    score = guided.layer_activation  # the guide objective: best-match dot product with guide features
    assert score(guided.dream(image)) > score(free.dream(image))
    assert score(guided.dream(image)) > score(image)


def test_blend_dreams_a_mix_of_two_pictures(lite0_model, tmp_path):
    from streamdream.commands.stills import dream_at_width
    from streamdream.sources.blend import still_blend

    other_path = tmp_path / "other.png"
    write_image(other_path, np.zeros((50, 80, 3), np.uint8))
    config = DreamConfig(octaves=1, steps=0, blend_with=str(other_path), blend=0.25)
    engine = DreamEngine(lite0_model, config)
    image = photo(width=160)
    np.testing.assert_allclose(dream_at_width(engine, image, None, blend=still_blend(config)), image * 0.75, atol=1e-3)


def test_octave_sizes_and_zoom():
    assert octave_sizes(640, 480, 3, 2.0) == [(160, 120), (320, 240), (640, 480)]
    assert octave_sizes(100, 60, 4, 2.0) == [(100, 60)]  # smaller octaves would be under 48 px
    image = np.zeros((100, 100, 3), np.float32)
    image[45:55, 45:55] = 255
    zoomed = zoom_frame(image, 2.0)
    assert zoomed[40:60, 40:60].mean() > 200 and zoomed[:30].max() == 0


def test_a_new_strength_reuses_the_compiled_step_and_a_new_seed_does_not():
    # a live strength fader (OSC, the API) builds a look per value: each must not retrace
    from streamdream.config import Config
    from streamdream.service.director import LookBuilder

    builder = LookBuilder()
    base = Config(dream=DreamConfig(octaves=1, steps=2, seed=3))
    first = builder.engine(base)
    image = photo(width=128)
    weak = first.dream(image)
    traces = first.trace_count
    stronger = builder.engine(base.model_copy(update={"dream": base.dream.model_copy(update={"strength": 2.0})}))
    assert stronger is not first and stronger.step is first.step and stronger.config.strength == 2.0
    strong = stronger.dream(image)
    assert stronger.trace_count == traces  # no new graph
    assert np.abs(strong - image).mean() > 1.5 * np.abs(weak - image).mean()  # and the strength took
    reseeded = builder.engine(base.model_copy(update={"dream": base.dream.model_copy(update={"seed": 4})}))
    assert reseeded.step is not first.step
