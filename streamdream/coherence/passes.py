"""Two passes over a file (``coherence.passes: 2``): the second runs backward in time.

Ruder, Dosovitskiy and Brox's multi-pass video stylisation (2016/2018): one pass forward
only ever carries a dream from the past, so what a frame shows depends on which way the
video runs, and content dreamed late (revealed at a pan's edge, uncovered behind a moving
object, or refined over many frames) never lends its dream to the frames before it. The
second pass walks the first pass's details from the last frame back to the first:

* frame T-1 keeps its first-pass detail;
* frame t gets the second-pass detail of frame t+1 carried onto it along the flow (the
  same checks as flow mode: occlusion, colour, stillness), blended half and half with its
  own first-pass detail where the carry holds (feathered), its own detail elsewhere;
* the blend's level is brought back to the first pass's, so averaging two patterns does
  not fade the dream.

It costs no gradient steps: a flow both ways per frame and the details kept on disk (float16
at the dream resolution, in a temporary file). ``BackwardPass`` is the algorithm, fed frame by
frame; ``TwoPassProcessor`` is the pipeline's processor for a file: it runs both passes over a
second reading of the input before the first frame goes out, then composes each frame the
pipeline hands it with its second-pass detail, so frames, timestamps and audio are the
one-pass run's.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from ..frames import Frame
from .flow import to_gray

if TYPE_CHECKING:  # the processors load Keras; this module needs only their methods
    from .processors import FlowProcessor

log = logging.getLogger(__name__)

BACKWARD_SHARE = 0.5  # of a frame's second-pass detail that comes from the frame after it, where carried
FEATHER = 5  # px: the carried mask is blurred over this many pixels (no seam at its edge)


class DetailStore:
    """Details at the dream resolution, one per frame, kept in a temporary file as float16."""

    def __init__(self, folder: str | Path | None = None) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="streamdream-passes-", dir=folder)
        self._path = Path(self._dir.name) / "details.f16"
        self._file = self._path.open("w+b")
        self.shapes: list[tuple[int, ...]] = []
        self._offsets: list[int] = []

    def __len__(self) -> int:
        return len(self.shapes)

    def append(self, detail: np.ndarray) -> None:
        data = np.ascontiguousarray(detail, np.float16)
        self._file.seek(0, 2)
        self._offsets.append(self._file.tell())
        self._file.write(data.tobytes())
        self.shapes.append(data.shape)

    def __getitem__(self, index: int) -> np.ndarray:
        shape = self.shapes[index]
        self._file.seek(self._offsets[index])
        data = self._file.read(int(np.prod(shape)) * 2)
        return np.frombuffer(data, np.float16).reshape(shape).astype(np.float32)

    def __setitem__(self, index: int, detail: np.ndarray) -> None:
        data = np.ascontiguousarray(detail, np.float16)
        if data.shape != self.shapes[index]:
            raise ValueError(f"detail {index} changes shape: {self.shapes[index]} to {data.shape}")
        self._file.seek(self._offsets[index])
        self._file.write(data.tobytes())

    def close(self) -> None:
        self._file.close()
        self._dir.cleanup()


class BackwardPass:
    """The first pass (``forward``, frame by frame), the second (``backward``), then ``compose``."""

    def __init__(self, processor: FlowProcessor, folder: str | Path | None = None) -> None:
        self.processor = processor
        self.details = DetailStore(folder)
        self.grays = DetailStore(folder)
        self.cuts: list[bool] = []  # per frame: a scene cut before it (nothing is carried across)
        self._shown = 0
        self.done = False

    def forward(self, frame: Frame) -> None:
        """Pass 1 on one frame: flow mode's dream, kept."""
        p = self.processor
        small = p.downscale(frame.image)
        dreamed = p.dream_detail(small)
        self.cuts.append(p.cuts.threshold > 0 and p.cuts.last_score > p.cuts.threshold)
        p.frames += 1
        p.steps_run += dreamed.steps
        p.full_dreams += dreamed.full
        p.observer.dream_steps(dreamed.steps)
        self.details.append(dreamed.detail)
        self.grays.append(to_gray(small).astype(np.float32))

    def backward(self) -> None:
        """Pass 2: from the last frame back to the first (see the module docstring)."""
        p = self.processor
        engine = p.engine
        later: np.ndarray | None = None
        later_gray: np.ndarray | None = None
        for t in range(len(self.details) - 1, -1, -1):
            own, gray = self.details[t], self.grays[t].astype(np.uint8)
            if later is not None and later_gray is not None and later.shape == own.shape and not self.cuts[t + 1]:
                carried = p.warper.carry(later, later_gray, gray)
                weight = cv2.blur(carried.visible.astype(np.float32), (FEATHER, FEATHER))[..., None] * BACKWARD_SHARE
                mixed = own + weight * (carried.values - own)
                small = _grey_rgb(gray)
                target = float(np.abs(engine.tone.apply(own, small)).mean())
                level = float(np.abs(engine.tone.apply(mixed, small)).mean())
                if level > 0 and target > 0:
                    mixed *= min(target / level, 2.0)
                self.details[t] = mixed
                own = mixed
            later, later_gray = own, gray
        self.grays.close()
        self.done = True

    @property
    def remaining(self) -> int:
        """Frames not composed yet."""
        return len(self.details) - self._shown

    def compose(self, frame: Frame, gain: float = 1.0) -> Frame:
        """The next frame out, with its second-pass detail (frames come in the first pass's order)."""
        from .processors import compose  # noqa: PLC0415 - loads Keras and its backend (loaded already with the processor)

        if self._shown >= len(self.details):
            raise ValueError(f"two-pass: frame {frame.index} is beyond the {len(self.details)} frames of the first pass")
        detail = self.details[self._shown]
        self._shown += 1
        image = compose(frame.image, detail if gain == 1.0 else detail * np.float32(gain), tone=self.processor.engine.tone)
        return Frame(image, frame.index, frame.pts, frame.captured_at)

    def close(self) -> None:
        self.details.close()
        if not self.done:
            self.grays.close()


def _grey_rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[..., None].astype(np.float32), 3, axis=2)


class TwoPassProcessor:
    """The pipeline's processor for ``coherence.passes: 2`` on a file.

    ``frames``: a function returning a fresh reading of the same input (the frames the
    pipeline will hand over, in the same order). Both passes run on the first ``process``.
    """

    mode = "flow"

    def __init__(self, processor: FlowProcessor, frames: Callable[[], Iterable[Frame]],
                 stopped: Callable[[], bool] = lambda: False) -> None:
        self.processor = processor
        self.engine = processor.engine
        self._frames = frames
        self._stopped = stopped
        self._passes: BackwardPass | None = None

    def __getattr__(self, name: str) -> Any:  # counts and settings read by the pipeline and the service
        return getattr(self.processor, name)

    def prepare(self) -> None:
        passes = BackwardPass(self.processor)
        log.info("two passes: first pass (forward) running")
        for frame in self._frames():
            if self._stopped():
                break
            passes.forward(frame)
        log.info("two passes: first pass over %d frames done, second pass (backward) running", len(passes.details))
        passes.backward()
        self._passes = passes

    def process(self, frame: Frame, gain: float = 1.0) -> Frame:
        if self._passes is None:
            self.prepare()
        assert self._passes is not None
        if self._passes.remaining <= 0:  # stopped during the first pass: the rest goes out bare
            return frame
        return self._passes.compose(frame, gain)

    def close(self) -> None:
        if self._passes is not None:
            self._passes.close()


__all__ = ["BACKWARD_SHARE", "BackwardPass", "DetailStore", "TwoPassProcessor"]
