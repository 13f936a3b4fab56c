"""scripts/install-system-deps.sh, with apt, dpkg and systemd stood in for (a test cannot install).

It was run for real too (see the issue's closing note); here its decisions are checked:
wait for the package lock, no recommends, no service started during the install or
enabled at boot afterwards, only for the packages this run installed.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "install-system-deps.sh"

STUBS = {
    # nothing of ours is installed; after `apt-get install`, prometheus and nginx-common are
    "dpkg-query": """#!/bin/sh
case "$*" in
  "-L prometheus") echo /lib/systemd/system/prometheus.service; echo /usr/bin/promtool ;;
  "-L nginx-common") echo /lib/systemd/system/nginx.service; echo /etc/init.d/nginx ;;
  "-L "*) ;;
  *"\\${Package}"*) echo "installed coreutils"; [ -e "$STATE/installed" ] && printf 'installed prometheus\\ninstalled nginx-common\\n' ;;
  *) ;;
esac
exit 0
""",
    # the first update meets another apt's lock, as on a machine that checks for updates itself
    "apt-get": """#!/bin/sh
echo "apt-get $*" >> "$STATE/log"
case "$*" in
  *" update")
    if [ ! -e "$STATE/locked-once" ]; then touch "$STATE/locked-once"
      echo "E: Could not get lock /var/lib/apt/lists/lock. It is held by process 4242 (apt-get)" >&2; exit 100; fi ;;
  *" install "*)
    [ -x "$STREAMDREAM_POLICY_RC_D" ] && "$STREAMDREAM_POLICY_RC_D"; echo "policy-rc.d says $?" >> "$STATE/log"
    touch "$STATE/installed" ;;
esac
exit 0
""",
    "systemctl": """#!/bin/sh
echo "systemctl $*" >> "$STATE/log"
[ "$1" = is-enabled ] && echo enabled
exit 0
""",
    "update-rc.d": '#!/bin/sh\necho "update-rc.d $*" >> "$STATE/log"\n',
    "id": "#!/bin/sh\necho 0\n",
    "sleep": "#!/bin/sh\nexit 0\n",
}


def test_waits_for_the_lock_installs_without_recommends_and_enables_no_service(tmp_path):
    stubs = tmp_path / "bin"
    stubs.mkdir()
    for name, text in STUBS.items():
        (stubs / name).write_text(text)
        (stubs / name).chmod(stat.S_IRWXU)
    policy = tmp_path / "policy-rc.d"
    env = {**os.environ, "PATH": f"{stubs}:{os.environ['PATH']}", "STATE": str(tmp_path), "STREAMDREAM_POLICY_RC_D": str(policy)}
    proc = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    log = (tmp_path / "log").read_text().splitlines()
    apt = [line for line in log if line.startswith("apt-get")]
    assert [line.split()[-1] for line in apt[:2]] == ["update", "update"]  # tried again after the lock
    assert all("-o DPkg::Lock::Timeout=600" in line for line in apt)
    (install,) = [line for line in apt if " install " in line]
    assert "--no-install-recommends" in install
    for package in ("ffmpeg", "chromium", "prometheus", "nginx", "libnginx-mod-rtmp", "gstreamer1.0-plugins-ugly"):
        assert f" {package}" in install
    assert "policy-rc.d says 101" in log  # no service may start during the install
    assert not policy.exists()  # and the policy is gone afterwards
    assert "systemctl disable --quiet prometheus.service" in log and "systemctl disable --quiet nginx.service" in log
    assert "update-rc.d nginx disable" in log
    assert "waiting" in proc.stderr and "disabled prometheus.service at boot" in proc.stderr


def test_a_machine_with_everything_installed_is_left_alone(tmp_path):
    stubs = tmp_path / "bin"
    stubs.mkdir()
    (stubs / "dpkg-query").write_text("#!/bin/sh\nprintf installed\n")
    (stubs / "apt-get").write_text(f"#!/bin/sh\ntouch {tmp_path}/apt-ran\n")
    for stub in stubs.iterdir():
        stub.chmod(stat.S_IRWXU)
    env = {**os.environ, "PATH": f"{stubs}:{os.environ['PATH']}"}
    proc = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0 and "all present" in proc.stderr
    assert not (tmp_path / "apt-ran").exists()
