"""Students: `streamdream distill` end to end on a tiny student, and students refused or used by run and image.

One tiny student (8 channels, 2 blocks, 20 steps on 3 demo frames at 128 px) is distilled
once for the module; the tests then use it as a user would: through the CLI.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import skimage.data

from streamdream.config import ModelConfig
from streamdream.images import write_image
from streamdream.models.student_file import load_student, resolve_student

from .helpers import ENV, REPO, streamdream, wait_for

TINY = ["--frames", "3", "--pair-width", "128", "--train-steps", "20", "--batch", "2", "--crop", "64",
        "--channels", "8", "--blocks", "2", "--no-progress"]


@pytest.fixture(scope="module")
def tiny_student(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("student")
    out = folder / "tiny.student.npz"
    done = streamdream("distill", "demo", "-o", out, "--cache", folder / "pairs", *TINY, cwd=folder)
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stderr and "after 20 steps" in done.stderr
    return out


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("photo") / "chelsea.png"
    write_image(path, skimage.data.chelsea()[::4, ::4].copy())
    return path


def test_distill_writes_a_student_that_records_its_teacher_and_resumes(tiny_student: Path, tmp_path: Path) -> None:
    student = load_student(tiny_student)
    assert student.teacher["model"] == "efficientnet_lite0" and student.teacher["preset"] == "mid"
    assert student.teacher["settings"]["steps"] == 10 and student.meta["training"]["pairs"] == 3
    assert student.arch["channels"] == 8
    # the checkpoint carries on: 10 more steps from step 20, pairs from the cache (no teacher dream)
    copy = tmp_path / "tiny.student.npz"
    shutil.copy(tiny_student, copy)
    shutil.copy(tiny_student.with_name(tiny_student.name + ".ckpt.npz"), tmp_path / "tiny.student.npz.ckpt.npz")
    args = [a if a != "20" else "30" for a in TINY]
    done = streamdream("distill", "demo", "-o", copy, "--cache", tiny_student.parent / "pairs", "--resume", *args)
    assert done.returncode == 0, done.stderr
    assert "resuming at step 20" in done.stderr and "after 30 steps" in done.stderr
    assert load_student(copy).meta["training"]["steps"] == 30
    # an existing student is not replaced without -y or --resume
    again = streamdream("distill", "demo", "-o", copy, *TINY)
    assert again.returncode == 5 and "exists" in again.stderr


def test_ctrl_c_saves_a_usable_student_and_its_checkpoint(tiny_student: Path, tmp_path: Path) -> None:
    out = tmp_path / "stopped.student.npz"
    args = [a if a != "20" else "100000" for a in TINY]
    command = [sys.executable, "-m", "streamdream.cli", "distill", "demo", "-o", str(out), "--cache",
               str(tiny_student.parent / "pairs"), *args]
    with subprocess.Popen(command, env=ENV, stderr=subprocess.PIPE, text=True) as proc:
        checkpoint = tmp_path / "stopped.student.npz.ckpt.npz"
        wait_for(checkpoint.exists, 120, "the first checkpoint (step 100)")
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "the student is saved; carry on with --resume" in stderr
    assert load_student(out).meta["training"]["steps"] >= 100


def test_image_with_a_student(tiny_student: Path, photo: Path, tmp_path: Path) -> None:
    out = tmp_path / "dream.png"
    done = streamdream("image", photo, "-o", out, "--student", tiny_student, "--no-progress")
    assert done.returncode == 0, done.stderr
    source = skimage.data.chelsea()[::4, ::4].astype(np.float32)
    dreamed = skimage.io.imread(out).astype(np.float32)
    assert dreamed.shape == source.shape
    assert np.abs(dreamed - source).mean() > 3  # the detail is levelled to detail_level, tones kept


def test_a_student_of_another_teacher_is_refused(tiny_student: Path, photo: Path, tmp_path: Path) -> None:
    out = tmp_path / "dream.png"
    done = streamdream("image", photo, "-o", out, "--student", tiny_student, "--preset", "shallow")
    assert done.returncode == 3
    assert "distilled from another teacher" in done.stderr and "preset mid" in done.stderr
    assert "preset shallow" in done.stderr and "differs in: preset, layers" in done.stderr
    assert not out.exists()
    steps = streamdream("image", photo, "-o", out, "--student", tiny_student, "--steps", "4")
    assert steps.returncode == 3 and "dream.steps" in steps.stderr


def test_a_truncated_or_altered_student_is_refused(tiny_student: Path, photo: Path, tmp_path: Path) -> None:
    data = tiny_student.read_bytes()
    truncated = tmp_path / "cut.student.npz"
    truncated.write_bytes(data[: len(data) // 2])
    done = streamdream("image", photo, "-o", tmp_path / "a.png", "--student", truncated)
    assert done.returncode == 3 and "truncated or damaged" in done.stderr and str(truncated) in done.stderr
    missing = streamdream("image", photo, "-o", tmp_path / "b.png", "--student", tmp_path / "none.student.npz")
    assert missing.returncode == 3 and "does not exist" in missing.stderr


def test_the_shipped_student_and_its_live_config(tmp_path: Path) -> None:
    student = load_student(resolve_student("efficientnet_lite0-mid", ModelConfig()))
    assert student.teacher["model"] == "efficientnet_lite0" and student.teacher["preset"] == "mid"
    assert student.path.stat().st_size < 3_000_000
    done = streamdream("validate-config", REPO / "configs" / "live-student.yaml")
    assert done.returncode == 0, done.stderr
    # a changed shipped file is refused like a damaged weights download
    altered = dict(np.load(student.path, allow_pickle=False))
    altered["w000"] = altered["w000"] + 1.0
    fake = tmp_path / "fake.student.npz"
    np.savez(fake, **altered)
    refused = streamdream("image", "x.png", "-o", tmp_path / "o.png", "--student", fake)
    assert refused.returncode == 3 and "do not match their recorded sha256" in refused.stderr


def test_run_with_a_student_on_a_clip(tiny_student: Path, make_clip, tmp_path: Path) -> None:
    clip = make_clip(width=160, height=120, frames=12)
    out = tmp_path / "out.mp4"
    done = streamdream("run", "--input", clip, "--output", out, "--student", tiny_student, "--no-progress")
    assert done.returncode == 0, done.stderr
    with av.open(str(out)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 12 and frames[0].shape == (120, 160, 3)
