"""Bad configuration: every key of `Settings`, with a wrong type and (where it has bounds) an
out-of-range value, is refused with a message naming the key — in-process through
`load_settings` for all of them (TOML and environment), and through the real CLI (exit status 2,
nothing started, no traceback) for a representative handful.

The keys are enumerated from the pydantic models, so a key added later is covered without
editing this file (and a new kind of field that the generator cannot break fails the test).

"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import annotated_types as at
import pytest
from pydantic import BaseModel, BeforeValidator, SecretStr
from pydantic.fields import FieldInfo

from tests.reliability._support import tracker
from tracker.config import ConfigError, Settings, load_settings

# A valid item for each list-of-models field, so that each field of the item can be broken alone.
VALID_ITEMS: dict[str, dict[str, Any]] = {
    "GpuOverrideSettings": {"provider": "tencent", "match": "GT4", "gpu": "A100-40G"},
    "RouteSettings": {"name": "ops", "webhook_url": "https://hooks.slack.com/services/T/B/x"},
}
STR_TYPES = (str, SecretStr)


@dataclass(frozen=True)
class Leaf:
    path: tuple[str | int, ...]  # ("providers", "tencent", "interval") or ("gpus", "overrides", 0, "gpu")
    field: FieldInfo

    @property
    def key(self) -> str:
        return ".".join(str(p) for p in self.path)

    @property
    def env(self) -> str | None:
        if any(isinstance(p, int) for p in self.path):
            return None  # list items cannot be set one field at a time from the environment
        return "TRACKER_" + "__".join(str(p).upper() for p in self.path)


def _strip_optional(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def leaves(model: type[BaseModel], prefix: tuple[str | int, ...] = ()) -> Iterator[Leaf]:
    for name, field in model.model_fields.items():
        tp = _strip_optional(field.annotation)
        path = (*prefix, name)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            yield from leaves(tp, path)
            continue
        yield Leaf(path, field)
        if typing.get_origin(tp) is list:
            (item,) = typing.get_args(tp)
            if isinstance(item, type) and issubclass(item, BaseModel):
                assert item.__name__ in VALID_ITEMS, f"add a valid {item.__name__} to VALID_ITEMS"
                yield from leaves(item, (*path, 0))


ALL_LEAVES = list(leaves(Settings))


def _is_duration(field: FieldInfo) -> bool:
    return any(isinstance(m, BeforeValidator) and m.func.__name__ == "parse_duration" for m in field.metadata)


def wrong_type(leaf: Leaf) -> Any:
    """A TOML value of the wrong type for this key: a number for text (and text choices), else text."""
    tp = _strip_optional(leaf.field.annotation)
    if tp in STR_TYPES or typing.get_origin(tp) is Literal:
        return 12345
    return "not-a-valid-value"


def out_of_range(leaf: Leaf) -> list[Any]:
    """Values breaking the key's declared bounds (and the plainly wrong ones for its kind)."""
    tp = _strip_optional(leaf.field.annotation)
    bad: list[Any] = []
    for m in leaf.field.metadata:
        if isinstance(m, at.Ge):
            bad.append(m.ge - 1 if tp is int else float(m.ge) - 0.5)
        elif isinstance(m, at.Gt):
            bad.append(float(m.gt) if tp is not int else int(m.gt))
        elif isinstance(m, at.Le):
            bad.append(m.le + 1 if tp is int else float(m.le) + 0.5)
        elif isinstance(m, at.Lt):
            bad.append(m.lt)
        elif isinstance(m, at.MinLen) and m.min_length > 0:
            bad.append("" if tp in STR_TYPES else [])
        elif isinstance(m, at.MaxLen):
            bad.append("x" * (m.max_length + 1) if tp in STR_TYPES else ["x"] * (m.max_length + 1))
    if _is_duration(leaf.field):
        bad += [0, -5, "5 fortnights"]
    if typing.get_origin(tp) is Literal:
        bad.append("bogus-choice")
    if tp is Decimal:
        bad.append(-1)
    return bad


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)


def toml_for(leaf: Leaf, value: Any) -> str:
    path = leaf.path
    if 0 in path:  # a field of a list item: an array of one inline table
        i = path.index(0)
        list_path, item_key = path[:i], path[i + 1]
        base = next(v for k, v in VALID_ITEMS.items() if set(v) <= set(_item_fields(list_path)))
        item = {**base, str(item_key): value}
        table, key = list_path[:-1], list_path[-1]
        return (f"[{'.'.join(map(str, table))}]\n" if table else "") + f"{key} = [{_toml_value(item)}]\n"
    table, key = path[:-1], path[-1]
    return (f"[{'.'.join(map(str, table))}]\n" if table else "") + f"{key} = {_toml_value(value)}\n"


def _item_fields(list_path: tuple[str | int, ...]) -> list[str]:
    model: Any = Settings
    for p in list_path:
        model = _strip_optional(model.model_fields[p].annotation)
    (item,) = typing.get_args(model)
    return list(item.model_fields)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    import os

    for k in list(os.environ):
        if k.startswith("TRACKER_"):
            monkeypatch.delenv(k)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _refused(leaf: Leaf, value: Any, tmp: Path) -> str:
    path = tmp / "tracker.toml"
    path.write_text(toml_for(leaf, value), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    return str(info.value)


def test_the_enumeration_covers_the_documented_keys() -> None:
    keys = {leaf.key for leaf in ALL_LEAVES}
    for documented in ("database_url", "listen_port", "providers.tencent.secret_id", "providers.aliyun.regions",
                       "providers.hengyuan.price_unit", "alerts.slack_webhook_url", "alerts.failures_before_alert",
                       "gate.max_price_per_gpu_hour", "gate.max_missing_share", "history.timezone",
                       "daemon.metrics_refresh", "report.trend_weeks", "gpus.overrides.0.gpu"):
        assert documented in keys
    assert len(keys) > 80


@pytest.mark.parametrize("leaf", ALL_LEAVES, ids=lambda leaf: leaf.key)
def test_every_key_with_a_wrong_type_is_refused_naming_it(leaf: Leaf, clean_env: Path) -> None:
    message = _refused(leaf, wrong_type(leaf), clean_env)
    assert leaf.key in message, message
    if leaf.env:
        assert f"[env {leaf.env}]" in message, message


@pytest.mark.parametrize("leaf", [leaf for leaf in ALL_LEAVES if out_of_range(leaf)], ids=lambda leaf: leaf.key)
def test_every_bounded_key_out_of_range_is_refused_naming_it(leaf: Leaf, clean_env: Path) -> None:
    for value in out_of_range(leaf):
        message = _refused(leaf, value, clean_env)
        assert leaf.key in message, (value, message)


ENV_LEAVES = [leaf for leaf in ALL_LEAVES if leaf.env and _strip_optional(leaf.field.annotation) not in STR_TYPES]


@pytest.mark.parametrize("leaf", ENV_LEAVES, ids=lambda leaf: leaf.key)
def test_every_non_text_key_from_the_environment_is_refused_naming_it(
        leaf: Leaf, clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert leaf.env is not None
    monkeypatch.setenv(leaf.env, "not-a-valid-value")
    with pytest.raises(ConfigError) as info:
        load_settings(None)
    message = str(info.value)
    assert leaf.env in message or leaf.key in message, message


@pytest.mark.parametrize(("env", "toml", "names"), [
    ({"TRACKER_LISTEN_PORT": "70000"}, None, "listen_port"),
    ({"TRACKER_PROVIDERS__TENCENT__INTERVAL": "soon"}, None, "providers.tencent.interval"),
    ({"TRACKER_ALERTS__FAILURES_BEFORE_ALERT": "0"}, None, "alerts.failures_before_alert"),
    ({"TRACKER_GATE__MAX_MISSING_SHARE": "2"}, None, "gate.max_missing_share"),
    ({"TRACKER_DATABASE_URL": "mysql://x@y/z"}, None, "database_url"),
    ({"TRACKER_HISTORY__TIMEZONE": "Mars/Olympus"}, None, "history.timezone"),
    ({"TRACKER_ALERTS__MUTES": '["colour=red"]'}, None, "alerts.mutes"),
    ({"TRACKER_PROVIDERS__ALIYUN__REGIONS": "{not json"}, None, "TRACKER_PROVIDERS__ALIYUN__REGIONS"),
    ({}, "[providers.hengyuan]\nprice_unit = 'dollar'\n", "providers.hengyuan.price_unit"),
    ({}, "[gate]\nmin_price_per_gpu_hour = 10\nmax_price_per_gpu_hour = 5\n", "gate"),
    ({}, "[alerts]\nretry_initial = '10m'\nretry_max = '1m'\n", "alerts"),
    ({}, "listen_host = 8080\n", "listen_host"),
    ({}, "[providers.tencent]\nsecret_key = 42\n", "providers.tencent.secret_key"),
    ({}, "[providers.tencent\nenabled = true\n", "tracker.toml"),  # TOML syntax error
    ({}, "colour = 'red'\n", "colour"),  # unknown key
])
def test_the_cli_exits_2_with_one_clear_message(tmp_path: Path, env: dict[str, str], toml: str | None, names: str) -> None:
    args: list[str] = []
    if toml is not None:
        (tmp_path / "tracker.toml").write_text(toml, encoding="utf-8")
        args = ["--config", str(tmp_path / "tracker.toml")]
    env = {"TRACKER_DATABASE_URL": f"sqlite:///{tmp_path / 'data' / 't.db'}", **env}
    commands = (["config", "show"], ["run", "--once"], ["scrape", "tencent"]) if names == "listen_port" else (["config", "show"],)
    for command in commands:
        proc = tracker(*args, *command, cwd=tmp_path, env=env, timeout=60)
        assert proc.returncode == 2, (command, proc.stdout, proc.stderr)
        assert names in proc.stderr, proc.stderr
        assert proc.stderr.startswith("error: "), proc.stderr
        assert "Traceback" not in proc.stderr and proc.stdout == ""
        assert not (tmp_path / "data").exists(), "something started before the configuration was checked"


def test_a_missing_config_file_exits_2(tmp_path: Path) -> None:
    proc = tracker("--config", str(tmp_path / "nope.toml"), "config", "show", cwd=tmp_path)
    assert proc.returncode == 2
    assert "nope.toml" in proc.stderr and "does not exist" in proc.stderr
