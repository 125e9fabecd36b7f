"""Helpers shared by the reliability tests: a fault layer over the provider fakes, the CLI as a
subprocess, database dumps and the metrics text.

`FaultLayer` replaces a fake's LocalServer handler with one that, while a fault is armed, answers
*every* request with that fault (or a mangled version of the real answer). A provider under a
persistent fault is what "the provider is broken" looks like from the daemon's side, and one layer
gives the same fault vocabulary to all three fakes.
"""

from __future__ import annotations

import json
import math
import os
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.fakes.server import LocalServer, Reply, Request

REPO = Path(__file__).resolve().parents[2]

# Values the fault layer can put where a provider's prices are.
ABSURD_PRICES: dict[str, Any] = {
    "zero": 0,
    "negative": -28.64,
    "huge": 1e9,
    "nan": math.nan,  # json.dumps writes the bare NaN token, which lenient parsers accept
    "nan_string": "NaN",
    "string": "面议",  # "price on request"
}


def closed_port_url() -> str:
    """An http URL on 127.0.0.1 where nothing listens (connection refused)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _rename_keys(value: Any, keep: frozenset[str]) -> Any:
    if isinstance(value, dict):
        return {(k if k in keep else f"{k}V2"): _rename_keys(v, keep) for k, v in value.items()}
    if isinstance(value, list):
        return [_rename_keys(v, keep) for v in value]
    return value


def _replace_prices(value: Any, keys: frozenset[str], new: Any) -> Any:
    if isinstance(value, dict):
        return {k: (new if k in keys and isinstance(v, int | float | str) else _replace_prices(v, keys, new))
                for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_prices(v, keys, new) for v in value]
    return value


class FaultLayer:
    """Arms faults on a fake's server. `fault` names what every request gets while armed.

    `envelopes` maps envelope fault names ("auth", "throttle", "unknown_code") to the provider's own
    error reply; `price_keys` are the JSON keys holding prices in the provider's answers;
    `keep_keys` are the keys "renamed" leaves alone (the error envelope, so the rename is read as
    a format change rather than as an error).
    """

    def __init__(self, server: LocalServer, *, envelopes: dict[str, Callable[[], Reply]], price_keys: Iterable[str],
                 keep_keys: Iterable[str] = ()):
        self.server = server
        self.real = server.handler
        self.envelopes = envelopes
        self.price_keys = frozenset(price_keys)
        self.keep_keys = frozenset(keep_keys)
        self.fault: str | None = None
        self.faulted_requests = 0
        server.handler = self._handle

    def _handle(self, req: Request) -> Reply:
        fault = self.fault
        if fault is None:
            return self.real(req)
        self.faulted_requests += 1
        if fault == "timeout":
            return Reply(200, b"{}", {"Content-Type": "application/json"}, delay=3.0)
        if fault == "hang":
            return Reply(hang=True)
        if fault == "429":
            return Reply(429, b"slow down", {"Content-Type": "text/plain", "Retry-After": "0.3"})
        if fault == "5xx":
            return Reply(503, b"<html><body>503 Service Temporarily Unavailable</body></html>", {"Content-Type": "text/html"})
        if fault in self.envelopes:
            return self.envelopes[fault]()
        if fault == "malformed":
            return Reply(200, b'{"Response": {"Items": [{"Zone": ', {"Content-Type": "application/json"})
        if fault == "html":
            return Reply.html("<!DOCTYPE html><html><head><title>系统维护</title></head><body>系统维护中</body></html>")
        if fault == "empty_body":
            return Reply(200, b"", {"Content-Type": "application/json"})
        real = self.real(req)
        if fault == "truncated":
            real.truncate = True
            return real
        try:
            payload = json.loads(real.encoded())
        except ValueError:
            return real  # a page (not JSON): leave it
        if fault == "oversized":
            if isinstance(payload, dict):
                payload = {**payload, "_padding": "x" * 200_000}
            return Reply.json(payload, status=real.status)
        if fault == "renamed":
            return Reply.json(_rename_keys(payload, self.keep_keys), status=real.status)
        if fault.startswith("price_"):
            new = ABSURD_PRICES[fault.removeprefix("price_")]
            return Reply.json(_replace_prices(payload, self.price_keys, new), status=real.status)
        if fault == "empty_list":
            return Reply.json(self.empty(payload), status=real.status)
        raise ValueError(f"unknown fault {fault!r}")

    # Overridden per provider: the provider's answer with its list emptied.
    empty: Callable[[Any], Any] = staticmethod(lambda payload: payload)


# --- the CLI ---------------------------------------------------------------------------------------


def tracker_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_")}
    env.update({"TRACKER_LOG_FORMAT": "json", "PYTHONPATH": str(REPO)})
    env.update(extra or {})
    return env


def tracker(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
    """`tracker ARGS` as a user runs it (a subprocess), never raising on a non-zero exit."""
    return subprocess.run([sys.executable, "-m", "tracker.cli", *args], cwd=cwd, env=tracker_env(env),
                          capture_output=True, text=True, timeout=timeout, input=input)


# --- the database ----------------------------------------------------------------------------------


def dump(db: Path, table: str) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(db)
    try:
        return con.execute(f"SELECT * FROM {table} ORDER BY id").fetchall()
    finally:
        con.close()


def query(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(db, timeout=30)
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


# --- metrics ---------------------------------------------------------------------------------------


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """{sorted label items: value} of every sample called `name` in an exposition text."""
    out: dict[tuple[tuple[str, str], ...], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name:
                out[tuple(sorted(s.labels.items()))] = s.value
    return out
