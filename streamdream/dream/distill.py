"""Distilling a student from its teacher: the training pairs, the loss and the loop.

1. **Pairs.** Every training frame is dreamed once by the teacher (``DreamEngine.dream_detail``)
   and the pair (frame, detail) is cached on disk under the teacher's key and the frame's
   hash, so a second run, a resume or another student of the same teacher dreams nothing
   again. The teacher is made deterministic for this: before each frame its random
   transforms restart from one seed, so every frame is dreamed with the same jitter and its
   patterns have a fixed phase relative to the picture rather than a random one.
2. **Loss** (Johnson et al. 2016's perceptual loss, at the teacher's own layers). Pixel
   regression alone learns the mean of patterns whose phase it cannot predict, which is
   nearly nothing; the dream objective alone paints one universal grating. So the student's
   dreamed picture ``x + s`` is compared with the teacher's ``x + t`` in the teacher's
   feature space, at the dream layers and a shallower one, each term normalised by what
   the teacher's detail changed there (1.0 = no better than no detail):
   * *features*: mean |phi(x + s) - phi(x + t)|: the same patterns in the same places;
   * *Gram*: the channels' co-activations (Gatys et al.): the same kind of patterns, where
     their places cannot be matched;
   * *pixels*: the 4x4-averaged details' L1: the broad shapes, whose phase the fixed jitter
     makes learnable;
   * *level*: mean |s| against mean |t|, squared: the same amount.
3. **Loop.** Adam with a cosine schedule over random crops; a progress bar with its ETA; a
   checkpoint (weights, optimizer state, step, time) every ``checkpoint_every`` steps and on
   stop, from which ``resume`` carries on where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from ..errors import StudentError
from ..models.loader import DreamModel
from ..models.student_file import identity_key, save_student
from .engine import DreamEngine
from .student import StudentArch, build_network

log = logging.getLogger(__name__)

DISTILL_SEED = 0x5EED  # the teacher's random transforms restart from this for every frame
LOSS_WEIGHTS = {"features": 1.0, "gram": 0.5, "pixels": 0.3, "level": 0.2}


# --- 1. pairs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pair:
    source: np.ndarray  # HxWx3 uint8
    detail: np.ndarray  # HxWx3 float16, the teacher's detail in levels


def frame_key(frame: np.ndarray, teacher_key: str) -> str:
    digest = hashlib.sha256(teacher_key.encode())
    digest.update(f"{frame.shape}".encode())
    digest.update(np.ascontiguousarray(frame).tobytes())
    return digest.hexdigest()[:24]


def dream_pairs(teacher: DreamEngine, teacher_key: str, frames: Iterable[np.ndarray], cache: Path,
                on_pair: Callable[[bool], None] | None = None, stop: Callable[[], bool] | None = None) -> list[Pair]:
    """Each frame (uint8 RGB) with the teacher's detail, from ``cache`` or dreamed now and cached.
    ``on_pair(cached)`` after each; ``stop()`` ends early."""
    cache.mkdir(parents=True, exist_ok=True)
    pairs = []
    for frame in frames:
        if stop is not None and stop():
            break
        path = cache / f"{frame_key(frame, teacher_key)}.npz"
        pair = _read_pair(path)
        cached = pair is not None
        if pair is None:
            teacher.reseed(DISTILL_SEED)
            detail = teacher.dream_detail(frame.astype(np.float32))
            pair = Pair(frame, detail.astype(np.float16))
            tmp = path.with_name(f".{path.name}.tmp{os.getpid()}.npz")
            np.savez(tmp, source=pair.source, detail=pair.detail)
            os.replace(tmp, path)
        pairs.append(pair)
        if on_pair is not None:
            on_pair(cached)
    return pairs


def _read_pair(path: Path) -> Pair | None:
    try:
        with np.load(path, allow_pickle=False) as archive:
            return Pair(archive["source"], archive["detail"])
    except (OSError, ValueError, KeyError, EOFError, Exception):  # noqa: BLE001 - a bad cache entry is dreamed again
        return None


# --- 2. loss -------------------------------------------------------------------------------------


def feature_model(teacher: DreamModel, extra_layers: Iterable[str] = ()) -> tuple[Any, list[str]]:
    """The teacher's network giving its dream layers' and ``extra_layers``' activations."""
    names = list(dict.fromkeys([*(spec.name for spec in teacher.layers), *extra_layers]))
    extractor = teacher.extractor
    outputs = [extractor.get_layer(name).output for name in names]
    return keras.Model(extractor.inputs, outputs, name="distill_features"), names


def _gram(features: Any) -> Any:
    shape = tf.shape(features)
    flat = tf.reshape(features, (shape[0], -1, shape[3]))
    return tf.matmul(flat, flat, transpose_a=True) / tf.cast(tf.shape(flat)[1], tf.float32)


def _mean_abs(x: Any) -> Any:
    return tf.reduce_mean(tf.abs(x))


class DistillLoss:
    """The loss of a student's detail ``s`` against the teacher's ``t`` on sources ``x``."""

    def __init__(self, teacher: DreamModel, extra_layers: Iterable[str] = (), weights: dict[str, float] | None = None):
        self.features, self.layer_names = feature_model(teacher, extra_layers)
        self.dream_layers = len({spec.name for spec in teacher.layers})  # they come first in layer_names
        self.preprocess = teacher.preprocess
        self.weights = weights or LOSS_WEIGHTS

    def activations(self, pictures: Any) -> list[Any]:
        out = self.features(self.preprocess(pictures), training=False)
        return [tf.cast(o, tf.float32) for o in (out if isinstance(out, (list, tuple)) else [out])]

    def __call__(self, x: Any, s: Any, t: Any) -> dict[str, Any]:
        plain = [tf.stop_gradient(a) for a in self.activations(x)]
        target = [tf.stop_gradient(a) for a in self.activations(x + t)]
        dreamed = self.activations(x + s)
        terms = {"features": 0.0, "gram": 0.0}
        for fx, ft, fs in zip(plain, target, dreamed):
            terms["features"] += _mean_abs(fs - ft) / (_mean_abs(ft - fx) + 1e-6)
            gt, gx = _gram(ft), _gram(fx)
            terms["gram"] += _mean_abs(_gram(fs) - gt) / (_mean_abs(gt - gx) + 1e-6)
        count = float(len(plain))
        terms = {k: v / count for k, v in terms.items()}
        pool = lambda d: tf.nn.avg_pool2d(d, 4, 4, "VALID")  # noqa: E731
        terms["pixels"] = _mean_abs(pool(s) - pool(t)) / (_mean_abs(pool(t)) + 1e-6)
        terms["level"] = tf.square(_mean_abs(s) / (_mean_abs(t) + 1e-6) - 1.0)
        terms["total"] = sum(self.weights[k] * terms[k] for k in self.weights)
        return terms


def feature_cosine(loss: DistillLoss, source: np.ndarray, student_detail: np.ndarray, teacher_detail: np.ndarray) -> float:
    """Cosine of the student's and the teacher's detail as the teacher's dream layers see them:
    (phi(x + s) - phi(x)) against (phi(x + t) - phi(x)), all dream layers' values in one vector."""
    batch = tf.constant(np.stack([source, source + student_detail, source + teacher_detail]).astype(np.float32))
    dream_layers = loss.activations(batch)[: loss.dream_layers]
    ds = np.concatenate([(a[1] - a[0]).numpy().ravel() for a in dream_layers])
    dt = np.concatenate([(a[2] - a[0]).numpy().ravel() for a in dream_layers])
    return float(ds @ dt / (np.linalg.norm(ds) * np.linalg.norm(dt) + 1e-12))


# --- 3. the loop ---------------------------------------------------------------------------------


@dataclass
class TrainSettings:
    steps: int = 3000
    batch: int = 8
    crop: int = 128
    learning_rate: float = 2e-3
    minutes: float | None = None  # stop (and save) after this long
    checkpoint_every: int = 100
    seed: int = 0


@dataclass
class TrainState:
    step: int = 0
    seconds: float = 0.0
    losses: dict[str, float] = field(default_factory=dict)


class Distiller:
    """Trains one student on cached pairs; ``checkpoint``/``restore`` make it resumable."""

    def __init__(self, loss: DistillLoss, arch: StudentArch, settings: TrainSettings) -> None:
        self.loss, self.arch, self.settings = loss, arch, settings
        self.network = build_network(arch)
        schedule = keras.optimizers.schedules.CosineDecay(settings.learning_rate, settings.steps, alpha=0.05)
        self.optimizer = keras.optimizers.Adam(schedule)
        self.optimizer.build(self.network.trainable_variables)
        self.state = TrainState()
        self.rng = np.random.default_rng(settings.seed)
        self._train_step = tf.function(self._step, reduce_retracing=True)

    def _step(self, x: Any, t: Any) -> dict[str, Any]:
        with tf.GradientTape() as tape:
            s = self.network(x, training=True)
            terms = self.loss(x, s, t)
        grads = tape.gradient(terms["total"], self.network.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.network.trainable_variables))
        return terms

    def batch(self, pairs: list[Pair]) -> tuple[np.ndarray, np.ndarray]:
        crop = self.settings.crop
        xs, ts = [], []
        for i in self.rng.integers(0, len(pairs), self.settings.batch):
            pair = pairs[int(i)]
            height, width = pair.source.shape[:2]
            size = min(crop, height, width) // 16 * 16
            y0 = int(self.rng.integers(0, height - size + 1))
            x0 = int(self.rng.integers(0, width - size + 1))
            xs.append(pair.source[y0:y0 + size, x0:x0 + size])
            ts.append(pair.detail[y0:y0 + size, x0:x0 + size])
        side = min(x.shape[0] for x in xs)
        return (np.stack([x[:side, :side] for x in xs]).astype(np.float32),
                np.stack([t[:side, :side] for t in ts]).astype(np.float32))

    def train(self, pairs: list[Pair], on_step: Callable[[TrainState], None] | None = None,
              stop: Callable[[], bool] | None = None, checkpoint: Callable[[], None] | None = None) -> TrainState:
        """Steps until ``settings.steps``, the time budget, or ``stop()``; returns the state reached."""
        if not pairs:
            raise StudentError("no training pairs: give frames or pictures to distill from")
        settings, state = self.settings, self.state
        started = time.monotonic() - state.seconds
        while state.step < settings.steps:
            if stop is not None and stop():
                break
            if settings.minutes is not None and time.monotonic() - started >= settings.minutes * 60:
                log.info("time budget of %.1f min reached at step %d", settings.minutes, state.step)
                break
            x, t = self.batch(pairs)
            terms = self._train_step(tf.constant(x), tf.constant(t))
            state.step += 1
            state.seconds = time.monotonic() - started
            smooth = 0.0 if state.step == 1 else 0.95
            for key, value in terms.items():
                value = float(value)
                state.losses[key] = smooth * state.losses.get(key, value) + (1 - smooth) * value
            if on_step is not None:
                on_step(state)
            if checkpoint is not None and state.step % settings.checkpoint_every == 0:
                checkpoint()
        return state

    # --- checkpoints --------------------------------------------------------------------------

    def save_checkpoint(self, path: Path, meta: dict[str, Any]) -> None:
        arrays: dict[str, Any] = {f"w{i:03d}": np.asarray(w) for i, w in enumerate(self.network.get_weights())}  # savez keywords
        arrays.update({f"o{i:03d}": np.asarray(v) for i, v in enumerate(self.optimizer.variables)})
        record = {**meta, "step": self.state.step, "seconds": self.state.seconds, "losses": self.state.losses,
                  "arch": self.arch.as_dict(), "rng": self.rng.bit_generator.state}
        arrays["meta"] = np.frombuffer(json.dumps(record).encode(), np.uint8)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, path)

    def restore(self, path: Path, meta: dict[str, Any]) -> None:
        """Carry on from ``path``; refused if it was made for another teacher or student shape."""
        try:
            with np.load(path, allow_pickle=False) as archive:
                arrays = {name: archive[name] for name in archive.files}
            record = json.loads(arrays.pop("meta").tobytes())
        except (OSError, ValueError, KeyError, EOFError) as exc:
            raise StudentError(f"checkpoint {path} is unreadable ({exc}); delete it to start afresh") from None
        for key in ("teacher_key", "arch"):
            want = self.arch.as_dict() if key == "arch" else meta[key]
            if record.get(key) != want:
                raise StudentError(f"checkpoint {path} was made for another {key.replace('_key', '')} "
                                   f"({record.get(key)} against {want}); delete it or use another output")
        self.network.set_weights([arrays[k] for k in sorted(arrays) if k.startswith("w")])
        for variable, key in zip(self.optimizer.variables, sorted(k for k in arrays if k.startswith("o"))):
            variable.assign(arrays[key])
        self.state = TrainState(int(record["step"]), float(record["seconds"]), dict(record.get("losses", {})))
        self.rng.bit_generator.state = record["rng"]


def write_student(distiller: Distiller, path: Path, teacher: dict[str, Any], training: dict[str, Any]) -> None:
    state = distiller.state
    record = {**training, "steps": state.step, "seconds": round(state.seconds, 1),
              "losses": {k: round(v, 4) for k, v in state.losses.items()}}
    save_student(path, distiller.network.get_weights(), distiller.arch.as_dict(), teacher, record)


def eta_text(state: TrainState, total: int) -> str:
    if state.step == 0:
        return ""
    left = (total - state.step) * state.seconds / state.step
    return f"{math.floor(left / 60)}:{int(left % 60):02d} left"


__all__ = ["DISTILL_SEED", "DistillLoss", "Distiller", "Pair", "TrainSettings", "TrainState", "dream_pairs",
           "feature_cosine", "identity_key", "write_student"]
