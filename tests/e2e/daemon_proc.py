"""Run `tracker run` as a real subprocess and look at it from outside: /metrics, the database, logs.

    proc = DaemonProcess(tmp_path, env, name="a").start()
    proc.wait_for(lambda: proc.sample("gpu_rental_scrape_success", provider="tencent") == 1)
    rc, seconds = proc.stop()          # SIGTERM, then wait
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from prometheus_client.parser import text_string_to_metric_families

T = TypeVar("T")
TRACKER = str(Path(sys.executable).with_name("tracker"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def base_env(database_url: str, port: int, **extra: str) -> dict[str, str]:
    """A clean environment: nothing TRACKER_* leaks in from the caller's shell."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_")}
    env.update({
        "TRACKER_DATABASE_URL": database_url,
        "TRACKER_LISTEN_HOST": "127.0.0.1",
        "TRACKER_LISTEN_PORT": str(port),
        "TRACKER_LOG_FORMAT": "json",
        "TRACKER_LOG_LEVEL": "info",
        "TRACKER_DAEMON__METRICS_REFRESH": "1s",
        "TRACKER_SHUTDOWN_GRACE": "2s",
    })
    for p in ("TENCENT", "ALIYUN", "HENGYUAN"):
        env[f"TRACKER_PROVIDERS__{p}__ENABLED"] = "false"
    env.update(extra)
    return env


def wait_for(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.1) -> T:
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # e.g. the server not listening yet
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}" + (f" (last error: {last_exc!r})" if last_exc else ""))


class DaemonProcess:
    def __init__(self, workdir: Path, env: dict[str, str], name: str = "tracker", args: tuple[str, ...] = ("run",)):
        self.workdir = workdir
        self.env = dict(env)
        self.env.setdefault("TRACKER_INSTANCE_NAME", name)
        self.name = name
        self.args = args
        self.port = int(self.env["TRACKER_LISTEN_PORT"])
        self.proc: subprocess.Popen[bytes] | None = None
        self.stderr_path = workdir / f"{name}.stderr"
        self.stdout_path = workdir / f"{name}.stdout"

    def start(self) -> DaemonProcess:
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [TRACKER, *self.args], env=self.env, cwd=self.workdir,
            stdout=self.stdout_path.open("wb"), stderr=self.stderr_path.open("wb"),
        )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # --- HTTP ----------------------------------------------------------------------------------
    def get(self, path: str, timeout: float = 5.0) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=timeout) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def metrics(self) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
        """{sample name: {sorted label items: value}}."""
        status, text = self.get("/metrics")
        assert status == 200, text
        out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
        return out

    def sample(self, name: str, **labels: str) -> float | None:
        """The value of the one sample of `name` whose labels include `labels` (None if absent)."""
        found = [v for k, v in self.metrics().get(name, {}).items() if set(labels.items()) <= set(k)]
        assert len(found) <= 1, f"{name}{labels} matches {len(found)} samples"
        return found[0] if found else None

    def wait_ready(self, timeout: float = 20.0) -> None:
        wait_for(lambda: self.get("/readyz", timeout=1)[0] == 200, timeout, f"{self.name} /readyz")

    # --- lifecycle -----------------------------------------------------------------------------
    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> tuple[int, float]:
        """Send `sig`, wait for exit; returns (exit status, seconds from signal to exit)."""
        assert self.proc is not None
        sent = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"{self.name} did not exit within {timeout} s of signal {sig}:\n{self.stderr()[-3000:]}") from None
        return rc, time.monotonic() - sent

    def wait_exit(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    # --- output --------------------------------------------------------------------------------
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace") if self.stdout_path.exists() else ""

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.stderr().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out
