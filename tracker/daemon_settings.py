"""`[daemon]` settings: how the long-lived process schedules, elects a leader and serves metrics.

Kept apart from tracker/daemon.py so loading the configuration does not import the scheduler.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from scrapers.settings import Duration


class DaemonSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    metrics_refresh: Duration = Field(15.0, description="how often every replica re-reads the stored state for /metrics")
    leader_poll: Duration = Field(3.0, description="PostgreSQL: how often a follower tries the leader lock and the leader checks its connection")
    misfire_grace: Duration = Field(300.0, description="a run this late (event loop blocked, clock jump) is skipped and counted as missed; capped at half the provider's interval")
    job_timeout_margin: Duration = Field(30.0, description="a job still busy this long after its run_timeout is cancelled (a hung store or hook)")
    alert_drain_interval: Duration = Field(5.0, description="how often the leader drains the alert outbox")
    catch_up: bool = Field(True, description="at start-up, run a provider at once when its last good run is older than its interval")
