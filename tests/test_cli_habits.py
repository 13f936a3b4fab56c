"""The first hour of use: help and defaults, global options anywhere, --width that works,
progress on long commands, a still as a clip of a stated length, a stop summary that adds up."""

from __future__ import annotations

import argparse
import json
import os
import re
import threading
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import skimage.data

from streamdream.app import run_pipeline
from streamdream.arguments import build_parser
from streamdream.commands.run import stop_summary
from streamdream.config import parse_config
from streamdream.pipeline.runner import Pipeline
from streamdream.sinks import open_sink
from streamdream.sources import open_source
from tests.fixtures.media import write_clip
from tests.helpers import streamdream

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def tiny_dream(model: Path) -> list[str]:
    return ["--model", str(model), "--layers", "conv2", "--octaves", "1", "--seed", "1"]


@pytest.fixture(scope="module")
def cat_png(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("img") / "cat.png"
    cv2.imwrite(str(path), cv2.cvtColor(cv2.resize(skimage.data.chelsea(), (240, 160), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2BGR))
    return path


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_option_has_help_text_and_shows_its_default():
    parser = build_parser()
    for name, command in {"": parser, **subcommands(parser)}.items():
        text = command.format_help()
        for action in command._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            assert action.help and action.help.strip(), f"streamdream {name} {action.option_strings or action.dest}: no help"
            if action.option_strings and not action.required and action.nargs != 0 and not isinstance(action, argparse._VersionAction):
                # an option that takes a value says what it is when not given
                assert "default" in command._get_formatter()._get_help_string(action), f"streamdream {name} {action.option_strings}"
        assert "exit codes: 0 done" in text or name == ""


@pytest.mark.parametrize("where", ["before", "after"])
def test_global_options_work_before_and_after_the_command(where):
    args = ["--log-level", "warning", "--tf-verbose"]
    argv = args + ["run", "--input", "demo"] if where == "before" else ["run", "--input", "demo"] + args
    parsed = build_parser().parse_args(argv)
    assert (parsed.log_level, parsed.tf_verbose, parsed.input) == ("WARNING", True, "demo")
    plain = build_parser().parse_args(["run"])
    assert (plain.log_level, plain.tf_verbose) == ("INFO", False)


def smoothness(original: np.ndarray, dreamed: np.ndarray, width: int) -> float:
    """Share of the dream's change that a picture ``width`` wide cannot hold (0: none)."""
    change = dreamed.astype(np.float32) - original.astype(np.float32)
    h, w = change.shape[:2]
    small = cv2.resize(change, (width, round(h * width / w)), interpolation=cv2.INTER_AREA)
    coarse = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    return float(np.abs(change - coarse).mean() / (np.abs(change).mean() + 1e-6))


def test_image_dreams_at_width_and_shows_octaves_and_steps(tiny_model_path, cat_png, tmp_path):
    narrow, full = tmp_path / "narrow.png", tmp_path / "full.png"
    proc = streamdream("image", cat_png, "-o", narrow, "--width", "60", "--steps", "6", "--step-size", "8", *tiny_dream(tiny_model_path))
    assert proc.returncode == 0, proc.stderr
    assert "dreaming" in proc.stderr and "(240x160) at 60x40" in proc.stderr
    assert re.search(r"octave 1: 100%.*\b6/6\b", proc.stderr), proc.stderr  # the progress bar: octaves and steps
    proc = streamdream("image", cat_png, "-o", full, "--steps", "6", "--step-size", "8", "--no-progress", *tiny_dream(tiny_model_path))
    assert proc.returncode == 0 and "6/6" not in proc.stderr
    source = cv2.imread(str(cat_png))
    narrow_img, full_img = cv2.imread(str(narrow)), cv2.imread(str(full))
    assert narrow_img.shape == full_img.shape == source.shape  # the picture keeps its size
    assert np.abs(narrow_img.astype(int) - source).mean() > 1  # and it was dreamed
    # dreamed at 60 px: its change is coarse; the full-size dream's is not
    assert smoothness(source, narrow_img, 60) < 0.5 * smoothness(source, full_img, 60)


def test_a_progress_bar_does_not_change_the_dream(tiny_model_path):
    from streamdream.config import DreamConfig, ModelConfig
    from streamdream.dream.engine import DreamEngine
    from streamdream.models.loader import load_dream_model

    model = load_dream_model(ModelConfig(name=str(tiny_model_path), layers=["conv2"], preprocess="tf"))
    config = DreamConfig(seed=3, octaves=2, steps=3, step_size=8.0)
    picture = cv2.resize(skimage.data.chelsea(), (160, 120), interpolation=cv2.INTER_AREA).astype(np.float32)
    steps = []
    plain = DreamEngine(model, config).dream(picture)
    shown = DreamEngine(model, config).dream(picture, on_step=lambda octave, step: steps.append((octave, step)))
    assert steps == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]  # every step of every octave, in order
    assert np.abs(plain - picture).mean() > 1  # it dreamed
    np.testing.assert_allclose(shown, plain, atol=0.05)  # stepping one call at a time: the same draws, the same dream


def test_zoom_dreams_at_width_and_shows_its_frames(tiny_model_path, cat_png, tmp_path):
    out = tmp_path / "zoom.mp4"
    proc = streamdream("zoom", cat_png, "-o", out, "--frames", "3", "--width", "80", "--steps", "2", *tiny_dream(tiny_model_path))
    assert proc.returncode == 0, proc.stderr
    assert "dreamed at 80x53" in proc.stderr and re.search(r"zoom: 100%.*\b3/3\b", proc.stderr)
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (240, 160) and sum(1 for _ in container.decode(stream)) == 3


def test_evaluate_shows_its_progress(tmp_path):
    clip = write_clip(tmp_path / "in.mp4", frames=12)
    proc = streamdream("evaluate", clip, clip)
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"evaluating: 100%.*\b12/12\b", proc.stderr), proc.stderr


def test_bench_shows_its_progress(tmp_path):
    # --measures none: the engine settings (one process each, 4-5 minutes on 2 loaded cores) are the next test's
    proc = streamdream("bench", "--models", "efficientnet_lite0", "--sizes", "64x48", "--steps", "1", "--frames", "0", "--json",
                       "--measures", "none")
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"bench efficientnet_lite0: 100%.*\b1/1\b", proc.stderr), proc.stderr
    [row] = json.loads(proc.stdout)["models"]
    assert row["model"] == "efficientnet_lite0" and row["size"] == "64x48" and row["dream_step_ms"] > 0


def test_bench_compares_an_engine_setting_with_the_baseline(tmp_path):
    # one setting (each runs in a process of its own beside the baseline's and the default's): ~80 s here
    proc = streamdream("bench", "--models", "efficientnet_lite0", "--sizes", "64x48", "--steps", "1", "--frames", "0", "--json",
                       "--measures", "remapper", timeout=600)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)["engine"]["rows"]
    assert [row for row in rows if "error" in row] == []
    assert {row["setting"] for row in rows} == {"default engine settings", "Grappler remapper on"}
    assert all(row["step_ms"] > 0 and row["baseline_ms"] > 0 for row in rows)
    assert all(row["dream_ms"] > 0 for row in rows if row["setting"] == "default engine settings")


def test_a_still_becomes_a_clip_of_the_stated_length(tiny_model_path, cat_png, tmp_path, workers):
    out = tmp_path / "still.mp4"
    config = parse_config(
        {
            "source": f"image:{cat_png}?seconds=0.4&fps=10",
            "outputs": [str(out)],
            "model": {"name": str(tiny_model_path), "layers": "conv2"},
            "dream": {"octaves": 1, "steps": 1, "width": 96},
            "pipeline": {"progress": False},
        }
    )
    result = run_pipeline(config, workers)
    assert result.error is None and result.frames_out == 4
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        times = [float(f.pts * stream.time_base) for f in container.decode(stream)]
    assert times == pytest.approx([0.0, 0.1, 0.2, 0.3], abs=1e-3)


class SlowProcessor:
    def process(self, frame):
        time.sleep(0.05)
        return frame


def test_the_stop_summary_adds_up(workers):
    source = open_source(parse_config({"source": "demo?live=1&width=160&height=120&fps=60"}).source, workers=workers)
    sink = open_sink(parse_config({"outputs": ["null"]}).outputs[0], workers=workers)
    run = workers.group("run")
    pipeline = Pipeline(source, lambda info: SlowProcessor(), [sink], queue_size=2, workers=run)
    timer = threading.Timer(1.0, run.stop.set)
    timer.start()
    result = pipeline.run()
    timer.cancel()
    line = stop_summary(result, "null")
    match = re.match(r"(\d+) frames in, (\d+) out, (\d+) dropped(?: \(([^)]*)\))?(?:, (\d+) in flight when stopped)? -> null$", line)
    assert match, line
    frames_in, frames_out, dropped = (int(g) for g in match.groups()[:3])
    in_flight = int(match.group(5) or 0)
    assert frames_in == frames_out + dropped + in_flight and in_flight >= 0, line
    reasons = dict(item.rsplit(" ", 1) for item in match.group(4).split(", ")) if match.group(4) else {}
    assert sum(int(v) for v in reasons.values()) == dropped, line
