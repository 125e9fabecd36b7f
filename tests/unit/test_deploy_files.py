"""What users install, checked by parsing (no Docker engine or cluster runs here): the compose
stacks and their .env.example, the Kubernetes manifests, the Grafana provisioning and dashboards.
The dashboards' PromQL is evaluated against a real Prometheus in tests/e2e/test_prometheus_e2e.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.test_dockerfile import parse_dockerfile
from tracker.config import load_settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
GRAFANA = ROOT / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
COMPOSE_FILES = ["docker-compose.yml", "docker-compose.postgres.yml"]
DS = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
IMAGE_UID = int(parse_dockerfile().final.all("USER")[-1].split(":")[0])
METRICS_PORT = int(parse_dockerfile().final.all("EXPOSE")[0])


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def env_example() -> dict[str, str]:
    """Every VAR=value line of deploy/.env.example, commented-out examples included."""
    found = {}
    for line in (DEPLOY / ".env.example").read_text().splitlines():
        m = re.fullmatch(r"#?\s*([A-Z][A-Z0-9_]*)=(.*)", line.strip())
        if m:
            found[m.group(1)] = m.group(2)
    return found


def exported_metrics() -> set[str]:
    from tests.metric_names import exported_metric_names

    return exported_metric_names()


def settings_value(settings: Any, env_key: str) -> Any:
    obj = settings
    for part in env_key.removeprefix("TRACKER_").lower().split("__"):
        obj = getattr(obj, part)
    return obj.get_secret_value() if hasattr(obj, "get_secret_value") else obj


def assert_valid_tracker_env(env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The TRACKER_* variables load into Settings and land on the setting their name says."""
    monkeypatch.chdir(tmp_path)  # no stray tracker.toml
    for key in [k for k in list(__import__("os").environ) if k.startswith("TRACKER_")]:
        monkeypatch.delenv(key)
    tracker_env = {k: v for k, v in env.items() if k.startswith("TRACKER_")}
    assert tracker_env
    for key, value in tracker_env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings(None)
    for key, value in tracker_env.items():
        got = settings_value(settings, key)
        if isinstance(got, list):
            assert got == json.loads(value), key
        elif isinstance(got, bool):
            assert got == (value.lower() == "true"), key
        elif isinstance(got, float) and not isinstance(got, bool):
            assert got > 0, key
        else:
            assert str(got) == value, key


# --- compose ----------------------------------------------------------------------------------


@pytest.fixture(params=COMPOSE_FILES)
def compose(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    return request.param, load(DEPLOY / request.param)


def test_compose_has_the_stack_with_pinned_images(compose: tuple[str, dict[str, Any]]) -> None:
    _, doc = compose
    services = doc["services"]
    assert {"tracker", "prometheus", "grafana", "alertmanager"} <= services.keys()
    for name, svc in services.items():
        image = svc["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest" and re.search(r"\d", tag), f"{name}: pin the image version ({image})"
    assert services["tracker"]["build"] == {"context": "..", "dockerfile": "Dockerfile"}
    assert (DEPLOY / ".." / "Dockerfile").resolve().is_file()


def test_compose_tracker_is_hardened(compose: tuple[str, dict[str, Any]]) -> None:
    _, doc = compose
    t = doc["services"]["tracker"]
    assert t["read_only"] is True
    assert any(x.startswith("/tmp") for x in t["tmpfs"])
    assert int(t["user"].split(":")[0]) == IMAGE_UID
    assert t["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in t["security_opt"]
    assert t["init"] is True
    assert t["env_file"] == [{"path": ".env", "required": False}]


def test_compose_mounts_exist_and_interpolations_are_documented(compose: tuple[str, dict[str, Any]]) -> None:
    name, doc = compose
    for svc_name, svc in doc["services"].items():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{svc_name}: {source} does not exist"
            else:
                assert source in doc["volumes"], f"{svc_name}: named volume {source} not declared"
    text = (DEPLOY / name).read_text()
    used = set(re.findall(r"(?<!\$)\$\{([A-Z][A-Z0-9_]*)", text))
    assert used, "no variables?"
    assert used - env_example().keys() == set(), ".env.example must document every variable"


def test_sqlite_compose_keeps_the_database_on_a_volume_and_publishes_the_port() -> None:
    t = load(DEPLOY / "docker-compose.yml")["services"]["tracker"]
    assert "tracker-data:/data" in t["volumes"]
    assert any(p.endswith(f":{METRICS_PORT}") for p in t["ports"])
    assert "deploy" not in t or t["deploy"].get("replicas", 1) == 1, "SQLite: one tracker"


def test_postgres_compose_runs_two_replicas_on_postgresql() -> None:
    doc = load(DEPLOY / "docker-compose.postgres.yml")
    t = doc["services"]["tracker"]
    assert t["deploy"]["replicas"] == 2
    assert t["environment"]["TRACKER_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert "@postgres:5432/" in t["environment"]["TRACKER_DATABASE_URL"]
    assert t["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "healthcheck" in doc["services"]["postgres"]
    assert "ports" not in t, "two replicas cannot publish the same host port"
    prom_mounts = doc["services"]["prometheus"]["volumes"]
    assert "./prometheus/prometheus-replicas.yml:/etc/prometheus/prometheus.yml:ro" in prom_mounts


@pytest.mark.parametrize("config, compose_file", [("prometheus.yml", "docker-compose.yml"),
                                                  ("prometheus-replicas.yml", "docker-compose.postgres.yml")])
def test_prometheus_scrapes_the_tracker_with_honor_labels(config: str, compose_file: str) -> None:
    prom = load(DEPLOY / "prometheus" / config)
    services = load(DEPLOY / compose_file)["services"]
    job = next(j for j in prom["scrape_configs"] if j["job_name"] == "gpu-rental-tracker")
    assert job["honor_labels"] is True
    targets = [t for sc in job.get("static_configs", []) for t in sc["targets"]]
    targets += [f"{n}:{sd['port']}" for sd in job.get("dns_sd_configs", []) for n in sd["names"]]
    assert targets == [f"tracker:{METRICS_PORT}"]
    assert prom["rule_files"] == ["rules.yml"]
    am = prom["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"][0]
    assert am.split(":")[0] in services
    # the rules mount lands beside the config, where the relative rule_files path points
    mounts = services["prometheus"]["volumes"]
    assert "./prometheus/rules.yml:/etc/prometheus/rules.yml:ro" in mounts
    assert any(m.endswith(":/etc/prometheus/prometheus.yml:ro") for m in mounts)


def test_alertmanager_reads_the_webhook_file_compose_writes() -> None:
    am = load(DEPLOY / "alertmanager" / "alertmanager.yml")
    receivers = {r["name"]: r for r in am["receivers"]}
    assert am["route"]["receiver"] in receivers
    url_file = receivers["slack"]["slack_configs"][0]["api_url_file"]
    for name in COMPOSE_FILES:
        svc = load(DEPLOY / name)["services"]["alertmanager"]
        script = svc["entrypoint"][-1]
        assert f"> {url_file}" in script and "$$SLACK_WEBHOOK_URL" in script
        assert svc["environment"]["SLACK_WEBHOOK_URL"] == "${ALERTMANAGER_SLACK_WEBHOOK_URL:-}"


def test_env_example_tracker_variables_are_real_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert_valid_tracker_env(env_example(), monkeypatch, tmp_path)


def test_env_example_documents_the_secrets() -> None:
    keys = env_example().keys()
    for key in ("TRACKER_PROVIDERS__TENCENT__SECRET_ID", "TRACKER_PROVIDERS__TENCENT__SECRET_KEY",
                "TRACKER_PROVIDERS__ALIYUN__ACCESS_KEY_ID", "TRACKER_PROVIDERS__ALIYUN__ACCESS_KEY_SECRET",
                "TRACKER_PROVIDERS__HENGYUAN__TOKEN", "TRACKER_ALERTS__SLACK_WEBHOOK_URL",
                "GRAFANA_ADMIN_PASSWORD", "ALERTMANAGER_SLACK_WEBHOOK_URL", "POSTGRES_PASSWORD"):
        assert key in keys
    assert ".env" in (ROOT / ".gitignore").read_text().split(), "the real .env must never be committed"


# --- Kubernetes -------------------------------------------------------------------------------


def k8s_docs() -> dict[tuple[str, str, str], dict[str, Any]]:
    docs = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is None:
                continue
            assert {"apiVersion", "kind"} <= doc.keys(), path
            if doc["kind"] == "Kustomization":
                continue
            docs[(path.name, doc["kind"], doc["metadata"]["name"])] = doc
    return docs


WORKLOADS = [("statefulset.yaml", "StatefulSet"), ("deployment-postgres.yaml", "Deployment")]


def workload(file: str, kind: str) -> dict[str, Any]:
    return k8s_docs()[(file, kind, "gpu-rental-tracker")]


def test_kustomization_lists_existing_files() -> None:
    kust = load(K8S / "kustomization.yaml")
    for res in kust["resources"]:
        assert (K8S / res).is_file(), res
    assert "secret.example.yaml" not in kust["resources"], "an example Secret must not be applied"
    assert "statefulset.yaml" in kust["resources"]


@pytest.mark.parametrize("file, kind", WORKLOADS)
def test_workload_runs_non_root_with_a_read_only_root(file: str, kind: str) -> None:
    pod = workload(file, kind)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == IMAGE_UID
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    (c,) = pod["containers"]
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]], "Chromium needs a writable /tmp"
    assert volumes[mounts["/dev/shm"]]["emptyDir"]["medium"] == "Memory"


def _quantity(q: str) -> float:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "m": 1e-3, "": 1}
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi|m|)", str(q))
    assert m, q
    return float(m.group(1)) * units[m.group(2)]


@pytest.mark.parametrize("file, kind", WORKLOADS)
def test_workload_probes_and_resources(file: str, kind: str) -> None:
    spec = workload(file, kind)["spec"]
    (c,) = spec["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"metrics": METRICS_PORT}
    assert c["args"] == parse_dockerfile().exec_form("CMD")
    for probe, path in (("livenessProbe", "/healthz"), ("startupProbe", "/healthz"), ("readinessProbe", "/readyz")):
        assert c[probe]["httpGet"] == {"path": path, "port": "metrics"}, probe
    res = c["resources"]
    assert {"cpu", "memory"} <= res["requests"].keys()
    assert _quantity(res["limits"]["memory"]) >= _quantity(res["requests"]["memory"])
    assert _quantity(res["limits"]["memory"]) >= _quantity("1Gi"), "room for Chromium"
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    grace = spec["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > 20, "longer than the tracker's default shutdown_grace"


def test_statefulset_keeps_sqlite_on_a_volume_with_one_replica() -> None:
    sts = workload("statefulset.yaml", "StatefulSet")
    assert sts["spec"]["replicas"] == 1
    (c,) = sts["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["TRACKER_DATABASE_URL"] == "sqlite:////data/tracker.db"
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    claims = {t["metadata"]["name"] for t in sts["spec"]["volumeClaimTemplates"]}
    assert mounts["/data"] in claims


def test_postgres_deployment_has_two_replicas_and_no_sqlite() -> None:
    dep = workload("deployment-postgres.yaml", "Deployment")
    assert dep["spec"]["replicas"] == 2
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    assert "/data" not in {m["mountPath"] for m in c["volumeMounts"]}
    assert {"secretRef": {"name": "gpu-rental-tracker"}} in c["envFrom"]


def test_service_and_servicemonitor_select_the_pods() -> None:
    docs = k8s_docs()
    svc = docs[("service.yaml", "Service", "gpu-rental-tracker")]
    pod_labels = workload("statefulset.yaml", "StatefulSet")["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    (port,) = svc["spec"]["ports"]
    assert port["targetPort"] == "metrics" and port["port"] == METRICS_PORT
    sm = docs[("servicemonitor.yaml", "ServiceMonitor", "gpu-rental-tracker")]
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    (ep,) = sm["spec"]["endpoints"]
    assert ep["port"] == port["name"] and ep["path"] == "/metrics"
    assert ep["honorLabels"] is True


def test_prometheusrule_is_rules_yml() -> None:
    rule = k8s_docs()[("prometheusrule.yaml", "PrometheusRule", "gpu-rental-tracker")]
    assert rule["spec"] == load(DEPLOY / "prometheus" / "rules.yml")


def test_secret_example_keys_are_real_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret = k8s_docs()[("secret.example.yaml", "Secret", "gpu-rental-tracker")]
    assert_valid_tracker_env(secret["stringData"], monkeypatch, tmp_path)


# --- Grafana ----------------------------------------------------------------------------------


def all_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for p in dashboard["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))
    return out


@pytest.fixture(params=[p.name for p in DASHBOARDS])
def dashboard(request: pytest.FixtureRequest) -> dict[str, Any]:
    return json.loads((GRAFANA / "dashboards" / request.param).read_text())


def test_there_are_price_and_health_dashboards_with_distinct_uids() -> None:
    uids = [json.loads(p.read_text())["uid"] for p in DASHBOARDS]
    assert {"gpu-rental-prices", "gpu-rental-health"} <= set(uids)
    assert len(uids) == len(set(uids))


def test_dashboard_is_importable_and_provisionable(dashboard: dict[str, Any]) -> None:
    assert dashboard["schemaVersion"] == 39
    assert dashboard["id"] is None
    (inp,) = dashboard["__inputs"]
    assert inp == {**inp, "name": "DS_PROMETHEUS", "type": "datasource", "pluginId": "prometheus"}
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    ds_var = variables["DS_PROMETHEUS"]
    assert ds_var["type"] == "datasource" and ds_var["query"] == "prometheus"
    required = {(r["type"], r["id"]) for r in dashboard["__requires"]}
    for p in all_panels(dashboard):
        if p["type"] != "row":
            assert ("panel", p["type"]) in required, p["type"]


def test_panel_ids_unique_and_layout_fits(dashboard: dict[str, Any]) -> None:
    panels = all_panels(dashboard)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    boxes = []
    for p in panels:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, p["title"]
        for other in boxes:
            overlap = not (g["x"] + g["w"] <= other["x"] or other["x"] + other["w"] <= g["x"]
                           or g["y"] + g["h"] <= other["y"] or other["y"] + other["h"] <= g["y"])
            assert not overlap, f"{p['title']} overlaps another panel"
        boxes.append(g)


def test_every_panel_and_target_uses_the_datasource_variable(dashboard: dict[str, Any]) -> None:
    for p in all_panels(dashboard):
        assert p["datasource"] == DS, p["title"]
        refs = [t["refId"] for t in p.get("targets", [])]
        assert len(refs) == len(set(refs)), p["title"]
        for t in p.get("targets", []):
            assert t["datasource"] == DS, p["title"]
            assert t["expr"].strip(), p["title"]
        if p["type"] != "row":
            assert p.get("targets"), p["title"]
            assert p.get("description"), f"{p['title']}: say what the panel shows"
    for v in dashboard["templating"]["list"]:
        if v["type"] == "query":
            assert v["datasource"] == DS, v["name"]
    # no datasource is named anywhere else (a hard-coded uid breaks imports)
    text = json.dumps(dashboard)
    uids = set(re.findall(r'"uid": "([^"]*)"', text))
    assert uids <= {"${DS_PROMETHEUS}", "-- Grafana --", dashboard["uid"]}


def test_dashboard_queries_use_exported_metrics(dashboard: dict[str, Any]) -> None:
    exported = exported_metrics()
    used = set()
    for p in all_panels(dashboard):
        for t in p.get("targets", []):
            used |= set(re.findall(r"gpu_rental_[a-z_]+", t["expr"]))
    for v in dashboard["templating"]["list"]:
        used |= set(re.findall(r"gpu_rental_[a-z_]+", v.get("definition", "")))
    assert used and used - exported == set()


def test_price_dashboard_has_the_variables_and_panels_the_issue_asks_for() -> None:
    d = json.loads((GRAFANA / "dashboards" / "gpu-rental-prices.json").read_text())
    variables = {v["name"]: v for v in d["templating"]["list"]}
    for name in ("provider", "gpu", "region"):
        assert variables[name]["includeAll"] and variables[name]["allValue"] == ".*"
        assert variables[name]["multi"] is True
    panels = {p["title"]: p for p in all_panels(d)}
    table = panels["Weekly price table"]
    assert table["type"] == "table"
    assert {t["format"] for t in table["targets"]} == {"table"} and all(t["instant"] for t in table["targets"])
    assert [t["id"] for t in table["transformations"]] == ["merge", "organize"]
    metrics = " ".join(t["expr"] for t in table["targets"])
    assert "gpu_rental_price_cny_per_hour" in metrics and "gpu_rental_price_wow_change_ratio" in metrics
    for title in ("Price per GPU-hour by provider", "Week-over-week moves", "Availability",
                  "Marketplace machines listed", "Marketplace free GPUs"):
        assert title in panels
    for p in panels.values():
        for t in p["targets"]:
            for var in ("$provider", "$gpu", "$region"):
                assert var in t["expr"], f"{p['title']}: {var} not applied"


def test_health_dashboard_covers_scraper_health_and_the_outbox() -> None:
    d = json.loads((GRAFANA / "dashboards" / "gpu-rental-health.json").read_text())
    exprs = " ".join(t["expr"] for p in all_panels(d) for t in p.get("targets", []))
    for metric in ("gpu_rental_scrape_success", "gpu_rental_scrape_last_success_timestamp_seconds",
                   "gpu_rental_scrape_duration_seconds", "gpu_rental_scrape_failures_total",
                   "gpu_rental_alert_queue_depth", "gpu_rental_alerts_sent_total", "gpu_rental_alerts_failed_total"):
        assert metric in exprs


def test_grafana_provisioning_matches_compose() -> None:
    ds = load(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")
    (source,) = ds["datasources"]
    assert source["type"] == "prometheus" and source["isDefault"] is True
    assert source["url"] == "http://prometheus:9090"
    prov = load(GRAFANA / "provisioning" / "dashboards" / "gpu-rental-tracker.yml")
    (provider,) = prov["providers"]
    for name in COMPOSE_FILES:
        g = load(DEPLOY / name)["services"]["grafana"]
        mounts = dict(v.rsplit(":", 2)[:2] for v in g["volumes"] if v.startswith("."))
        assert mounts["../grafana/dashboards"] == provider["options"]["path"]
        assert mounts["../grafana/provisioning"] == "/etc/grafana/provisioning"
        home = g["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
        assert home.startswith(provider["options"]["path"] + "/")
        assert (GRAFANA / "dashboards" / Path(home).name).is_file()
