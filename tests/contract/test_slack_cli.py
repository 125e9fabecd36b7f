"""`tracker alerts test`, `tracker alerts list` and `tracker config show` against a fake Slack."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.fakes.slack import FakeSlack

TRACKER = Path(sys.executable).parent / "tracker"


def _run(tmp_path: Path, *args: str, **env_extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_")}
    env["TRACKER_DATABASE_URL"] = f"sqlite:///{tmp_path / 't.db'}"
    env.update(env_extra)
    return subprocess.run([str(TRACKER), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)


def test_alerts_test_reports_what_slack_answered(tmp_path: Path) -> None:
    with FakeSlack() as slack:
        team = slack.webhook_url(token="TEAMTOKEN")
        slack.by_path["/services/T000/B000/TEAMTOKEN"] = FakeSlack.no_service()
        proc = _run(tmp_path, "alerts", "test", TRACKER_ALERTS__SLACK_WEBHOOK_URL=slack.webhook_url(),
                    TRACKER_ALERTS__ROUTES=f'[{{"name": "team", "webhook_url": "{team}"}}]')
        assert proc.returncode == 1, proc.stderr
        lines = proc.stdout.splitlines()
        assert lines[0].startswith("default: HTTP 200, body 'ok'") and lines[0].endswith("delivered")
        assert lines[1].startswith("team: HTTP 404, body 'no_service'") and "removed or disabled" in lines[1]
        assert len(slack.received) == 2 and "Test message" in slack.received[0].payload["text"]
        assert "/services/" not in proc.stdout + proc.stderr


def test_alerts_test_without_webhook_says_how_to_set_one(tmp_path: Path) -> None:
    proc = _run(tmp_path, "alerts", "test")
    assert proc.returncode == 2 and "TRACKER_ALERTS__SLACK_WEBHOOK_URL" in proc.stderr


def test_alerts_list_validates_state_and_config_show_masks_webhooks(tmp_path: Path) -> None:
    url = "https://hooks.slack.com/services/T0SECRET/B0SECRET/abcdefSECRETtoken"
    assert _run(tmp_path, "alerts", "list", "--state", "lost").returncode == 2
    listing = _run(tmp_path, "alerts", "list", "--state", "dead", TRACKER_ALERTS__SLACK_WEBHOOK_URL=url)
    assert listing.returncode == 0 and "pending: 0" in listing.stderr
    shown = _run(tmp_path, "config", "show", TRACKER_ALERTS__SLACK_WEBHOOK_URL=url,
                 TRACKER_ALERTS__ROUTES=f'[{{"name": "team", "webhook_url": "{url}x"}}]')
    assert shown.returncode == 0, shown.stderr
    assert "SECRET" not in shown.stdout and "slack_webhook_url" in shown.stdout and "team" in shown.stdout
