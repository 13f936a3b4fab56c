"""The Keras backend and the process-wide speed settings of ``engine:``.

Keras fixes its backend when it is first imported, and TensorFlow reads oneDNN's switch
when it is imported, so ``prepare`` must run before either: the CLI calls it as soon as
it knows the config, ``app.build_engine`` again (a no-op when nothing changed). A config
asking for another backend than the one this process already imported is an error that
says how to start the process instead. Nothing here imports a backend before it is chosen.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import platform
import sys

from .config import EngineConfig
from .errors import ConfigError
from .log import import_tensorflow

log = logging.getLogger(__name__)

BACKENDS = ("tensorflow", "jax", "torch")
_EXTRA = {"jax": "jax", "torch": "torch"}


def chosen_backend(engine: EngineConfig) -> str:
    """``engine.backend``, else $KERAS_BACKEND, else tensorflow."""
    name = engine.backend or os.environ.get("KERAS_BACKEND") or "tensorflow"
    if name not in BACKENDS:
        raise ConfigError(f"KERAS_BACKEND={name!r} is not a backend streamdream runs on; choose one of {', '.join(BACKENDS)}")
    return name


def active_backend() -> str | None:
    """The backend Keras was imported with in this process, or None before the import."""
    if "keras" not in sys.modules:
        return None
    import keras  # noqa: PLC0415 - loads Keras and its backend

    return keras.backend.backend()


def prepare(engine: EngineConfig) -> str:
    """Choose the backend and apply oneDNN and thread settings; returns the backend's name."""
    backend = chosen_backend(engine)
    active = active_backend()
    if active is not None and active != backend:
        raise ConfigError(
            f"engine.backend: this process already runs Keras on {active!r}, got {backend!r}; a backend is fixed "
            f"when Keras is imported: start a new process with KERAS_BACKEND={backend} (the CLI does this for you)"
        )
    if importlib.util.find_spec(backend) is None:
        raise ConfigError(f"engine.backend: {backend!r} is not installed; install it with "
                          f"pip install 'streamdream[{_EXTRA.get(backend, backend)}]'")
    os.environ["KERAS_BACKEND"] = backend
    if backend == "tensorflow":
        _prepare_tensorflow(engine)
    elif backend == "torch":
        _prepare_torch(engine)
    elif engine.intra_op_threads or engine.inter_op_threads:
        log.info("engine: JAX sizes its CPU thread pool itself; intra/inter_op_threads are ignored")
    return backend


def _prepare_tensorflow(engine: EngineConfig) -> None:
    wanted = "1" if engine.onednn else "0"
    if "tensorflow" not in sys.modules:
        os.environ["TF_ENABLE_ONEDNN_OPTS"] = wanted
    elif os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1") != wanted:
        log.info("engine.onednn=%s comes too late: TensorFlow is already imported", engine.onednn)

    import_tensorflow()
    import tensorflow as tf  # noqa: PLC0415 - loads TensorFlow

    # Grappler reads this when a function is first run: before any dream step is
    tf.config.optimizer.set_experimental_options({"remapping": engine.remapper})
    threading = tf.config.threading
    try:
        if engine.intra_op_threads and threading.get_intra_op_parallelism_threads() != engine.intra_op_threads:
            threading.set_intra_op_parallelism_threads(engine.intra_op_threads)
        if engine.inter_op_threads and threading.get_inter_op_parallelism_threads() != engine.inter_op_threads:
            threading.set_inter_op_parallelism_threads(engine.inter_op_threads)
    except RuntimeError:  # TensorFlow already ran an op: its thread pools are fixed
        log.warning("engine: thread settings come too late, TensorFlow has already started its thread pools")


def _prepare_torch(engine: EngineConfig) -> None:
    import torch  # noqa: PLC0415 - loads PyTorch (the torch extra)

    if engine.intra_op_threads:
        torch.set_num_threads(engine.intra_op_threads)
    if engine.inter_op_threads:
        try:
            torch.set_num_interop_threads(engine.inter_op_threads)
        except RuntimeError:  # only before torch's first parallel work
            log.warning("engine: inter_op_threads comes too late, torch has already started its thread pool")


def device_name() -> str:
    """The device the dream runs on, in words: the GPU's name, or the CPU's model."""
    backend = active_backend() or chosen_backend(EngineConfig())
    gpu = None
    if backend == "tensorflow":
        import tensorflow as tf  # noqa: PLC0415 - loads TensorFlow

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            gpu = tf.config.experimental.get_device_details(gpus[0]).get("device_name", gpus[0].name)
    elif backend == "jax":
        import jax  # noqa: PLC0415 - loads JAX (the jax extra)

        device = jax.devices()[0]
        gpu = None if device.platform == "cpu" else f"{device.device_kind} ({device.platform})"
    elif backend == "torch":
        import torch  # noqa: PLC0415 - loads PyTorch (the torch extra)

        # Keras' own order: $KERAS_TORCH_DEVICE, else mps, else cuda, else the CPU
        wanted = os.environ.get("KERAS_TORCH_DEVICE", "")
        if wanted.startswith("cpu"):
            gpu = None
        elif wanted.startswith("mps") or (not wanted and torch.backends.mps.is_available()):
            gpu = "Apple GPU (mps)"
        elif torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return gpu or f"CPU: {cpu_model()} ({cores} cores)"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass

    return platform.processor() or platform.machine()


__all__ = ["BACKENDS", "active_backend", "chosen_backend", "cpu_model", "device_name", "prepare"]
