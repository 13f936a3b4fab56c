"""A second input blended into the first before the dream (``dream.blend_with``), on real clips.

A file run blends a clip (with sound) with a shorter clip that loops: every frame comes out,
with the first clip's timestamps and audio, and each output frame is measured as a mix of the
two inputs (the dream is off, ``steps: 0``, so the output is the blend itself): the second
input's share is the one asked for, and its frame is the one the loop puts there. Live, a
``serve`` of the demo scene blended with a looping file: the file is taken away and put back;
the demo keeps flowing, the fault shows in the state, metrics and health, and the blend comes
back. Presets with their own second inputs crossfade from one to the other, and the blend
control changes the share at once.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import av
import numpy as np
import pytest

from streamdream.app import run_pipeline
from streamdream.config import parse_config
from streamdream.errors import ConfigError
from streamdream.preflight import check_config
from streamdream.sources.blend import blend_images, fit_to, is_still
from tests.fixtures.media import write_clip, write_frames
from tests.fixtures.servers import http_request
from tests.fixtures.sound import write_burst_clip
from tests.helpers import wait_for
from tests.test_pipeline import audio_duration, video_timestamps
from tests.test_service_daemon import TOKEN, Running, fast, write

SECOND_FRAMES = 10  # the second clip: 10 frames at 25 fps, looped under a 40-frame first clip


def second_clip(path: Path, width: int = 200, height: int = 100, frames: int = SECOND_FRAMES) -> list[np.ndarray]:
    """Frames unlike the first clip's and unlike each other (a level and a stripe per frame), lossless."""
    y, x = np.mgrid[0:height, 0:width]
    pictures = []
    for i in range(frames):
        image = np.empty((height, width, 3), np.uint8)
        image[..., 0] = 20 + 22 * i
        image[..., 1] = np.where((x // 10) % frames == i, 250, 30).astype(np.uint8)
        image[..., 2] = (y * 2 + 9 * i) % 256
        pictures.append(image)
    write_frames(path, pictures, fps=25)
    return pictures


def decoded(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def share(out: np.ndarray, first: np.ndarray, second: np.ndarray) -> tuple[float, float]:
    """The least-squares share r of ``second`` in out = (1 - r) first + r second, and the residual."""
    a, b, o = (np.asarray(v, np.float64).ravel() for v in (first, second, out))
    d = b - a
    r = float(np.dot(o - a, d) / np.dot(d, d))
    return r, float(np.abs(o - ((1 - r) * a + r * b)).mean())


def test_fit_and_modes() -> None:
    wide = np.zeros((100, 200, 3), np.uint8)
    wide[:, :50] = 200  # a band on the left: cover crops it away, contain keeps it with bars
    assert fit_to(wide, 100, 100, "cover").shape == (100, 100, 3) and fit_to(wide, 100, 100, "cover").max() == 0
    contained = fit_to(wide, 100, 100, "contain")
    assert contained.shape == (100, 100, 3) and contained[:20].max() == 0 and contained[40:60, :20].min() == 200
    assert fit_to(wide, 100, 100, "stretch")[:, :20].min() == 200
    a, b = np.full((2, 2, 3), 100.0), np.full((2, 2, 3), 200.0)
    assert blend_images(a, b, 0.5, "mix")[0, 0, 0] == pytest.approx(150)
    assert blend_images(a, b, 1.0, "screen")[0, 0, 0] == pytest.approx(255 - 155 * 55 / 255)
    assert blend_images(a, b, 1.0, "multiply")[0, 0, 0] == pytest.approx(100 * 200 / 255)
    assert blend_images(a, b, 0.5, "difference")[0, 0, 0] == pytest.approx(100)
    assert is_still("photo.JPG") and is_still("image:photo.png") and not is_still("image:photo.png?seconds=5")
    assert not is_still("clip.mp4") and not is_still("demo") and not is_still("rtsp://host/a.png")


def test_a_file_run_blends_a_looped_shorter_clip_into_every_frame(tiny_model_path: Path, tmp_path: Path, workers) -> None:
    first = write_clip(tmp_path / "first.mp4", width=160, height=120, fps=25, frames=40, audio=True)
    seconds = second_clip(tmp_path / "second.mkv")
    out = tmp_path / "out.mp4"
    config = parse_config({
        "source": {"uri": str(first)},
        "outputs": [{"uri": str(out), "crf": 0}],
        "model": {"name": str(tiny_model_path), "layers": "conv2"},
        "dream": {"octaves": 1, "steps": 0, "seed": 0, "blend_with": str(tmp_path / "second.mkv"), "blend": 0.4},
        "coherence": {"mode": "independent"},
        "pipeline": {"progress": False},
    })  # fmt: skip
    check_config(config, "run")
    result = run_pipeline(config, workers)
    assert result.error is None and result.frames_out == 40
    assert video_timestamps(out) == pytest.approx(video_timestamps(first), abs=1e-3)
    assert audio_duration(out) == pytest.approx(audio_duration(first), abs=1 / 25)
    outs, firsts = decoded(out), decoded(first)
    fitted = [fit_to(s, 160, 120, "cover") for s in seconds]
    for index, (picture, base) in enumerate(zip(outs, firsts, strict=True)):
        r, residual = share(picture, base, fitted[index % SECOND_FRAMES])
        assert r == pytest.approx(0.4, abs=0.04), f"frame {index}: the second clip's share is {r:.3f}"
        # the loop's own frame fits; its neighbours do not
        wrong = share(picture, base, fitted[(index + 3) % SECOND_FRAMES])[1]
        assert residual < 3.0 and wrong > 2 * residual, f"frame {index}: residual {residual:.2f}, wrong frame {wrong:.2f}"


def test_the_soundtrack_drives_the_blend(tiny_model_path: Path, tmp_path: Path, workers) -> None:
    """audio_react.blend: [0, 1]: the second input's share, measured per frame, follows loud bursts."""
    from tests.test_audio_react import BURSTS, in_bursts, video_frames

    clip = write_burst_clip(tmp_path / "bursts.mp4", BURSTS)
    seconds = second_clip(tmp_path / "second.mkv")
    out = tmp_path / "out.mkv"
    config = parse_config({
        "source": str(clip), "outputs": [{"uri": str(out), "crf": 0}],
        "model": {"name": str(tiny_model_path), "layers": "conv2"},
        "dream": {"octaves": 1, "steps": 0, "blend_with": str(tmp_path / "second.mkv"), "blend": 0.8},
        "audio_react": {"strength": [1.0, 1.0], "blend": [0.0, 1.0]}, "pipeline": {"progress": False},
    })  # fmt: skip
    result = run_pipeline(config, workers)
    assert result.error is None and result.frames_out == 100
    times, firsts = video_frames(clip)
    _, outs = video_frames(out)
    height, width = firsts[0].shape[:2]
    fitted = [fit_to(p, width, height, "cover") for p in seconds]
    shares = np.array([share(o, f, fitted[i % SECOND_FRAMES])[0] for i, (o, f) in enumerate(zip(outs, firsts, strict=True))])
    loud = in_bursts(times)
    correlation = float(np.corrcoef(shares, loud)[0, 1])
    assert correlation >= 0.7, (correlation, shares.round(2).tolist())
    # silence before the first burst: the first input alone; in the bursts: most of the 0.8 asked for
    assert shares[times < BURSTS[0][0]].max() < 0.05 and shares[loud == 1].mean() > 0.5, shares.round(2).tolist()


def test_only_run_and_serve_blend_a_moving_input(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "second.mp4", frames=5)
    config = parse_config({"dream": {"blend_with": str(clip), "blend": 0.5}, "outputs": [str(tmp_path / "o.mp4")]})
    check_config(config, "run")  # a video: fine for run
    from streamdream.preflight import Problems, check_dream

    problems = Problems()
    check_dream(config, problems)  # `image`, `zoom`, the cluster: a picture only
    with pytest.raises(ConfigError, match="a moving second input is blended by `run` and `serve`"):
        problems.raise_first()
    missing = parse_config({"dream": {"blend_with": str(tmp_path / "none.mp4"), "blend": 0.5}, "outputs": ["null"]})
    with pytest.raises(ConfigError, match=r"dream.blend_with: .*none\.mp4"):
        check_config(missing, "run")
    typo = parse_config({"playlist": {"presets": {"night": {"blend_with": str(tmp_path / "nigth.mp4")}}}, "outputs": ["null"]})
    with pytest.raises(ConfigError, match=r"playlist.presets.night.blend_with: .*nigth\.mp4"):
        check_config(typo, "serve")
    old = parse_config({"dream": {"blend_with": tmp_path / "still.png", "blend": 0.5}})  # a Path, as configs had it
    assert old.dream.blend_with == str(tmp_path / "still.png")


def green_excess(picture: np.ndarray) -> float:
    p = picture.astype(np.float32)
    return float((p[..., 1] - (p[..., 0] + p[..., 2]) / 2).mean())


def solid_clip(path: Path, colour: tuple[int, int, int], frames: int = 12) -> Path:
    return write_frames(path, [np.full((90, 160, 3), colour, np.uint8)] * frames, fps=25)


def test_serve_goes_on_alone_while_the_second_input_is_gone_and_blends_it_again(tiny_model_path: Path, tmp_path: Path) -> None:
    green = solid_clip(tmp_path / "green.mkv", (0, 255, 0))
    blue = solid_clip(tmp_path / "blue.mkv", (0, 0, 255))
    presets = {"greens": {}, "blues": {"blend_with": str(blue), "blend": 0.8}}
    config = write(tmp_path / "blend.yaml", fast(
        tiny_model_path,
        source={"uri": "demo?width=160&height=120&fps=20&live=1"},
        dream={"octaves": 1, "steps": 0, "seed": 0, "blend_with": str(green), "blend": 0.6},
        reconnect={"initial": 0.2, "max": 0.5},
        playlist={"presets": presets, "crossfade": 0.5},
        control={"token": TOKEN},
    ))  # fmt: skip
    running = Running(config)
    looks = running.service.assembly.looks

    def picture() -> np.ndarray:
        frames = running.state()["frames"]["out"]
        wait_for(lambda: running.state()["frames"]["out"] >= frames + 3, 20, "three frames more")
        return looks.last_output

    try:
        wait_for(lambda: running.state().get("blend_source", {}).get("up"), 20, "the second input")
        assert running.metrics()["streamdream_blend_source_up"] == 1
        blended = green_excess(picture())
        assert blended > 80, f"the green second input does not show: green excess {blended:.1f}"
        # the looping file is taken away: at its next pass it cannot be opened; the demo goes on alone
        green.rename(tmp_path / "away.mkv")
        wait_for(lambda: running.state()["blend_source"]["up"] is False, 20, "the second input to be lost")
        assert running.metrics()["streamdream_blend_source_up"] == 0
        out = running.state()["frames"]["out"]
        wait_for(lambda: running.state()["frames"]["out"] > out + 20, 20, "the first input to keep flowing")
        alone = green_excess(picture())
        assert alone < blended - 50, f"still green while the second input is gone: {alone:.1f} vs {blended:.1f}"
        status, reason = http_request(running.url + "/healthz")
        assert status == 200 and "second input (dream.blend_with) down" in reason
        state = running.state()
        assert state["source"]["up"] is True and state["blend_source"]["reconnects"] >= 1
        assert "away" not in json.dumps(state) and state["blend_source"]["error"]
        # put back: retried, and blended again
        (tmp_path / "away.mkv").rename(green)
        wait_for(lambda: running.state()["blend_source"]["up"] is True, 20, "the second input to come back")
        wait_for(lambda: green_excess(picture()) > 80, 20, "the blend to come back")
        assert running.metrics()["streamdream_blend_source_reconnects_total"] >= 1
        # the blend control: the share changes at once, on the same look (no new build)
        processor = looks.current.processor
        status, body = http_request(running.url + "/api/blend", TOKEN, "POST", {"value": 0.1})
        assert status == 200, body
        wait_for(lambda: running.state()["blend"] == 0.1, 10, "the blend share 0.1")
        wait_for(lambda: green_excess(picture()) < blended - 50, 20, "a faint blend")
        assert looks.current.processor is processor
        assert http_request(running.url + "/api/blend", TOKEN, "POST", {"value": 1.5})[0] == 400
        # a preset with its own second input: crossfaded to, its share taken back from the control
        http_request(running.url + "/api/preset", TOKEN, "POST", {"name": "blues"})
        wait_for(lambda: (s := running.state())["showing"] == "blues" and not s["fading_to"], 30, "the blues preset")
        state = running.state()
        assert state["blend"] == 0.8 and state["blend_with"].endswith("blue.mkv")
        wait_for(lambda: float(picture()[..., 2].mean()) > 170, 20, "the blue second input")
    finally:
        assert running.close() == 0
    assert not [t for t in threading.enumerate() if t.name.startswith("blend-source")], "a second input's reader was left running"
