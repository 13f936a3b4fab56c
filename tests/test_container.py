"""The container image, built with podman and run as docs/installations.md's Docker section says.

The image is built from the Dockerfile on a local Debian base (scripts/make-base-image.sh: no
container registry is reachable here; STREAMDREAM_CONTAINER_BASE=python:3.11-slim-bookworm
builds on the official one where it is), with this machine's pip settings passed as build
secrets. podman keeps the layers, so only a change to pyproject.toml or the source rebuilds
more than the last steps. Then one container runs the default command (configs/container.yaml:
the live demo, a recording under /data/recordings, the preview, metrics and API on 0.0.0.0
with the token from the environment) with a host folder as the /data volume.

How it runs depends on the machine:
- ``podman run`` with ``--read-only`` (and no tmpfs, as Docker's), its own network namespace and
  ports published on 127.0.0.1. Plain options first; where crun cannot set rlimits or
  cgroups (this VM), runc with the rlimits lowered below the hard limits.
- else ``buildah run --isolation chroot``: the host's network (the config's ports are moved to
  free ones) and a writable root, so the read-only and HEALTHCHECK checks are skipped, saying so.
  STREAMDREAM_CONTAINER_RUNNER=buildah takes this way where podman run works too.

Requests use Host 127.0.0.1:PORT, which a Host allow-list admits for a server bound to 0.0.0.0.
"""

from __future__ import annotations

import json
import os
import re
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import yaml

from tests.fixtures.servers import free_port, http_request

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "container.yaml"
IMAGE = "localhost/streamdream:test"
LOCAL_BASE = "localhost/streamdream-base:bookworm"
UID = 10001  # the image's user
METRICS_PORT, PREVIEW_PORT = 9108, 8090
BUILD_TIMEOUT_S = 45 * 60  # a guard against a hang only: a cold build takes minutes
HEALTHZ_WITHIN_S = 120.0  # /healthz must answer 200 this soon after the start
STOP_TIMEOUT_S = 10  # `podman stop -t 10`: SIGTERM, then SIGKILL after 10 s

_missing = [tool for tool in ("podman", "buildah") if shutil.which(tool) is None]
if _missing:
    pytest.skip(
        f"{' and '.join(_missing)} not installed: scripts/install-system-deps.sh installs them "
        "(the container image is then built and run for real)",
        allow_module_level=True,
    )


def _run(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args[:3])} ... exited {result.returncode}: {result.stderr[-2000:]}")
    return result


# --- the image ----------------------------------------------------------------------------------


def _pip_build_secrets(folder: Path) -> list[str]:
    """This machine's pip settings that make sense inside a build, as --secret arguments.

    The CA bundle pip trusts (a proxy may re-sign TLS) and the index settings with http(s)
    URLs; file:// indexes and local constraint files do not exist inside the build.
    """
    args: list[str] = []
    listed = _run(sys.executable, "-m", "pip", "config", "list", check=False).stdout
    settings = dict(re.findall(r"^[^.\s]*\.([\w-]+)='(.*)'$", listed, re.MULTILINE))
    cert = os.environ.get("PIP_CERT") or settings.get("cert")
    if cert and Path(cert).is_file():
        args += ["--secret", f"id=pip_cert,src={cert}"]
    lines = []
    for key in ("index-url", "extra-index-url", "trusted-host", "proxy", "timeout", "default-timeout"):
        value = os.environ.get(f"PIP_{key.upper().replace('-', '_')}") or settings.get(key)
        if value and "url" in key:
            value = " ".join(url for url in value.split() if url.startswith(("http://", "https://")))
        if value:
            lines.append(f"{key.replace('default-', '')} = {value}")
    if lines:
        conf = folder / "pip.conf"
        conf.write_text("[global]\n" + "\n".join(lines) + "\n")
        args += ["--secret", f"id=pip_conf,src={conf}"]
    return args


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> str:
    base = os.environ.get("STREAMDREAM_CONTAINER_BASE", LOCAL_BASE)
    if base == LOCAL_BASE:
        if shutil.which("mmdebstrap") is None and shutil.which("debootstrap") is None:
            pytest.skip("mmdebstrap not installed (scripts/install-system-deps.sh installs it): no local base image")
        _run(str(ROOT / "scripts" / "make-base-image.sh"), LOCAL_BASE, timeout=BUILD_TIMEOUT_S)
    folder = tmp_path_factory.mktemp("build")
    log = folder / "build.log"
    command = [
        "podman", "build", "--isolation=chroot", "--format=docker", f"--build-arg=BASE={base}",
        *_pip_build_secrets(folder), "--tag", IMAGE, str(ROOT),
    ]  # fmt: skip
    started = time.monotonic()
    with log.open("w") as out:
        result = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, timeout=BUILD_TIMEOUT_S)
    assert result.returncode == 0, f"podman build failed:\n{log.read_text()[-4000:]}"
    print(f"image {IMAGE} built in {time.monotonic() - started:.0f} s on {base}")
    return IMAGE


def test_the_image_declares_its_user_volume_ports_and_healthcheck(image: str) -> None:
    inspected = json.loads(_run("podman", "image", "inspect", image).stdout)[0]
    config = inspected["Config"]
    shipped = yaml.safe_load(CONFIG.read_text())
    preview_port = int(next(o["uri"] for o in shipped["outputs"] if o["uri"].startswith("preview:")).rsplit(":", 1)[1])
    assert config["User"].split(":")[0] == str(UID)
    assert set(config["Volumes"]) == {"/data"}
    assert set(config["ExposedPorts"]) == {f"{shipped['metrics']['port']}/tcp", f"{preview_port}/tcp"}
    assert config["Cmd"] == ["serve", "--config", "/app/configs/container.yaml"]
    assert any(f"127.0.0.1:{shipped['metrics']['port']}/healthz" in part for part in inspected["Healthcheck"]["Test"])
    assert "STREAMDREAM_CONTROL_TOKEN" not in " ".join(config.get("Env", []))


# --- running it ---------------------------------------------------------------------------------


def _podman_run_options(image: str) -> list[str] | None:
    """The `podman run` options that start a container here, or None if none do."""
    if os.environ.get("STREAMDREAM_CONTAINER_RUNNER") == "buildah":
        return None
    candidates: list[list[str]] = [[]]
    if shutil.which("runc"):
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        nproc = min(resource.getrlimit(resource.RLIMIT_NPROC)[1], 8192) // 2
        candidates.append(["--runtime=runc", f"--ulimit=nofile={nofile}:{nofile}", f"--ulimit=nproc={nproc}:{nproc}"])
    for options in candidates:
        if _run("podman", "run", "--rm", *options, "--entrypoint=/bin/true", image, check=False).returncode == 0:
            return options
    return None


def _data_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("data")
    if os.geteuid() == 0:
        os.chown(data, UID, UID)  # as docs/installations.md says for a host folder
    else:
        data.chmod(0o777)
    return data


class PodmanContainer:
    """`podman run -d --read-only` with the ports published on 127.0.0.1 of the host."""

    read_only = True

    def __init__(self, image: str, options: list[str], data: Path, token: str) -> None:
        self.name = f"streamdream-test-{secrets.token_hex(4)}"
        env_file = data.parent / f"{self.name}.env"  # as docs/installations.md: the token stays out of `ps`
        env_file.write_text(f"STREAMDREAM_CONTROL_TOKEN={token}\n")
        env_file.chmod(0o600)
        _run(
            "podman", "run", "--detach", f"--name={self.name}", *options, "--read-only", "--read-only-tmpfs=false",
            f"--publish=127.0.0.1::{METRICS_PORT}", f"--publish=127.0.0.1::{PREVIEW_PORT}",
            f"--volume={data}:/data", f"--env-file={env_file}", image,
        )  # fmt: skip
        try:
            self.metrics = self._published(METRICS_PORT)
            self.preview = self._published(PREVIEW_PORT)
        except AssertionError:
            self.remove()
            raise

    def _published(self, port: int) -> str:
        address = _run("podman", "port", self.name, f"{port}/tcp").stdout.split()[0]
        return f"http://{address}"

    def stop(self) -> int:
        _run("podman", "stop", f"--time={STOP_TIMEOUT_S}", self.name, timeout=STOP_TIMEOUT_S + 60)
        return int(_run("podman", "inspect", "--format={{.State.ExitCode}}", self.name).stdout)

    def logs(self) -> str:
        result = _run("podman", "logs", self.name, check=False)
        return result.stdout + result.stderr

    def remove(self) -> None:
        _run("podman", "rm", "--force", self.name, check=False)


class BuildahContainer:
    """`buildah run --isolation chroot`: the host's network, so the config gets free ports."""

    read_only = False

    def __init__(self, image: str, data: Path, token: str) -> None:
        config = yaml.safe_load(CONFIG.read_text())
        metrics, preview = free_port(), free_port()
        config["metrics"]["port"] = metrics
        config["outputs"] = [o if not o["uri"].startswith("preview:") else {"uri": f"preview:0.0.0.0:{preview}"} for o in config["outputs"]]
        (data / "container.yaml").write_text(yaml.safe_dump(config))
        self.metrics, self.preview = f"http://127.0.0.1:{metrics}", f"http://127.0.0.1:{preview}"
        self.name = _run("buildah", "from", f"--name=streamdream-test-{secrets.token_hex(4)}", image).stdout.strip()
        _run("buildah", "config", "--volume=/data-", self.name)  # else the image's VOLUME hides the -v mount
        self._log = data.parent / f"{self.name}.log"
        with self._log.open("w") as out:
            self._process = subprocess.Popen(
                ["buildah", "run", "--isolation=chroot", f"--volume={data}:/data", f"--env=STREAMDREAM_CONTROL_TOKEN={token}",
                 self.name, "--", "/opt/streamdream/bin/entrypoint", "serve", "--config", "/data/container.yaml"],
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip

    def stop(self) -> int:
        # buildah answers SIGTERM by killing its child, so the signal goes to streamdream itself
        os.kill(_descendant_named(self._process.pid, "streamdream"), signal.SIGTERM)
        return self._process.wait(timeout=STOP_TIMEOUT_S)

    def logs(self) -> str:
        return self._log.read_text()

    def remove(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait(timeout=30)
        _run("buildah", "rm", self.name, check=False)


def _descendant_named(pid: int, name: str) -> int:
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        except (OSError, IndexError):
            continue
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if Path(f"/proc/{child}/comm").read_text().strip() == name:
                return child
            todo.append(child)
    raise AssertionError(f"no process {name!r} under buildah (pid {pid})")


def _wait_for(what: str, check, timeout: float, container) -> float:
    """Seconds until ``check()`` is true; fails with the container's log after ``timeout``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():
            return time.monotonic() - started
        time.sleep(0.5)
    raise AssertionError(f"{what} not within {timeout:g} s; the container's log:\n{container.logs()[-3000:]}")


def _answers(url: str) -> int | None:
    try:
        return http_request(url)[0]
    except OSError:
        return None


@pytest.fixture(scope="module")
def podman_options(image: str) -> list[str] | None:
    return _podman_run_options(image)


@pytest.fixture(scope="module")
def token() -> str:
    return secrets.token_urlsafe(18)


@pytest.fixture(scope="module")
def container(image, podman_options, token, tmp_path_factory):
    data = _data_folder(tmp_path_factory)
    if podman_options is None:
        print("podman run is not used here: running with buildah run --isolation chroot")
        box = BuildahContainer(image, data, token)
    else:
        box = PodmanContainer(image, podman_options, data, token)
    box.data = data
    try:
        box.healthy_after = _wait_for("/healthz 200", lambda: _answers(f"{box.metrics}/healthz") == 200, HEALTHZ_WITHIN_S, box)
        yield box
    finally:
        box.remove()


def _recording(data: Path, pattern: str = "*") -> Path:
    """The one file in recordings/; while it is written it may still have a temporary name."""
    files = sorted((data / "recordings").glob(pattern))
    assert len(files) == 1, f"expected one recording in {data / 'recordings'}, found {files}"
    return files[0]


def test_it_refuses_to_start_without_a_control_token(image, podman_options, tmp_path_factory) -> None:
    data = _data_folder(tmp_path_factory)
    if podman_options is None:
        command = ["buildah", "run", "--isolation=chroot", f"--volume={data}:/data"]
        name = _run("buildah", "from", image).stdout.strip()
        command += [name, "--", "/opt/streamdream/bin/entrypoint", "serve", "--config", "/app/configs/container.yaml"]
    else:
        name = None
        command = ["podman", "run", "--rm", *podman_options, "--read-only", f"--volume={data}:/data", image]
    try:
        result = _run(*command, timeout=300, check=False)
    finally:
        if name:
            _run("buildah", "rm", name, check=False)
    assert result.returncode == 6, result.stderr[-2000:]  # ControlError's exit code
    assert "STREAMDREAM_CONTROL_TOKEN" in result.stderr and "0.0.0.0" in result.stderr
    assert not list((data / "recordings").iterdir()), "nothing is recorded before the check"


def test_healthz_answers_200_through_the_published_port(container) -> None:
    print(f"/healthz answered 200 {container.healthy_after:.1f} s after the start")
    status, body = http_request(f"{container.metrics}/healthz")
    assert (status, body.strip()) == (200, "ok")
    status, text = http_request(f"{container.metrics}/metrics")
    assert status == 200 and "streamdream_frames_total" in text


def test_the_recording_grows_on_the_host_side_of_the_volume(container) -> None:
    _wait_for("a recording", lambda: list((container.data / "recordings").iterdir()), 180, container)
    path = _recording(container.data)
    size = path.stat().st_size
    _wait_for(f"{path.name} growing past {size} bytes", lambda: path.stat().st_size > size, 120, container)
    if os.geteuid() == 0:
        assert path.stat().st_uid == UID  # written by the image's user, not root
    # the model is loaded by now, from the weights converted at build time, not converted again
    logs = container.logs()
    assert "model efficientnet_lite0" in logs and "EfficientNet-Lite0 weights from" not in logs


def test_the_control_api_needs_the_token(container, token) -> None:
    status, body = http_request(f"{container.metrics}/api/state")
    assert status == 401 and "token" in body
    status, _ = http_request(f"{container.metrics}/api/state", token="not-the-token-at-all")
    assert status == 401
    status, body = http_request(f"{container.metrics}/api/state", token=token)
    assert status == 200
    state = json.loads(body)
    assert state["source"]["uri"] == "demo?live=1" and state["source"]["up"] is True
    assert token not in body


def test_the_preview_shows_the_dream(container) -> None:
    with urllib.request.urlopen(f"{container.preview}/snapshot.jpg", timeout=10) as response:
        assert response.headers["Content-Type"] == "image/jpeg"
        picture = cv2.imdecode(np.frombuffer(response.read(), np.uint8), cv2.IMREAD_COLOR)
    assert picture.shape == (360, 640, 3)
    assert picture.std() > 10  # a scene, not a blank frame


def test_the_healthcheck_command_reaches_the_health_endpoint(container) -> None:
    if not isinstance(container, PodmanContainer):
        pytest.skip("buildah run: no `podman healthcheck run` (the HEALTHCHECK's URL is checked from the image)")
    assert _run("podman", "healthcheck", "run", container.name, check=False).returncode == 0


def test_the_root_filesystem_is_read_only(container) -> None:
    if not container.read_only:
        pytest.skip("buildah run cannot make the root read-only; podman run --read-only is checked where it works")
    result = _run("podman", "exec", "--user=0", container.name, "touch", "/opt/streamdream/x", check=False)
    assert result.returncode != 0 and "Read-only file system" in result.stderr
    assert _answers(f"{container.metrics}/healthz") == 200  # ... and it runs all the same


def test_sigterm_ends_it_within_10_s_with_a_playable_recording(container) -> None:
    exit_code = container.stop()
    path = _recording(container.data, "dream-*.mkv")  # its final name, from the config's pattern
    assert exit_code == 0, f"exit code {exit_code} (137: killed after {STOP_TIMEOUT_S} s):\n{container.logs()[-3000:]}"
    with av.open(str(path)) as recording:
        assert recording.duration is not None and recording.duration > 0, "not finalized"
        stream = recording.streams.video[0]
        frames = [frame.pts for frame in recording.decode(stream)]
    assert (stream.width, stream.height) == (640, 360)
    assert len(frames) >= 25 and frames == sorted(frames)
    assert "SIGTERM received" in container.logs()
