"""The image's commands, run outside Docker exactly as the Dockerfile declares them.

No Docker engine runs here, so this test reads the Dockerfile (ENTRYPOINT, CMD, ENV, USER,
VOLUME, HEALTHCHECK) and runs the same command lines with the same environment under the
constraints of `docker run --read-only --tmpfs /tmp -v data:/data --user 10001`:

- a stand-in for /data (owned by the image's user) is the only persistent writable directory,
  a stand-in for the tmpfs /tmp (TMPDIR) the only other one;
- the working directory and HOME are read-only (HOME is /nonexistent in the image);
- when the test runs as root, the commands run as the image's numeric uid/gid, so permissions
  are enforced for real (as root nothing would be read-only). They keep one capability,
  CAP_DAC_READ_SEARCH, only because this machine's Python lives under /root (mode 0700): it
  lets the uid read the interpreter and the project, and grants no write anywhere.

Checked: `tracker --help`, `tracker config show`, `tracker run --once` against local provider
fakes (Hengyuan through the real Chromium, the image's browser), and the default command
(`tracker run`) answering the HEALTHCHECK command and /readyz, then stopping cleanly on SIGTERM.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.aliyun import FakeAliyun, seed_data
from tests.fakes.hengyuan import HengyuanFake
from tests.fakes.tencent import FakeTencent, realistic_dataset
from tests.unit.test_dockerfile import parse_dockerfile

pytestmark = [pytest.mark.slow, pytest.mark.browser]

VENV_BIN = Path(sys.executable).parent
DF = parse_dockerfile()
ENTRYPOINT = DF.exec_form("ENTRYPOINT")
CMD = DF.exec_form("CMD")
IMAGE_USER = DF.final.all("USER")[-1]
(DATA_DIR,) = __import__("json").loads(DF.final.all("VOLUME")[0])


@dataclass
class Rootfs:
    """Directories standing in for the container's filesystem."""

    base: Path
    data: Path  # /data: the volume
    tmp: Path  # /tmp: the tmpfs
    cwd: Path  # the image's working directory: read-only
    home: Path  # HOME: read-only
    uid: int | None  # run the commands as this uid (when we are root)
    gid: int | None


@pytest.fixture
def rootfs() -> Iterator[Rootfs]:
    # Not under pytest's tmp_path: that is private to the user running pytest (mode 0700).
    base = Path(tempfile.mkdtemp(prefix="image-rootfs-"))
    os.chmod(base, 0o755)
    uid = gid = None
    if os.geteuid() == 0:
        uid, gid = (int(x) for x in IMAGE_USER.split(":"))
    data, tmp, cwd, home = base / "data", base / "tmp", base / "app", base / "nonexistent"
    for d in (data, tmp, cwd, home):
        d.mkdir()
    os.chmod(tmp, 0o1777)
    if uid is not None:
        os.chown(data, uid, gid or uid)  # the Dockerfile's `chown 10001:10001 /data`
    for ro in (cwd, home):
        os.chmod(ro, 0o555)
    try:
        yield Rootfs(base, data, tmp, cwd, home, uid, gid)
    finally:
        for ro in (cwd, home):
            os.chmod(ro, 0o755)
        shutil.rmtree(base, ignore_errors=True)


def image_env(fs: Rootfs, port: int, extra: dict[str, str]) -> dict[str, str]:
    """The Dockerfile's ENV with /data and /tmp mapped to the stand-ins; nothing from our shell
    except what a container has too (PATH with the interpreter, LANG)."""
    env = {"PATH": f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin", "HOME": str(fs.home), "TMPDIR": str(fs.tmp),
           "LANG": "C.UTF-8", "HOSTNAME": "tracker-test"}
    mapping = {DATA_DIR: str(fs.data), "/tmp": str(fs.tmp)}
    for key, value in DF.env().items():
        # one pass, so a mapped path is not mapped again
        env[key] = re.sub(r"(/data|/tmp)(?=/|$)", lambda m: mapping[m.group(1)], value)
    env["TRACKER_LISTEN_HOST"] = "127.0.0.1"  # the image listens on 0.0.0.0; keep the test local
    env["TRACKER_LISTEN_PORT"] = str(port)
    env.update(extra)
    return env


def as_image_user(fs: Rootfs, argv: list[str]) -> list[str]:
    if fs.uid is None:
        return argv  # not root: our own uid, the read-only modes apply as they are
    setpriv = shutil.which("setpriv") or "/usr/bin/setpriv"  # util-linux, always on Debian
    return [setpriv, f"--reuid={fs.uid}", f"--regid={fs.gid}", "--clear-groups",
            "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search", "--", *argv]


def run(fs: Rootfs, argv: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(as_image_user(fs, argv), cwd=fs.cwd, env=env, capture_output=True, text=True, timeout=timeout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def files_under(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")}


@pytest.fixture
def fakes() -> Iterator[dict[str, str]]:
    with FakeTencent(realistic_dataset()) as tencent, FakeAliyun(seed_data()) as aliyun, \
            HengyuanFake(mode="anonymous") as hengyuan:
        env = {**tencent.env(), **aliyun.env(source="pricefile")}
        # the image's own browser path (from its ENV) is kept: only the replica's URLs are set
        env.update({k: v for k, v in hengyuan.env(source="browser").items() if not k.endswith("BROWSER_PATH")})
        yield env


def test_the_image_user_and_paths_are_what_the_emulation_assumes() -> None:
    assert ENTRYPOINT == ["tracker"] and CMD == ["run"]
    assert DATA_DIR == "/data"
    assert DF.env()["TRACKER_DATABASE_URL"].startswith(f"sqlite:///{DATA_DIR}/")
    assert Path(DF.env()["TRACKER_PROVIDERS__HENGYUAN__BROWSER_PATH"]).is_file(), "Debian's chromium, as in the image"


def test_help_and_config_show(rootfs: Rootfs) -> None:
    env = image_env(rootfs, free_port(), {"TRACKER_ALERTS__SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T/B/secret123"})
    helped = run(rootfs, [*ENTRYPOINT, "--help"], env)
    assert helped.returncode == 0, helped.stderr
    assert "run" in helped.stdout and "config" in helped.stdout
    shown = run(rootfs, [*ENTRYPOINT, "config", "show"], env)
    assert shown.returncode == 0, shown.stderr
    assert f"sqlite:///{rootfs.data}/tracker.db" in shown.stdout
    assert "/usr/bin/chromium" in shown.stdout
    assert "secret123" not in shown.stdout + shown.stderr
    assert files_under(rootfs.data) == set(), "showing the configuration writes nothing"


def test_run_once_writes_only_the_data_volume(rootfs: Rootfs, fakes: dict[str, str]) -> None:
    env = image_env(rootfs, free_port(), fakes)
    out = run(rootfs, [*ENTRYPOINT, *CMD, "--once"], env, timeout=180)
    assert out.returncode == 0, f"stdout:\n{out.stdout}\nstderr:\n{out.stderr[-4000:]}"
    for provider in ("tencent", "aliyun", "hengyuan"):
        assert f"{provider}: ok" in out.stdout
    written = files_under(rootfs.data)
    assert "tracker.db" in written
    db = rootfs.data / "tracker.db"
    if rootfs.uid is not None:
        assert db.stat().st_uid == rootfs.uid
    assert files_under(rootfs.cwd) == set() and files_under(rootfs.home) == set()
    assert files_under(rootfs.tmp) == set(), "Chromium's throw-away profiles are removed"
    # JSON logs (TRACKER_LOG_FORMAT=json from the image's ENV) on stderr
    assert any(line.startswith("{") for line in out.stderr.splitlines())


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=3) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_default_command_passes_its_healthcheck_and_stops_on_sigterm(rootfs: Rootfs, fakes: dict[str, str]) -> None:
    port = free_port()
    env = image_env(rootfs, port, {**fakes, "TRACKER_SHUTDOWN_GRACE": "5s"})
    options, health_cmd = DF.healthcheck()
    assert run(rootfs, health_cmd, env, timeout=30).returncode != 0, "the healthcheck fails when nothing listens"
    proc = subprocess.Popen(as_image_user(rootfs, [*ENTRYPOINT, *CMD]), cwd=rootfs.cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=(rootfs.base / "stderr").open("wb"))
    try:
        deadline = time.monotonic() + 60
        healthy: Any = None
        while time.monotonic() < deadline:
            assert proc.poll() is None, (rootfs.base / "stderr").read_text()[-3000:]
            healthy = run(rootfs, health_cmd, env, timeout=30)
            if healthy.returncode == 0:
                break
            time.sleep(0.5)
        assert healthy is not None and healthy.returncode == 0, healthy.stderr if healthy else "never ran"
        start_period = float(options["start-period"].rstrip("s"))
        assert time.monotonic() - (deadline - 60) < start_period, "healthy within the HEALTHCHECK start period"
        status, body = _get(f"http://127.0.0.1:{port}/readyz")
        assert status == 200, body
        # the scheduled runs happen and are exported (catch-up: every provider runs at start)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            metrics = _get(f"http://127.0.0.1:{port}/metrics")[1]
            if all(f'gpu_rental_scrape_success{{provider="{p}"}} 1.0' in metrics for p in ("tencent", "aliyun", "hengyuan")):
                break
            time.sleep(0.5)
        else:
            raise AssertionError("no successful scheduled runs:\n" + (rootfs.base / "stderr").read_text()[-3000:])
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, (rootfs.base / "stderr").read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert files_under(rootfs.cwd) == set() and files_under(rootfs.home) == set()
    assert stat.S_IMODE(rootfs.cwd.stat().st_mode) == 0o555
