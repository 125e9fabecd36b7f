"""Configuration: file + environment, precedence, and one clear message for bad values."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from scrapers.settings import format_duration, parse_duration
from tracker.config import ConfigError, load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("TRACKER_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


def test_defaults_need_no_file() -> None:
    s = load_settings()
    assert s.database_url.startswith("sqlite:///") and s.listen_port == 9108
    assert s.providers.tencent.interval == 3600 and s.providers.hengyuan.interval == 300
    assert s.enabled_providers() == ["tencent", "aliyun", "hengyuan"]


def test_toml_file_then_environment_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "tracker.toml"
    cfg.write_text(
        'listen_port = 9200\n[providers.tencent]\ninterval = "30m"\nregions = ["ap-guangzhou"]\nsecret_id = "AKIDfile123"\n'
        '[providers.aliyun]\nenabled = false\n[[gpus.overrides]]\nprovider = "aliyun"\nmatch = "gn7e"\ngpu = "A800-80G"\n'
    )
    monkeypatch.setenv("TRACKER_PROVIDERS__TENCENT__INTERVAL", "2h")
    s = load_settings(cfg)
    assert s.listen_port == 9200
    assert s.providers.tencent.interval == 7200  # env beats file
    assert s.providers.tencent.regions == ["ap-guangzhou"]
    assert isinstance(s.providers.tencent.secret_id, SecretStr)
    assert s.enabled_providers() == ["tencent", "hengyuan"]
    assert s.gpus.overrides[0].to_override().gpu == "A800-80G"
    assert "AKIDfile123" in s.secrets()


def test_tracker_config_env_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = tmp_path / "other.toml"
    other.write_text("listen_port = 9300\n")
    monkeypatch.setenv("TRACKER_CONFIG", str(other))
    assert load_settings().listen_port == 9300


@pytest.mark.parametrize(
    ("env", "value", "names"),
    [
        ("TRACKER_LISTEN_PORT", "99999", "listen_port"),
        ("TRACKER_PROVIDERS__TENCENT__INTERVAL", "soon", "providers.tencent.interval"),
        ("TRACKER_PROVIDERS__TENCENT__SOURCE", "magic", "providers.tencent.source"),
        ("TRACKER_DATABASE_URL", "mysql://x", "database_url"),
        ("TRACKER_GATE__MAX_MISSING_SHARE", "2", "gate.max_missing_share"),
        ("TRACKER_HISTORY__TIMEZONE", "Mars/Olympus", "history.timezone"),
        ("TRACKER_GPUS__OVERRIDES", '[{"provider":"aliyun","match":"gn7e","gpu":"A800 80GB"}]', "gpus.overrides"),
        ("TRACKER_PROVIDERS__HENGYUAN__PRICE_UNIT", "dollars", "providers.hengyuan.price_unit"),
    ],
)
def test_bad_values_name_the_key_and_its_env_var(monkeypatch: pytest.MonkeyPatch, env: str, value: str, names: str) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert names in str(info.value)
    assert "TRACKER_" in str(info.value)


def test_unknown_keys_and_missing_file_are_errors(tmp_path: Path) -> None:
    cfg = tmp_path / "t.toml"
    cfg.write_text("[providers.tencent]\nintervall = 5\n")
    with pytest.raises(ConfigError, match=r"providers.tencent.intervall: unknown key"):
        load_settings(cfg)
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.toml")
    cfg.write_text("listen_port = = 3\n")
    with pytest.raises(ConfigError, match="could not be read"):
        load_settings(cfg)


def test_masked_shows_no_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACKER_PROVIDERS__HENGYUAN__TOKEN", "tok-very-secret-123")
    monkeypatch.setenv("TRACKER_DATABASE_URL", "postgresql+psycopg://u:pw-secret-456@127.0.0.1/test")
    text = str(load_settings().masked())
    assert "tok-very-secret-123" not in text and "pw-secret-456" not in text


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), (90, 90), ("90s", 90), ("5m", 300), ("1h30m", 5400), ("7d", 604800), ("250ms", 0.25)])
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "-5m", "5 parsecs", "1h 30", True])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_format_duration() -> None:
    assert format_duration(3600) == "1h" and format_duration(300) == "5m" and format_duration(1.5) == "1.5s"
